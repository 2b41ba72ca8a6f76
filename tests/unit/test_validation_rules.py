"""Every validation rule: at least one accepted and one rejected manifest, with the exact messages.

Rule numbers refer to docs/compatibility.md#raycluster-rules (KubeRay's ValidateRayClusterSpec and friends).
"""

from __future__ import annotations

from typing import Any

import pytest

from rayop.validation import validate
from tests.unit.validation_cases import DEL, build

H = "spec.headGroupSpec"
HC = f"{H}.template.spec.containers[0]"
W0 = "spec.workerGroupSpecs[0]"
W0C = f"{W0}.template.spec.containers[0]"
ALL_GATES = {
    "RayClusterNetworkPolicy": True,
    "GCSFaultToleranceEmbeddedStorage": True,
    "RayClusterMTLS": True,
    "RayClusterHistoryServer": True,
}
AUTOSCALE = {"spec.enableInTreeAutoscaling": True}
V2 = {**AUTOSCALE, "spec.autoscalerOptions": {"version": "v2"}}
DNS1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
FT_OPTS = {"spec.gcsFaultToleranceOptions": {"redisAddress": "redis:6379"}}
ROCKS = {"spec.gcsFaultToleranceOptions": {"backend": "rocksdb"}}
HIST = "spec.historyServerOptions.collectorOptions"

Case = tuple[str, str, dict[str, Any], dict[str, bool] | None, list[str]]

CASES: list[Case] = [
    # ---- metadata (webhook rules 1-3)
    ("name ok", "RayCluster", {"metadata.name": "a" * 53}, None, []),
    (
        "rc name too long",
        "RayCluster",
        {"metadata.name": "a" * 54},
        None,
        [
            "metadata.name: Too long: may not be more than 53 characters (Service names append '-serve-svc' to it)"
        ],
    ),
    (
        "rc name not dns1035",
        "RayCluster",
        {"metadata.name": "1abc"},
        None,
        [f'metadata.name: Invalid value: "1abc": {DNS1035}'],
    ),
    ("rj name ok", "RayJob", {"metadata.name": "j" * 47}, None, []),
    (
        "rj name too long",
        "RayJob",
        {"metadata.name": "j" * 48},
        None,
        [
            "metadata.name: Too long: may not be more than 47 characters (the operator appends 6 characters to name its RayCluster)"
        ],
    ),
    (
        "rj name not dns1035",
        "RayJob",
        {"metadata.name": "Job"},
        None,
        [f'metadata.name: Invalid value: "Job": {DNS1035}'],
    ),
    (
        "rs name too long",
        "RayService",
        {"metadata.name": "s" * 48},
        None,
        [
            "metadata.name: Too long: may not be more than 47 characters (the operator appends 6 characters to name its RayCluster)"
        ],
    ),
    (
        "rs name not dns1035",
        "RayService",
        {"metadata.name": "s_1"},
        None,
        [f'metadata.name: Invalid value: "s_1": {DNS1035}'],
    ),
    ("generateName ok", "RayCluster", {"metadata": {"generateName": "demo-"}}, None, []),
    (
        "no name",
        "RayCluster",
        {"metadata": {"labels": {}}},
        None,
        ["metadata.name: Required value: name or generateName is required"],
    ),
    (
        "rs timeout duration",
        "RayService",
        {"metadata.annotations.'ray.io/initializing-timeout'": "5m"},
        None,
        [],
    ),
    (
        "rs timeout seconds",
        "RayService",
        {"metadata.annotations.'ray.io/initializing-timeout'": "300"},
        None,
        [],
    ),
    (
        "rs timeout zero",
        "RayService",
        {"metadata.annotations.'ray.io/initializing-timeout'": "0s"},
        None,
        [
            'metadata.annotations[ray.io/initializing-timeout]: Invalid value: "0s": must be a positive duration'
        ],
    ),
    (
        "rs timeout negative int",
        "RayService",
        {"metadata.annotations.'ray.io/initializing-timeout'": "-3"},
        None,
        [
            'metadata.annotations[ray.io/initializing-timeout]: Invalid value: "-3": must be a positive integer (seconds)'
        ],
    ),
    (
        "rs timeout garbage",
        "RayService",
        {"metadata.annotations.'ray.io/initializing-timeout'": "soon"},
        None,
        [
            'metadata.annotations[ray.io/initializing-timeout]: Invalid value: "soon": must be a Go duration such as '
            "'5m' or '1h', or a positive number of seconds"
        ],
    ),
    # ---- unique group names (KubeRay webhook)
    (
        "duplicate group",
        "RayCluster",
        {
            "spec.workerGroupSpecs[1]": {
                "groupName": "workers",
                "minReplicas": 0,
                "maxReplicas": 1,
                "template": {"spec": {"containers": [{"name": "w"}]}},
            }
        },
        None,
        ['spec.workerGroupSpecs[1].groupName: Duplicate value: "workers"'],
    ),
    (
        "two distinct groups",
        "RayCluster",
        {
            "spec.workerGroupSpecs[1]": {
                "groupName": "more",
                "minReplicas": 0,
                "maxReplicas": 1,
                "template": {"spec": {"containers": [{"name": "w"}]}},
            }
        },
        None,
        [],
    ),
    (
        "group name missing",
        "RayCluster",
        {f"{W0}.groupName": DEL},
        None,
        [f"{W0}.groupName: Required value: every worker group needs a name"],
    ),
    # ---- rule 1
    (
        "head without containers",
        "RayCluster",
        {f"{H}.template.spec.containers": []},
        None,
        [
            f"{H}.template.spec.containers: Required value: the head pod template must have at least one container (the first one runs Ray)"
        ],
    ),
    (
        "worker without containers",
        "RayCluster",
        {f"{W0}.template.spec.containers": []},
        None,
        [
            f"{W0}.template.spec.containers: Required value: the worker pod template must have at least one container (the first one runs Ray)"
        ],
    ),
    (
        "head missing",
        "RayCluster",
        {H: DEL},
        None,
        [
            f"{H}: Required value: a RayCluster needs a head group",
            f"{H}.template.spec.containers: Required value: the head pod template must have at least one container (the first one runs Ray)",
        ],
    ),
    # ---- rule 2
    (
        "min/max required without autoscaling",
        "RayCluster",
        {f"{W0}.minReplicas": DEL, f"{W0}.maxReplicas": DEL},
        None,
        [
            f"{W0}.minReplicas: Required value: must be set when enableInTreeAutoscaling is not true",
            f"{W0}.maxReplicas: Required value: must be set when enableInTreeAutoscaling is not true",
        ],
    ),
    (
        "min/max optional with autoscaling",
        "RayCluster",
        {f"{W0}.minReplicas": DEL, f"{W0}.maxReplicas": DEL, **AUTOSCALE},
        None,
        [],
    ),
    # ---- rule 3
    (
        "min > max",
        "RayCluster",
        {f"{W0}.minReplicas": 5, f"{W0}.maxReplicas": 3},
        None,
        [f"{W0}.minReplicas: Invalid value: 5: must be less than or equal to maxReplicas (3)"],
    ),
    (
        "min == max",
        "RayCluster",
        {f"{W0}.minReplicas": 3, f"{W0}.maxReplicas": 3, f"{W0}.replicas": 3},
        None,
        [],
    ),
    (
        "negative min and max",
        "RayCluster",
        {f"{W0}.minReplicas": -1, f"{W0}.maxReplicas": -2},
        None,
        [
            f"{W0}.minReplicas: Invalid value: -1: must be greater than or equal to 0",
            f"{W0}.maxReplicas: Invalid value: -2: must be greater than or equal to 0",
        ],
    ),
    # ---- rule 4
    (
        "resources in both places",
        "RayCluster",
        {f"{H}.rayStartParams.num-cpus": "1", f"{H}.resources": {"CPU": "1"}},
        None,
        [
            f"{H}.resources: Forbidden: must not be set together with rayStartParams num-cpus; set Ray resources in one place only"
        ],
    ),
    (
        "worker resources in both places",
        "RayCluster",
        {
            f"{W0}.rayStartParams.resources": '{"a":1}',
            f"{W0}.rayStartParams.memory": "1",
            f"{W0}.resources": {"a": "1"},
        },
        None,
        [
            f"{W0}.resources: Forbidden: must not be set together with rayStartParams memory, resources; set Ray resources in one place only"
        ],
    ),
    (
        "resources in one place",
        "RayCluster",
        {f"{H}.resources": {"CPU": "1"}, f"{W0}.rayStartParams.num-cpus": "2"},
        None,
        [],
    ),
    # ---- rule 5
    (
        "rayStartParams labels",
        "RayCluster",
        {f"{W0}.rayStartParams.labels": "a=b"},
        None,
        [f"{W0}.rayStartParams[labels]: Forbidden: use workerGroupSpecs[0].labels instead"],
    ),
    ("group labels ok", "RayCluster", {f"{W0}.labels": {"ray.io/zone": "us-1a", "tier": ""}}, None, []),
    (
        "group label bad key and value",
        "RayCluster",
        {f"{H}.labels": {"bad key": "x y"}},
        None,
        [
            f"{H}.labels: Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            f"{H}.labels[bad key]: Invalid value: \"x y\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ],
    ),
    # ---- rule 6
    ("idle timeout with v2", "RayCluster", {f"{W0}.idleTimeoutSeconds": 30, **V2}, None, []),
    (
        "idle timeout with v2 env",
        "RayCluster",
        {
            f"{W0}.idleTimeoutSeconds": 30,
            **AUTOSCALE,
            f"{HC}.env": [{"name": "RAY_enable_autoscaler_v2", "value": "1"}],
        },
        None,
        [],
    ),
    (
        "idle timeout without v2",
        "RayCluster",
        {f"{W0}.idleTimeoutSeconds": 30, **AUTOSCALE},
        None,
        [
            f"{W0}.idleTimeoutSeconds: Forbidden: is only honoured by Ray autoscaler v2; set spec.autoscalerOptions.version: v2"
        ],
    ),
    (
        "idle timeout negative",
        "RayCluster",
        {f"{W0}.idleTimeoutSeconds": -1, **V2},
        None,
        [f"{W0}.idleTimeoutSeconds: Invalid value: -1: must be greater than or equal to 0"],
    ),
    # ---- rule 7
    ("priority with v2 and 2.56", "RayCluster", {f"{W0}.priority": 5, **V2}, None, []),
    ("priority zero anywhere", "RayCluster", {f"{W0}.priority": 0, "spec.rayVersion": "2.9.0"}, None, []),
    (
        "priority old ray",
        "RayCluster",
        {f"{W0}.priority": 5, "spec.rayVersion": "2.55.1", **V2},
        None,
        [f"{W0}.priority: Invalid value: 5: requires rayVersion 2.56.0 or later, got 2.55.1"],
    ),
    (
        "priority no ray version",
        "RayCluster",
        {f"{W0}.priority": 5, "spec.rayVersion": DEL, **V2},
        None,
        [f"{W0}.priority: Invalid value: 5: requires rayVersion 2.56.0 or later, and rayVersion is not set"],
    ),
    (
        "priority bad ray version",
        "RayCluster",
        {f"{W0}.priority": 5, "spec.rayVersion": "nightly", **V2},
        None,
        [
            f"{W0}.priority: Invalid value: 5: requires rayVersion 2.56.0 or later; rayVersion 'nightly' is not a version"
        ],
    ),
    (
        "priority without v2",
        "RayCluster",
        {f"{W0}.priority": 5},
        None,
        [
            f"{W0}.priority: Invalid value: 5: is only honoured by Ray autoscaler v2; set spec.autoscalerOptions.version: v2"
        ],
    ),
    # ---- rule 8
    (
        "ft annotation alone",
        "RayCluster",
        {
            "metadata.annotations.'ray.io/ft-enabled'": "true",
            f"{HC}.env": [{"name": "RAY_REDIS_ADDRESS", "value": "r:6379"}],
        },
        None,
        [],
    ),
    (
        "ft annotation and options",
        "RayCluster",
        {"metadata.annotations.'ray.io/ft-enabled'": "true", **FT_OPTS},
        None,
        [
            "spec.gcsFaultToleranceOptions: Forbidden: must not be set together with the ray.io/ft-enabled annotation; remove the annotation"
        ],
    ),
    # ---- rule 9
    (
        "redis address without ft",
        "RayCluster",
        {f"{HC}.env": [{"name": "A", "value": "1"}, {"name": "RAY_REDIS_ADDRESS", "value": "r:6379"}]},
        None,
        [
            f"{HC}.env[1]: Forbidden: RAY_REDIS_ADDRESS enables GCS fault tolerance implicitly; set gcsFaultToleranceOptions instead"
        ],
    ),
    # ---- rule 10
    (
        "ft options redis",
        "RayCluster",
        {**FT_OPTS, "spec.gcsFaultToleranceOptions.redisPassword": {"value": "x"}},
        None,
        [],
    ),
    (
        "ft options with legacy wiring",
        "RayCluster",
        {
            **FT_OPTS,
            f"{H}.rayStartParams.redis-password": "x",
            f"{HC}.env": [
                {"name": "REDIS_PASSWORD", "value": "x"},
                {"name": "RAY_REDIS_ADDRESS", "value": "r"},
            ],
            "metadata.annotations.'ray.io/external-storage-namespace'": "ns",
        },
        None,
        [
            f"{H}.rayStartParams[redis-password]: Forbidden: use gcsFaultToleranceOptions.redisPassword instead",
            f"{HC}.env[0]: Forbidden: REDIS_PASSWORD must not be set when gcsFaultToleranceOptions is set; use gcsFaultToleranceOptions.redisPassword",
            f"{HC}.env[1]: Forbidden: RAY_REDIS_ADDRESS must not be set when gcsFaultToleranceOptions is set; use gcsFaultToleranceOptions.redisAddress",
            "metadata.annotations[ray.io/external-storage-namespace]: Forbidden: must not be set when gcsFaultToleranceOptions is set; use gcsFaultToleranceOptions.externalStorageNamespace",
        ],
    ),
    (
        "rocksdb with gate",
        "RayCluster",
        {**ROCKS, "spec.gcsFaultToleranceOptions.storage": {"size": "1Gi"}},
        ALL_GATES,
        [],
    ),
    (
        "rocksdb without gate",
        "RayCluster",
        ROCKS,
        None,
        [
            "spec.gcsFaultToleranceOptions.backend: Forbidden: 'rocksdb' requires the GCSFaultToleranceEmbeddedStorage feature gate"
        ],
    ),
    (
        "rocksdb with redis fields and managed env/mounts",
        "RayCluster",
        {
            **ROCKS,
            "spec.gcsFaultToleranceOptions.redisAddress": "r",
            "spec.gcsFaultToleranceOptions.storage": {"claimName": "pvc", "size": "1Gi"},
            f"{HC}.env": [{"name": "RAY_gcs_storage", "value": "rocksdb"}],
            f"{HC}.volumeMounts": [{"name": "data", "mountPath": "/data/gcs"}],
            f"{H}.template.spec.volumes": [{"name": "gcs-storage"}],
        },
        ALL_GATES,
        [
            "spec.gcsFaultToleranceOptions.redisAddress: Forbidden: only applies to the 'redis' backend",
            "spec.gcsFaultToleranceOptions.storage.size: Forbidden: must not be set together with claimName (an existing PVC)",
            f"{HC}.env[0]: Forbidden: RAY_gcs_storage is managed by the operator for the 'rocksdb' backend",
            f"{HC}.volumeMounts[0]: Forbidden: a mount named 'gcs-storage' or at /data/gcs is managed by the operator for the 'rocksdb' backend",
            f"{H}.template.spec.volumes[0]: Forbidden: a volume named 'gcs-storage' is managed by the operator for the 'rocksdb' backend",
        ],
    ),
    (
        "redis backend with storage",
        "RayCluster",
        {**FT_OPTS, "spec.gcsFaultToleranceOptions.storage": {"size": "1Gi"}},
        None,
        ["spec.gcsFaultToleranceOptions.storage: Forbidden: only applies to the 'rocksdb' backend"],
    ),
    (
        "unknown backend",
        "RayCluster",
        {"spec.gcsFaultToleranceOptions": {"backend": "etcd"}},
        None,
        [
            'spec.gcsFaultToleranceOptions.backend: Unsupported value: "etcd": supported values: "redis", "rocksdb"'
        ],
    ),
    # ---- rule 11
    (
        "redis username outside options",
        "RayCluster",
        {f"{H}.rayStartParams.redis-username": "u", f"{HC}.env": [{"name": "REDIS_USERNAME", "value": "u"}]},
        None,
        [
            f"{H}.rayStartParams[redis-username]: Forbidden: use gcsFaultToleranceOptions.redisUsername instead",
            f"{HC}.env[0]: Forbidden: REDIS_USERNAME must not be set; use gcsFaultToleranceOptions.redisUsername instead",
        ],
    ),
    (
        "redis username in options",
        "RayCluster",
        {**FT_OPTS, "spec.gcsFaultToleranceOptions.redisUsername": {"value": "u"}},
        None,
        [],
    ),
    # ---- rule 12
    ("suspended group", "RayCluster", {f"{W0}.suspend": True}, None, []),
    (
        "suspended group without gate",
        "RayCluster",
        {f"{W0}.suspend": True},
        {"RayJobDeletionPolicy": False},
        [f"{W0}.suspend: Forbidden: requires the RayJobDeletionPolicy feature gate"],
    ),
    (
        "suspended group with autoscaling",
        "RayCluster",
        {f"{W0}.suspend": True, **AUTOSCALE},
        None,
        [
            f"{W0}.suspend: Forbidden: a worker group cannot be suspended while enableInTreeAutoscaling is true"
        ],
    ),
    # ---- rule 13
    (
        "v2 env false without autoscaling",
        "RayCluster",
        {f"{HC}.env": [{"name": "RAY_enable_autoscaler_v2", "value": "false"}]},
        None,
        [],
    ),
    (
        "v2 env true without autoscaling",
        "RayCluster",
        {f"{HC}.env": [{"name": "RAY_enable_autoscaler_v2", "value": "true"}]},
        None,
        [f"{HC}.env[0]: Forbidden: RAY_enable_autoscaler_v2=true requires enableInTreeAutoscaling: true"],
    ),
    # ---- rule 14
    (
        "version and env",
        "RayCluster",
        {**V2, f"{HC}.env": [{"name": "RAY_enable_autoscaler_v2", "value": "1"}]},
        None,
        [
            f"{HC}.env[0]: Forbidden: RAY_enable_autoscaler_v2 must not be set together with spec.autoscalerOptions.version; use only the latter"
        ],
    ),
    ("v2 restart never", "RayCluster", {**V2, f"{H}.template.spec.restartPolicy": "Never"}, None, []),
    (
        "v2 restart always",
        "RayCluster",
        {
            **V2,
            f"{H}.template.spec.restartPolicy": "Always",
            f"{W0}.template.spec.restartPolicy": "OnFailure",
        },
        None,
        [
            f'{H}.template.spec.restartPolicy: Invalid value: "Always": must be Never or unset when autoscaler v2 is used',
            f'{W0}.template.spec.restartPolicy: Invalid value: "OnFailure": must be Never or unset when autoscaler v2 is used',
        ],
    ),
    # ---- rule 15
    (
        "autoscaler idle ok",
        "RayCluster",
        {**AUTOSCALE, "spec.autoscalerOptions.idleTimeoutSeconds": 60},
        None,
        [],
    ),
    (
        "autoscaler idle negative and managed env",
        "RayCluster",
        {
            **AUTOSCALE,
            "spec.autoscalerOptions": {
                "idleTimeoutSeconds": -5,
                "env": [{"name": "KUBERAY_GEN_AUTOSCALER_START_CMD", "value": "x"}],
            },
        },
        None,
        [
            "spec.autoscalerOptions.idleTimeoutSeconds: Invalid value: -5: must be greater than or equal to 0",
            "spec.autoscalerOptions.env[0]: Forbidden: KUBERAY_GEN_AUTOSCALER_START_CMD is managed by the operator and must not be set",
        ],
    ),
    (
        "autoscaler enums",
        "RayCluster",
        {**AUTOSCALE, "spec.autoscalerOptions": {"version": "v3", "upscalingMode": "Fast"}},
        None,
        [
            'spec.autoscalerOptions.version: Unsupported value: "v3": supported values: "v1", "v2"',
            'spec.autoscalerOptions.upscalingMode: Unsupported value: "Fast": supported values: "Default", "Aggressive", "Conservative"',
        ],
    ),
    # ---- rule 16
    (
        "history ok",
        "RayCluster",
        {
            "spec.historyServerOptions": {
                "collectorOptions": {
                    "image": "c:1",
                    "env": [{"name": "STORAGE_BACKEND", "value": "s3"}, {"name": "S3_REGION", "value": "eu"}],
                }
            }
        },
        ALL_GATES,
        [],
    ),
    (
        "history without gate",
        "RayCluster",
        {
            "spec.historyServerOptions": {
                "collectorOptions": {
                    "image": "c:1",
                    "env": [
                        {"name": "STORAGE_BACKEND", "value": "GCS"},
                        {"name": "GCS_BUCKET", "value": "b"},
                    ],
                }
            }
        },
        None,
        ["spec.historyServerOptions: Forbidden: requires the RayClusterHistoryServer feature gate"],
    ),
    (
        "history incomplete",
        "RayCluster",
        {
            "spec.historyServerOptions": {
                "collectorOptions": {
                    "env": [
                        {"name": "POD_IP", "value": "x"},
                        {"name": "STORAGE_BACKEND", "value": "ALIYUNOSS"},
                        {"name": "ALIYUN_BUCKET", "value": "b"},
                    ]
                }
            },
            f"{W0}.template.spec.containers[1]": {"name": "ray-history-collector"},
        },
        ALL_GATES,
        [
            f"{HIST}.image: Required value",
            f"{HIST}.env[0]: Forbidden: POD_IP is managed by the operator and must not be set",
            f"{HIST}.env: Required value: ALIYUN_ENDPOINT must be set when STORAGE_BACKEND is ALIYUNOSS",
            f"{HIST}.env: Required value: ALIYUN_REGION must be set when STORAGE_BACKEND is ALIYUNOSS",
            f"{W0}.template.spec.containers[1].name: Forbidden: 'ray-history-collector' is reserved for the history collector sidecar",
        ],
    ),
    (
        "history missing backend and collector",
        "RayCluster",
        {"spec.historyServerOptions": {}},
        ALL_GATES,
        ["spec.historyServerOptions.collectorOptions: Required value"],
    ),
    (
        "history azure",
        "RayCluster",
        {
            "spec.historyServerOptions": {
                "collectorOptions": {"image": "c", "env": [{"name": "STORAGE_BACKEND", "value": "AZUREBLOB"}]}
            }
        },
        ALL_GATES,
        [
            f"{HIST}.env: Required value: AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL must be set when STORAGE_BACKEND is AZUREBLOB"
        ],
    ),
    # ---- rule 17
    ("token auth ok", "RayCluster", {"spec.authOptions": {"mode": "token"}}, None, []),
    (
        "token auth old ray",
        "RayCluster",
        {"spec.authOptions": {"mode": "token"}, "spec.rayVersion": "2.51.0"},
        None,
        [
            "spec.rayVersion: Invalid value: \"2.51.0\": must be 2.52.0 or later when authOptions.mode is 'token'"
        ],
    ),
    (
        "token auth no version",
        "RayCluster",
        {"spec.authOptions": {"mode": "token"}, "spec.rayVersion": DEL},
        None,
        ["spec.rayVersion: Required value: must be 2.52.0 or later when authOptions.mode is 'token'"],
    ),
    (
        "k8s token auth old ray and secret",
        "RayCluster",
        {
            "spec.authOptions": {"mode": "token", "enableK8sTokenAuth": True, "secretName": "s"},
            "spec.rayVersion": "2.54.0",
        },
        None,
        [
            'spec.rayVersion: Invalid value: "2.54.0": must be 2.55.0 or later when authOptions.enableK8sTokenAuth is true',
            "spec.authOptions.secretName: Forbidden: must not be set when enableK8sTokenAuth is true",
        ],
    ),
    (
        "k8s token auth without token mode",
        "RayCluster",
        {"spec.authOptions": {"mode": "disabled", "enableK8sTokenAuth": True}},
        None,
        ["spec.authOptions.enableK8sTokenAuth: Invalid value: true: requires authOptions.mode: token"],
    ),
    # ---- rule 18
    (
        "network policy ok",
        "RayCluster",
        {
            "spec.networkPolicy": {
                "mode": "DenyAllIngress",
                "head": {"ingressRules": [{}]},
                "workerGroups": [{"groupName": "workers"}],
            }
        },
        ALL_GATES,
        [],
    ),
    (
        "network policy without gate",
        "RayCluster",
        {"spec.networkPolicy": {}},
        None,
        ["spec.networkPolicy: Forbidden: requires the RayClusterNetworkPolicy feature gate"],
    ),
    (
        "network policy inconsistent",
        "RayCluster",
        {
            "spec.networkPolicy": {
                "mode": "DenyAllEgress",
                "head": {"ingressRules": [{}]},
                "workerGroups": [{"groupName": "nope"}],
            },
            f"{W0}.groupName": "Workers",
        },
        ALL_GATES,
        [
            "spec.networkPolicy.head.ingressRules: Forbidden: ingress is not restricted when mode is 'DenyAllEgress'",
            "spec.workerGroupSpecs[0].groupName: Invalid value: \"Workers\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?') (required when networkPolicy is set)",
            'spec.networkPolicy.workerGroups[0].groupName: Invalid value: "nope": does not match any workerGroupSpecs[].groupName',
        ],
    ),
    # ---- rule 19
    ("tls ok", "RayCluster", {"spec.tlsOptions": {"enabled": True}}, ALL_GATES, []),
    (
        "tls without gate",
        "RayCluster",
        {"spec.tlsOptions": {"enabled": False}},
        None,
        ["spec.tlsOptions: Forbidden: requires the RayClusterMTLS feature gate"],
    ),
    (
        "tls with user tls env and mounts",
        "RayCluster",
        {
            "spec.tlsOptions": {"enabled": True},
            f"{HC}.env": [{"name": "RAY_USE_TLS", "value": "1"}],
            f"{W0C}.volumeMounts": [{"name": "certs", "mountPath": "/etc/ray/tls"}],
            "spec.autoscalerOptions": {"env": [{"name": "RAY_TLS_CA_CERT", "value": "x"}]},
        },
        ALL_GATES,
        [
            f"{HC}.env[0]: Forbidden: RAY_USE_TLS must not be set; the operator manages TLS when tlsOptions.enabled is true",
            f"{W0C}.volumeMounts[0]: Forbidden: a mount named 'ray-tls' or at /etc/ray/tls is reserved; the operator manages TLS when tlsOptions.enabled is true",
            "spec.autoscalerOptions.env[0]: Forbidden: RAY_TLS_CA_CERT must not be set; the operator manages TLS when tlsOptions.enabled is true",
        ],
    ),
    # ---- RayCluster-only rules
    ("upgrade recreate", "RayCluster", {"spec.upgradeStrategy.type": "Recreate"}, None, []),
    (
        "upgrade unknown",
        "RayCluster",
        {"spec.upgradeStrategy.type": "Rolling"},
        None,
        ['spec.upgradeStrategy.type: Unsupported value: "Rolling": supported values: "Recreate", "None"'],
    ),
    (
        "upgrade on rayjob cluster",
        "RayCluster",
        {"spec.upgradeStrategy.type": "None", "metadata.labels.'ray.io/originated-from-crd'": "RayJob"},
        None,
        [
            "spec.upgradeStrategy.type: Forbidden: must not be set on a RayCluster created by a RayJob; the RayJob decides how its cluster is replaced"
        ],
    ),
    (
        "managedBy unknown",
        "RayCluster",
        {"spec.managedBy": "me"},
        None,
        [
            'spec.managedBy: Unsupported value: "me": supported values: "ray.io/kuberay-operator", "kueue.x-k8s.io/multikueue"'
        ],
    ),
    ("managedBy kueue", "RayCluster", {"spec.managedBy": "kueue.x-k8s.io/multikueue"}, None, []),
    # ---- malformed types become field errors
    (
        "wrong types",
        "RayCluster",
        {f"{W0}.replicas": "3", "spec.enableInTreeAutoscaling": "yes", f"{H}.rayStartParams": [1]},
        None,
        [
            f'{H}.rayStartParams: Invalid value: "array": must be of type object',
            'spec.enableInTreeAutoscaling: Invalid value: "string": must be of type boolean',
            f'{W0}.replicas: Invalid value: "string": must be of type integer',
        ],
    ),
    (
        "int32 overflow",
        "RayCluster",
        {f"{W0}.maxReplicas": 2**31},
        None,
        [f"{W0}.maxReplicas: Invalid value: 2147483648: must fit in a 32-bit signed integer"],
    ),
    # ---- RayJob (ValidateRayJobSpec)
    ("rj ok", "RayJob", {}, None, []),
    (
        "rj suspend with shutdown",
        "RayJob",
        {"spec.suspend": True, "spec.shutdownAfterJobFinishes": True},
        None,
        [],
    ),
    (
        "rj suspend without shutdown",
        "RayJob",
        {"spec.suspend": True},
        None,
        ["spec.suspend: Forbidden: a RayJob can be suspended only when shutdownAfterJobFinishes is true"],
    ),
    (
        "rj ttl",
        "RayJob",
        {"spec.ttlSecondsAfterFinished": 10},
        None,
        ["spec.ttlSecondsAfterFinished: Invalid value: 10: requires shutdownAfterJobFinishes: true"],
    ),
    (
        "rj ttl negative",
        "RayJob",
        {"spec.ttlSecondsAfterFinished": -1, "spec.shutdownAfterJobFinishes": True},
        None,
        ["spec.ttlSecondsAfterFinished: Invalid value: -1: must be greater than or equal to 0"],
    ),
    (
        "rj ttl with shutdown",
        "RayJob",
        {"spec.ttlSecondsAfterFinished": 10, "spec.shutdownAfterJobFinishes": True},
        None,
        [],
    ),
    (
        "rj neither cluster nor selector",
        "RayJob",
        {"spec.rayClusterSpec": DEL},
        None,
        ["spec.rayClusterSpec: Required value: one of rayClusterSpec or clusterSelector must be set"],
    ),
    (
        "rj selector",
        "RayJob",
        {"spec.rayClusterSpec": DEL, "spec.clusterSelector": {"ray.io/cluster": "c"}},
        None,
        [],
    ),
    (
        "rj selector misuse",
        "RayJob",
        {
            "spec.rayClusterSpec": DEL,
            "spec.clusterSelector": {"team": "x"},
            "spec.submissionMode": "SidecarMode",
            "spec.backoffLimit": 2,
            "spec.suspend": True,
            "spec.shutdownAfterJobFinishes": True,
        },
        None,
        [
            "spec.suspend: Forbidden: a RayJob that uses clusterSelector cannot be suspended",
            "spec.clusterSelector[ray.io/cluster]: Required value: must name the RayCluster to run the job on",
            "spec.submissionMode: Forbidden: SidecarMode cannot be used with clusterSelector",
            "spec.backoffLimit: Forbidden: retries are not supported with clusterSelector",
        ],
    ),
    (
        "rj interactive retries",
        "RayJob",
        {"spec.submissionMode": "InteractiveMode", "spec.backoffLimit": 1},
        None,
        ["spec.backoffLimit: Forbidden: retries are not supported in InteractiveMode"],
    ),
    (
        "rj interactive",
        "RayJob",
        {"spec.submissionMode": "InteractiveMode", "spec.backoffLimit": 0, "spec.entrypoint": DEL},
        None,
        [],
    ),
    (
        "rj no entrypoint",
        "RayJob",
        {"spec.entrypoint": " "},
        None,
        ["spec.entrypoint: Required value: must be set in K8sJobMode"],
    ),
    (
        "rj no entrypoint http",
        "RayJob",
        {"spec.entrypoint": DEL, "spec.submissionMode": "HTTPMode"},
        None,
        ["spec.entrypoint: Required value: must be set in HTTPMode"],
    ),
    (
        "rj sidecar misuse",
        "RayJob",
        {
            "spec.submissionMode": "SidecarMode",
            "spec.submitterPodTemplate": {"spec": {"containers": [{"name": "s"}]}},
            "spec.submitterConfig": {"backoffLimit": 1},
            "spec.rayClusterSpec.headGroupSpec.template.spec.restartPolicy": "Always",
        },
        None,
        [
            "spec.submitterPodTemplate: Forbidden: is not used in SidecarMode",
            "spec.submitterConfig: Forbidden: is not used in SidecarMode",
            'spec.rayClusterSpec.headGroupSpec.template.spec.restartPolicy: Invalid value: "Always": must be Never or unset in SidecarMode',
        ],
    ),
    ("rj sidecar", "RayJob", {"spec.submissionMode": "SidecarMode"}, None, []),
    (
        "rj bad mode",
        "RayJob",
        {"spec.submissionMode": "BatchMode"},
        None,
        [
            'spec.submissionMode: Unsupported value: "BatchMode": supported values: "K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"'
        ],
    ),
    (
        "rj k8s token auth",
        "RayJob",
        {"spec.rayClusterSpec.authOptions": {"mode": "token", "enableK8sTokenAuth": True}},
        None,
        [
            "spec.rayClusterSpec.authOptions.enableK8sTokenAuth: Forbidden: Kubernetes token auth is not supported for RayJob"
        ],
    ),
    (
        "rj embedded cluster invalid",
        "RayJob",
        {"spec.rayClusterSpec.workerGroupSpecs[0].minReplicas": 4},
        None,
        [
            "spec.rayClusterSpec.workerGroupSpecs[0].minReplicas: Invalid value: 4: must be less than or equal to maxReplicas (1)"
        ],
    ),
    (
        "rj runtime env ok",
        "RayJob",
        {"spec.runtimeEnvYAML": "pip: [requests]\nenv_vars:\n  A: '1'\n"},
        None,
        [],
    ),
    (
        "rj runtime env not yaml",
        "RayJob",
        {"spec.runtimeEnvYAML": "pip: [requests"},
        None,
        [
            'spec.runtimeEnvYAML: Invalid value: "pip: [requests": is not valid YAML: while parsing a flow sequence'
        ],
    ),
    (
        "rj runtime env not a map",
        "RayJob",
        {"spec.runtimeEnvYAML": "- a\n- b\n"},
        None,
        ['spec.runtimeEnvYAML: Invalid value: "- a\\n- b\\n": must be a YAML mapping (got array)'],
    ),
    (
        "rj deadlines and backoff",
        "RayJob",
        {"spec.activeDeadlineSeconds": 0, "spec.preRunningDeadlineSeconds": -1, "spec.backoffLimit": -1},
        None,
        [
            "spec.activeDeadlineSeconds: Invalid value: 0: must be greater than 0",
            "spec.preRunningDeadlineSeconds: Invalid value: -1: must be greater than 0",
            "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
        ],
    ),
    (
        "rj deadlines ok",
        "RayJob",
        {"spec.activeDeadlineSeconds": 60, "spec.preRunningDeadlineSeconds": 30, "spec.backoffLimit": 2},
        None,
        [],
    ),
    (
        "rj entrypoint resources",
        "RayJob",
        {"spec.entrypointResources": "{custom: 1}"},
        None,
        [
            'spec.entrypointResources: Invalid value: "{custom: 1}": must be a JSON object of resource names to numbers, e.g. {"custom": 1}'
        ],
    ),
    ("rj entrypoint resources ok", "RayJob", {"spec.entrypointResources": '{"custom": 1}'}, None, []),
    # deletion strategy
    (
        "rj rules ok",
        "RayJob",
        {
            "spec.deletionStrategy.deletionRules": [
                {"policy": "DeleteWorkers", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}},
                {"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 10}},
                {"policy": "DeleteSelf", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 20}},
                {"policy": "DeleteCluster", "condition": {"jobDeploymentStatus": "Failed"}},
            ]
        },
        None,
        [],
    ),
    (
        "rj rules without gate",
        "RayJob",
        {
            "spec.deletionStrategy.deletionRules": [
                {"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED"}}
            ]
        },
        {"RayJobDeletionPolicy": False},
        ["spec.deletionStrategy: Forbidden: requires the RayJobDeletionPolicy feature gate"],
    ),
    (
        "rj rules with shutdown and legacy",
        "RayJob",
        {
            "spec.shutdownAfterJobFinishes": True,
            "spec.deletionStrategy": {
                "onSuccess": {"policy": "DeleteCluster"},
                "deletionRules": [{"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED"}}],
            },
        },
        None,
        [
            "spec.deletionStrategy.deletionRules: Forbidden: must not be used together with shutdownAfterJobFinishes: true",
            "spec.deletionStrategy: Forbidden: legacy onSuccess/onFailure and deletionRules cannot be used together",
        ],
    ),
    (
        "rj empty strategy",
        "RayJob",
        {"spec.deletionStrategy": {}},
        None,
        [
            "spec.deletionStrategy: Required value: set both onSuccess and onFailure, or a non-empty deletionRules list"
        ],
    ),
    (
        "rj rules content",
        "RayJob",
        {
            "spec.enableInTreeAutoscaling": DEL,
            "spec.rayClusterSpec.enableInTreeAutoscaling": True,
            "spec.deletionStrategy.deletionRules": [
                {"policy": "DeleteSelf", "condition": {"jobStatus": "FAILED", "ttlSeconds": 5}},
                {"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED", "ttlSeconds": 10}},
                {"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED", "ttlSeconds": 10}},
                {"policy": "DeleteWorkers", "condition": {"jobStatus": "FAILED"}},
                {
                    "policy": "DeleteNone",
                    "condition": {"jobStatus": "FAILED", "jobDeploymentStatus": "Failed"},
                },
                {"policy": "DeleteNone", "condition": {}},
                {"policy": "DeleteNone", "condition": {"jobStatus": "RUNNING", "ttlSeconds": -1}},
            ],
        },
        None,
        [
            'spec.deletionStrategy.deletionRules[2]: Duplicate value: {"jobStatus":"FAILED","policy":"DeleteCluster"}',
            "spec.deletionStrategy.deletionRules[3].policy: Forbidden: DeleteWorkers is not supported while enableInTreeAutoscaling is true",
            "spec.deletionStrategy.deletionRules[4].condition: Forbidden: jobStatus and jobDeploymentStatus cannot both be set",
            "spec.deletionStrategy.deletionRules[5].condition: Required value: exactly one of jobStatus or jobDeploymentStatus must be set",
            'spec.deletionStrategy.deletionRules[6].condition.jobStatus: Unsupported value: "RUNNING": supported values: "SUCCEEDED", "FAILED"',
            "spec.deletionStrategy.deletionRules[6].condition.ttlSeconds: Invalid value: -1: must be greater than or equal to 0",
            "spec.deletionStrategy.deletionRules[0].condition.ttlSeconds: Invalid value: 5: must be greater than or equal to the DeleteCluster ttlSeconds (10) for jobStatus FAILED",
        ],
    ),
    (
        "rj rules with selector",
        "RayJob",
        {
            "spec.rayClusterSpec": DEL,
            "spec.clusterSelector": {"ray.io/cluster": "c"},
            "spec.deletionStrategy.deletionRules": [
                {"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED"}}
            ],
        },
        None,
        [
            "spec.deletionStrategy.deletionRules[0].policy: Forbidden: DeleteCluster is not supported with clusterSelector"
        ],
    ),
    (
        "rj legacy ok",
        "RayJob",
        {
            "spec.deletionStrategy": {
                "onSuccess": {"policy": "DeleteCluster"},
                "onFailure": {"policy": "DeleteNone"},
            }
        },
        None,
        [],
    ),
    (
        "rj legacy incomplete",
        "RayJob",
        {"spec.deletionStrategy": {"onSuccess": {}}},
        None,
        [
            "spec.deletionStrategy.onSuccess.policy: Required value",
            "spec.deletionStrategy.onFailure: Required value: onSuccess and onFailure must both be set when either is",
        ],
    ),
    (
        "rj legacy conflicts",
        "RayJob",
        {
            "spec.rayClusterSpec": DEL,
            "spec.clusterSelector": {"ray.io/cluster": "c"},
            "spec.shutdownAfterJobFinishes": True,
            "spec.deletionStrategy": {
                "onSuccess": {"policy": "DeleteWorkers"},
                "onFailure": {"policy": "DeleteNone"},
            },
        },
        None,
        [
            "spec.deletionStrategy.onSuccess.policy: Forbidden: DeleteWorkers on success is not supported with clusterSelector",
            'spec.deletionStrategy.onFailure.policy: Invalid value: "DeleteNone": contradicts shutdownAfterJobFinishes: true',
        ],
    ),
    # ---- RayService (ValidateRayServiceSpec)
    ("rs ok", "RayService", {}, None, []),
    (
        "rs k8s token auth and head service name",
        "RayService",
        {
            "spec.rayClusterConfig.authOptions": {"mode": "token", "enableK8sTokenAuth": True},
            "spec.rayClusterConfig.headGroupSpec.headService": {"metadata": {"name": "fixed"}},
        },
        None,
        [
            "spec.rayClusterConfig.authOptions.enableK8sTokenAuth: Forbidden: Kubernetes token auth is not supported for RayService",
            "spec.rayClusterConfig.headGroupSpec.headService.metadata.name: Forbidden: must not be set; each cluster of a RayService needs its own head Service name",
        ],
    ),
    (
        "rs cluster config missing",
        "RayService",
        {"spec.rayClusterConfig": DEL},
        None,
        ["spec.rayClusterConfig: Required value"],
    ),
    (
        "rs embedded cluster invalid",
        "RayService",
        {"spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers": []},
        None,
        [
            "spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers: Required value: the worker pod template must have at least one container (the first one runs Ray)"
        ],
    ),
    (
        "rs upgrade type and delay",
        "RayService",
        {"spec.upgradeStrategy.type": "BlueGreen", "spec.rayClusterDeletionDelaySeconds": -1},
        None,
        [
            'spec.upgradeStrategy.type: Unsupported value: "BlueGreen": supported values: "NewClusterWithIncrementalUpgrade", "NewCluster", "None"',
            "spec.rayClusterDeletionDelaySeconds: Invalid value: -1: must be greater than or equal to 0",
        ],
    ),
    (
        "rs incremental ok",
        "RayService",
        {
            "spec.rayClusterConfig.enableInTreeAutoscaling": True,
            "spec.upgradeStrategy": {
                "type": "NewClusterWithIncrementalUpgrade",
                "clusterUpgradeOptions": {
                    "stepSizePercent": 10,
                    "intervalSeconds": 30,
                    "gatewayClassName": "istio",
                },
            },
        },
        None,
        [],
    ),
    (
        "rs incremental without options",
        "RayService",
        {"spec.upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade"}},
        None,
        [
            "spec.upgradeStrategy.type: Forbidden: NewClusterWithIncrementalUpgrade requires spec.rayClusterConfig.enableInTreeAutoscaling: true",
            "spec.upgradeStrategy.clusterUpgradeOptions: Required value: is required for NewClusterWithIncrementalUpgrade",
        ],
    ),
    (
        "rs incremental bad options",
        "RayService",
        {
            "spec.rayClusterConfig.enableInTreeAutoscaling": True,
            "spec.upgradeStrategy": {
                "type": "NewClusterWithIncrementalUpgrade",
                "clusterUpgradeOptions": {"maxSurgePercent": 20, "stepSizePercent": 30, "intervalSeconds": 0},
            },
        },
        None,
        [
            "spec.upgradeStrategy.clusterUpgradeOptions.stepSizePercent: Invalid value: 30: must be less than or equal to maxSurgePercent (20)",
            "spec.upgradeStrategy.clusterUpgradeOptions.intervalSeconds: Invalid value: 0: must be greater than 0",
            "spec.upgradeStrategy.clusterUpgradeOptions.gatewayClassName: Required value: is required for NewClusterWithIncrementalUpgrade",
        ],
    ),
    (
        "rs incremental ranges",
        "RayService",
        {
            "spec.rayClusterConfig.enableInTreeAutoscaling": True,
            "spec.upgradeStrategy": {
                "type": "NewClusterWithIncrementalUpgrade",
                "clusterUpgradeOptions": {
                    "maxSurgePercent": 120,
                    "stepSizePercent": -1,
                    "gatewayClassName": "g",
                },
            },
        },
        None,
        [
            "spec.upgradeStrategy.clusterUpgradeOptions.maxSurgePercent: Invalid value: 120: must be between 0 and 100",
            "spec.upgradeStrategy.clusterUpgradeOptions.stepSizePercent: Invalid value: -1: must be between 0 and 100",
            "spec.upgradeStrategy.clusterUpgradeOptions.intervalSeconds: Required value",
        ],
    ),
    # ---- env var sources (the Pod API's rule; found by the chaos campaign's fuzzers)
    (
        "env valueFrom one source ok",
        "RayCluster",
        {f"{HC}.env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]},
        None,
        [],
    ),
    (
        "env valueFrom empty",
        "RayCluster",
        {f"{W0C}.env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {}}]},
        None,
        [
            f'{W0C}.env[1].valueFrom: Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, '
            "`configMapKeyRef`, `secretKeyRef` or `fileKeyRef`"
        ],
    ),
    (
        "env valueFrom two sources",
        "RayJob",
        {
            "spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].env": [
                {
                    "name": "B",
                    "valueFrom": {
                        "fieldRef": {"fieldPath": "spec.nodeName"},
                        "secretKeyRef": {"name": "s", "key": "k"},
                    },
                }
            ]
        },
        None,
        [
            "spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].env[0].valueFrom: Invalid value: "
            '"": may not have more than one field specified at a time'
        ],
    ),
    (
        "env value and valueFrom",
        "RayCluster",
        {
            f"{HC}.env": [
                {"name": "B", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
            ]
        },
        None,
        [f'{HC}.env[0].valueFrom: Invalid value: "": may not be specified when `value` is not empty'],
    ),
    (
        "rs incremental gate off is not checked",
        "RayService",
        {"spec.upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade"}},
        {"RayServiceIncrementalUpgrade": False},
        [],
    ),
    (
        "rs serve config not yaml",
        "RayService",
        {"spec.serveConfigV2": "applications: [\n"},
        None,
        [
            'spec.serveConfigV2: Invalid value: "applications: [\\n": is not valid YAML: while parsing a flow node'
        ],
    ),
]


@pytest.mark.parametrize(
    ("kind", "changes", "gates", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule(kind: str, changes: dict[str, Any], gates: dict[str, bool] | None, expected: list[str]) -> None:
    obj = build(kind, changes)
    got = [str(e) for e in validate(kind, obj, gates=gates)]
    assert sorted(got) == sorted(expected)


def test_case_ids_unique() -> None:
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_every_rule_has_accepted_and_rejected_cases() -> None:
    accepted = sum(1 for c in CASES if not c[4])
    rejected = sum(1 for c in CASES if c[4])
    assert accepted >= 30 and rejected >= 60
