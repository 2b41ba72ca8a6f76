"""Ray-level OpenAPI v3 schemas of the ray.io CRDs: the KubeRay v1.7.0 field set of RayCluster, RayJob and
RayService (`ray.io/v1`), spec and status.

Embedded Kubernetes types (PodTemplateSpec, Service, EnvVar, ...) appear here only as `$ref`s to the
component names of the API server's own OpenAPI document; `rayop.api.crdgen` inlines them. Field names,
types, defaults, enums, minimums, required lists and CEL rules follow the kubebuilder markers of
`ray-operator/apis/ray/v1/{raycluster,rayjob,rayservice}_types.go` (docs/compatibility.md#custom-resources).

Deliberate differences, each stricter only where KubeRay rejects the value anyway (in its controller):
`minReplicas` and `maxReplicas` carry `minimum: 0` (KubeRay validation rule "min/max >= 0"), so the API
server refuses a negative value with the field's path instead of the controller emitting an event later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from rayop.api import constants as c
from rayop.api import servedeployment as SD
from rayop.api import workergroup as W

Schema = dict[str, Any]

CORE: Final = "io.k8s.api.core.v1."
NETWORKING: Final = "io.k8s.api.networking.v1."
META: Final = "io.k8s.apimachinery.pkg.apis.meta.v1."
QUANTITY: Final = "io.k8s.apimachinery.pkg.api.resource.Quantity"
TIME: Final = META + "Time"
REF_PREFIX: Final = "#/components/schemas/"

MAX_INT32: Final = 2147483647

# CEL messages are what a user sees when the API server refuses an object; they are kept identical to
# KubeRay's so that scripts and docs written against KubeRay keep matching.
MSG_MANAGED_BY_IMMUTABLE: Final = "the managedBy field is immutable"
MSG_MANAGED_BY_VALUE: Final = (
    f"the managedBy field value must be either '{c.MANAGED_BY_KUBERAY}' or '{c.MANAGED_BY_MULTIKUEUE}'"
)
MSG_BACKEND_IMMUTABLE: Final = "gcsFaultToleranceOptions.backend is immutable"
MSG_DELETION_MIXED: Final = (
    "legacy policies (onSuccess/onFailure) and deletionRules cannot be used together "
    "within the same deletionStrategy"
)
MSG_DELETION_INCOMPLETE: Final = (
    "deletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules field "
    "(cannot be empty)"
)
MSG_CONDITION_BOTH: Final = (
    "JobStatus and JobDeploymentStatus cannot be used together within the same deletion condition."
)
MSG_CONDITION_NONE: Final = (
    "the deletion condition requires either the JobStatus or the JobDeploymentStatus field."
)


# Small constructors ------------------------------------------------------------------------------


def _describe(schema: Schema, description: str | None) -> Schema:
    if description:
        schema["description"] = description
    return schema


def ref(component: str, description: str | None = None, **extra: Any) -> Schema:
    """A reference to a component of the API server's OpenAPI document, resolved by crdgen."""
    return _describe({"$ref": REF_PREFIX + component, **extra}, description)


def string(
    description: str | None = None,
    *,
    enum: Sequence[str] | None = None,
    default: str | None = None,
    rules: Iterable[Schema] = (),
) -> Schema:
    s: Schema = {"type": "string"}
    if enum is not None:
        s["enum"] = list(enum)
    if default is not None:
        s["default"] = default
    rules = list(rules)
    if rules:
        s["x-kubernetes-validations"] = rules
    return _describe(s, description)


def integer(
    description: str | None = None,
    *,
    fmt: str = "int32",
    minimum: int | None = None,
    default: int | None = None,
) -> Schema:
    s: Schema = {"type": "integer", "format": fmt}
    if minimum is not None:
        s["minimum"] = minimum
    if default is not None:
        s["default"] = default
    return _describe(s, description)


def number(description: str | None = None) -> Schema:
    return _describe({"type": "number"}, description)


def boolean(description: str | None = None) -> Schema:
    return _describe({"type": "boolean"}, description)


def string_map(description: str | None = None) -> Schema:
    return _describe({"type": "object", "additionalProperties": {"type": "string"}}, description)


def map_of(values: Schema, description: str | None = None) -> Schema:
    return _describe({"type": "object", "additionalProperties": values}, description)


def array(
    items: Schema,
    description: str | None = None,
    *,
    list_type: str | None = None,
    map_keys: Sequence[str] | None = None,
    min_items: int | None = None,
) -> Schema:
    if description and "description" in items:
        # kubectl explain prints both; the list's own description is the one users look for.
        items = {k: v for k, v in items.items() if k != "description"}
    s: Schema = {"type": "array", "items": items}
    if list_type:
        s["x-kubernetes-list-type"] = list_type
    if map_keys:
        s["x-kubernetes-list-map-keys"] = list(map_keys)
    if min_items is not None:
        s["minItems"] = min_items
    return _describe(s, description)


def obj(
    properties: Mapping[str, Schema],
    description: str | None = None,
    *,
    required: Iterable[str] = (),
    rules: Iterable[Schema] = (),
) -> Schema:
    s: Schema = {"type": "object", "properties": dict(properties)}
    req = sorted(required)
    unknown = set(req) - set(properties)
    if unknown:
        raise ValueError(f"required properties {sorted(unknown)} are not declared")
    if req:
        s["required"] = req
    rules = list(rules)
    if rules:
        s["x-kubernetes-validations"] = rules
    return _describe(s, description)


def rule(expression: str, message: str) -> Schema:
    return {"rule": expression, "message": message}


def time(description: str | None = None) -> Schema:
    return ref(TIME, description)


def quantity(description: str | None = None) -> Schema:
    return ref(QUANTITY, description)


# Shared pieces ------------------------------------------------------------------------------------


def managed_by(kind: str) -> Schema:
    return string(
        f"Which controller manages this {kind}: '{c.MANAGED_BY_KUBERAY}' (the default when unset) or "
        f"'{c.MANAGED_BY_MULTIKUEUE}' (reconciled elsewhere, skipped by the operator). Immutable.",
        rules=[
            rule("self == oldSelf", MSG_MANAGED_BY_IMMUTABLE),
            rule(f"self in ['{c.MANAGED_BY_KUBERAY}', '{c.MANAGED_BY_MULTIKUEUE}']", MSG_MANAGED_BY_VALUE),
        ],
    )


def conditions(description: str) -> Schema:
    return array(ref(META + "Condition"), description, list_type="map", map_keys=["type"])


def _redis_credential(description: str) -> Schema:
    return obj(
        {
            "valueFrom": ref(CORE + "EnvVarSource", "Where to read the value from (Secret, ConfigMap, ...)."),
            "value": string("The value itself."),
        },
        description,
    )


def _network_policy_rules(description: str, *, group_name: bool = False) -> Schema:
    props: dict[str, Schema] = {}
    if group_name:
        props["groupName"] = string("The worker group (workerGroupSpecs[].groupName) these rules apply to.")
    props["ingressRules"] = array(
        ref(NETWORKING + "NetworkPolicyIngressRule"),
        "Ingress rules added to the operator's base policy (meaningful with DenyAll and DenyAllIngress).",
    )
    props["egressRules"] = array(
        ref(NETWORKING + "NetworkPolicyEgressRule"),
        "Egress rules added to the operator's base policy (meaningful with DenyAll and DenyAllEgress). "
        "DNS is not allowed automatically: add it here, or pods cannot resolve the head service.",
    )
    return obj(props, description, required=["groupName"] if group_name else ())


# RayCluster ---------------------------------------------------------------------------------------


def autoscaler_options() -> Schema:
    return obj(
        {
            "resources": ref(
                CORE + "ResourceRequirements",
                "Requests and limits of the autoscaler container (default 500m CPU and 512Mi memory).",
            ),
            "image": string("Autoscaler image; defaults to the image of the Ray container."),
            "imagePullPolicy": string("Pull policy of the autoscaler image."),
            "securityContext": ref(CORE + "SecurityContext", "Security context of the autoscaler container."),
            "idleTimeoutSeconds": integer(
                "Seconds a worker may stay idle before the autoscaler removes it (Ray's default: 60). "
                "Read by Ray's autoscaler, not by the operator."
            ),
            "upscalingMode": string(
                "Conservative limits pending workers to the cluster's size; Default and Aggressive do not "
                "limit scale-up. Read by Ray's autoscaler.",
                enum=["Default", "Aggressive", "Conservative"],
            ),
            "version": string(
                "Autoscaler version to run; unset lets the Ray version decide (v2 from Ray 2.47.0).",
                enum=["v1", "v2"],
            ),
            "env": array(ref(CORE + "EnvVar"), "Extra environment variables of the autoscaler container."),
            "envFrom": array(
                ref(CORE + "EnvFromSource"), "Extra environment sources of the autoscaler container."
            ),
            "volumeMounts": array(
                ref(CORE + "VolumeMount"), "Extra volume mounts of the autoscaler container (e.g. for TLS)."
            ),
            "command": array(string(), "Replaces the autoscaler container's command."),
            "args": array(string(), "Replaces the autoscaler container's arguments."),
        },
        "Settings of the Ray autoscaler sidecar.",
    )


def gcs_fault_tolerance_options() -> Schema:
    return obj(
        {
            "backend": string(
                "Where GCS state is persisted: redis (default) or rocksdb on a volume of the head Pod. Immutable.",
                enum=["redis", "rocksdb"],
                rules=[rule("self == oldSelf", MSG_BACKEND_IMMUTABLE)],
            ),
            "redisUsername": _redis_credential("Redis user name, given inline or read from a source."),
            "redisPassword": _redis_credential("Redis password, given inline or read from a source."),
            "externalStorageNamespace": string(
                "Namespace of this cluster's keys in the external storage (default: the RayCluster's UID)."
            ),
            "redisAddress": string("Address of the external Redis (redis backend)."),
            "storage": obj(
                {
                    "claimName": string(
                        "An existing PersistentVolumeClaim to use as is; excludes size, storageClassName "
                        "and accessModes."
                    ),
                    "size": quantity("Size of the operator-managed claim (default 1Gi)."),
                    "storageClassName": string("Storage class of the operator-managed claim."),
                    "accessModes": array(
                        string(), "Access modes of the operator-managed claim (default [ReadWriteOnce])."
                    ),
                    "subPath": string("Mount this sub-directory of the volume instead of its root."),
                    "deletionPolicy": string(
                        "Whether the operator-managed claim is deleted with the cluster (default "
                        "DeleteWithCluster) or kept.",
                        enum=["DeleteWithCluster", "Retain"],
                    ),
                },
                "Volume that holds the embedded RocksDB store (rocksdb backend).",
            ),
        },
        "GCS fault tolerance: persist GCS state so the cluster survives a head restart.",
    )


def network_policy() -> Schema:
    return obj(
        {
            "mode": string(
                "DenyAll, DenyAllIngress or DenyAllEgress; traffic between the cluster's own Pods is always "
                "allowed.",
                enum=["DenyAll", "DenyAllIngress", "DenyAllEgress"],
                default="DenyAll",
            ),
            "head": _network_policy_rules("Rules added to the head Pod's policy."),
            "worker": _network_policy_rules("Rules added to every worker group without its own entry."),
            "workerGroups": array(
                _network_policy_rules("Rules for one worker group.", group_name=True),
                "Per-group rules; an entry replaces `worker` for that group.",
                list_type="map",
                map_keys=["groupName"],
            ),
        },
        "NetworkPolicies isolating the cluster's Pods (feature gate RayClusterNetworkPolicy).",
    )


def head_group_spec() -> Schema:
    return obj(
        {
            "template": ref(
                CORE + "PodTemplateSpec",
                "Pod template of the head; its first container runs Ray.",
            ),
            "headService": ref(
                CORE + "Service",
                "Custom head Service; the operator sets its selector and namespace and adds Ray's ports.",
            ),
            "enableIngress": boolean("Create an Ingress for the dashboard."),
            "ingressOptions": obj(
                {
                    "host": string("Host the Ingress rule matches (default: any host)."),
                    "path": string("Path routed to the dashboard (default /)."),
                    "pathType": string(
                        "How the path is matched (default Prefix).",
                        enum=["Exact", "Prefix", "ImplementationSpecific"],
                    ),
                    "tls": array(ref(NETWORKING + "IngressTLS"), "TLS settings of the Ingress."),
                },
                "Settings of the dashboard Ingress.",
            ),
            "resources": string_map(
                "Ray logical resources of the head (cpu, memory, *gpu, custom); override the Pod's resources "
                "for Ray only."
            ),
            "labels": string_map("Ray node labels of the head; also added to the head Pod."),
            "rayStartParams": string_map("Options of `ray start --head`, without the leading dashes."),
            "serviceType": string("Type of the head Service (ClusterIP, NodePort, LoadBalancer)."),
        },
        "The head Pod.",
        required=["template"],
    )


def worker_group_spec() -> Schema:
    return obj(
        {
            "suspend": boolean("Delete all Pods of this group; set by RayJob deletion rules, not by users."),
            "groupName": string("Name of the group, unique within the cluster."),
            "replicas": integer(
                "Desired number of replicas; clamped to [minReplicas, maxReplicas].", default=0
            ),
            "minReplicas": integer("Fewest replicas of this group.", minimum=0, default=0),
            "maxReplicas": integer("Most replicas of this group.", minimum=0, default=MAX_INT32),
            "idleTimeoutSeconds": integer(
                "Seconds an idle worker of this group may live before autoscaler v2 removes it."
            ),
            "priority": integer(
                "Autoscaler v2 prefers higher-priority groups when scaling up (Ray 2.56 or later).", default=0
            ),
            "resources": string_map(
                "Ray logical resources of each worker (cpu, memory, *gpu, custom); override the Pod's "
                "resources for Ray only."
            ),
            "labels": string_map("Ray node labels of the workers; also added to their Pods."),
            "rayStartParams": string_map("Options of `ray start`, without the leading dashes."),
            "template": ref(
                CORE + "PodTemplateSpec", "Pod template of the workers; the first container runs Ray."
            ),
            "scaleStrategy": obj(
                {"workersToDelete": array(string(), "Names of worker Pods to delete.")},
                "Targeted scale-down, written by Ray's autoscaler.",
            ),
            "numOfHosts": integer("Pods per replica (multi-host replicas such as TPU slices).", default=1),
        },
        "One group of identical worker Pods.",
        required=["groupName", "maxReplicas", "minReplicas", "template"],
    )


def ray_cluster_spec(description: str | None = None) -> Schema:
    return obj(
        {
            "upgradeStrategy": obj(
                {
                    "type": string(
                        "Recreate deletes all Pods when the Pod templates change; None never does.",
                        enum=["Recreate", "None"],
                    )
                },
                "What happens to running Pods when the spec changes.",
            ),
            "authOptions": obj(
                {
                    "enableK8sTokenAuth": boolean(
                        "Let Ray check tokens against the Kubernetes API (RayCluster only; Ray 2.55.0 or later)."
                    ),
                    "secretName": string(
                        "Secret with the token under key auth_token; when unset the operator creates one."
                    ),
                    "mode": string("disabled or token.", enum=["disabled", "token"]),
                },
                "Authentication of requests to the Ray cluster.",
            ),
            "suspend": boolean("Delete all Pods of the cluster while true."),
            "managedBy": managed_by("RayCluster"),
            "autoscalerOptions": autoscaler_options(),
            "headServiceAnnotations": string_map("Annotations of the head Service."),
            "enableInTreeAutoscaling": boolean("Run Ray's autoscaler as a sidecar of the head Pod."),
            "gcsFaultToleranceOptions": gcs_fault_tolerance_options(),
            "historyServerOptions": obj(
                {
                    "collectorOptions": obj(
                        {
                            "image": string("Collector image."),
                            "imagePullPolicy": string("Pull policy of the collector image."),
                            "resources": ref(CORE + "ResourceRequirements", "Resources of the collector."),
                            "env": array(
                                ref(CORE + "EnvVar"), "Extra environment variables of the collector."
                            ),
                        },
                        "The history collector sidecar added to Ray Pods.",
                    )
                },
                "Ray history server integration (feature gate RayClusterHistoryServer).",
            ),
            "networkPolicy": network_policy(),
            "tlsOptions": obj(
                {"enabled": boolean("Turn on mTLS between Ray Pods (default false).")},
                "mTLS with certificates from cert-manager (feature gate RayClusterMTLS).",
            ),
            "headGroupSpec": head_group_spec(),
            "rayVersion": string("Ray version of the image; selects version-dependent behaviour."),
            "workerGroupSpecs": array(worker_group_spec(), "The worker groups."),
        },
        description,
        required=["headGroupSpec"],
    )


def ray_cluster_status(description: str | None = None) -> Schema:
    return obj(
        {
            "state": string("Deprecated, use conditions: ready, suspended or failed."),
            "desiredCPU": quantity("CPUs requested by all desired Pods."),
            "desiredMemory": quantity("Memory requested by all desired Pods."),
            "desiredGPU": quantity("GPUs requested by all desired Pods."),
            "desiredTPU": quantity("TPUs requested by all desired Pods."),
            "lastUpdateTime": time("When the status was last written.") | {"nullable": True},
            "stateTransitionTimes": map_of(time(), "When the cluster last entered each state."),
            "endpoints": string_map("Ports of the head Service by name."),
            "head": obj(
                {
                    "podIP": string(),
                    "serviceIP": string(),
                    "podName": string(),
                    "serviceName": string(),
                },
                "Addresses of the head Pod and Service.",
            ),
            "reason": string("Why the cluster is in its state."),
            "conditions": conditions(
                "HeadPodReady, RayClusterProvisioned, ReplicaFailure, Suspending, Suspended."
            ),
            "readyWorkerReplicas": integer("Worker Pods that are ready."),
            "availableWorkerReplicas": integer("Worker Pods that are running."),
            "desiredWorkerReplicas": integer("Desired worker Pods (replicas x numOfHosts, summed)."),
            "minWorkerReplicas": integer("Sum of minReplicas x numOfHosts."),
            "maxWorkerReplicas": integer("Sum of maxReplicas x numOfHosts."),
            "observedGeneration": integer("The generation this status describes.", fmt="int64"),
        },
        description,
    )


# RayJob -------------------------------------------------------------------------------------------

DELETION_POLICIES: Final = ["DeleteCluster", "DeleteWorkers", "DeleteSelf", "DeleteNone"]


def deletion_strategy() -> Schema:
    legacy = obj(
        {"policy": string("What to delete.", enum=DELETION_POLICIES)},
        "Deprecated single-stage policy; use deletionRules.",
    )
    condition = obj(
        {
            "jobStatus": string("Ray job status that triggers the rule.", enum=["SUCCEEDED", "FAILED"]),
            "jobDeploymentStatus": string("Deployment status that triggers the rule.", enum=["Failed"]),
            "ttlSeconds": integer(
                "Seconds after the status is reached before the rule runs.", minimum=0, default=0
            ),
        },
        "When the rule triggers: exactly one of jobStatus and jobDeploymentStatus.",
        rules=[
            rule("!(has(self.jobStatus) && has(self.jobDeploymentStatus))", MSG_CONDITION_BOTH),
            rule("has(self.jobStatus) || has(self.jobDeploymentStatus)", MSG_CONDITION_NONE),
        ],
    )
    return obj(
        {
            "onSuccess": legacy,
            "onFailure": legacy,
            "deletionRules": array(
                obj(
                    {"policy": string("What to delete.", enum=DELETION_POLICIES), "condition": condition},
                    "One deletion action and its trigger.",
                    required=["policy", "condition"],
                ),
                "Deletion rules; when several are overdue the most far-reaching runs first.",
                list_type="atomic",
                min_items=1,
            ),
        },
        "Clean-up after the job finishes: both onSuccess and onFailure (deprecated), or deletionRules "
        "(feature gate RayJobDeletionPolicy).",
        rules=[
            rule(
                "!((has(self.onSuccess) || has(self.onFailure)) && has(self.deletionRules))",
                MSG_DELETION_MIXED,
            ),
            rule(
                "((has(self.onSuccess) && has(self.onFailure)) || has(self.deletionRules))",
                MSG_DELETION_INCOMPLETE,
            ),
        ],
    )


def ray_job_spec() -> Schema:
    return obj(
        {
            "activeDeadlineSeconds": integer(
                "Seconds after start before the job is stopped and marked Failed."
            ),
            "backoffLimit": integer(
                "Retries, each on a new RayCluster, before the job is Failed.", default=0
            ),
            "rayClusterSpec": ray_cluster_spec("The RayCluster created to run the job."),
            "submitterPodTemplate": ref(
                CORE + "PodTemplateSpec", "Pod template of the submitter (K8sJobMode)."
            ),
            "metadata": string_map("Metadata stored with the Ray job."),
            "clusterSelector": string_map("Run on an existing RayCluster: ray.io/cluster: <name>."),
            "submitterConfig": obj(
                {"backoffLimit": integer("backoffLimit of the submitter Job (default 2).")},
                "Settings of the submitter Job.",
            ),
            "managedBy": managed_by("RayJob"),
            "deletionStrategy": deletion_strategy(),
            "entrypoint": string("Command that runs the job."),
            "runtimeEnvYAML": string("Ray runtime environment, as a YAML document."),
            "jobId": string("Submission id; generated when unset."),
            "submissionMode": string(
                "K8sJobMode, HTTPMode, InteractiveMode or SidecarMode.", default="K8sJobMode"
            ),
            "entrypointResources": string("Custom resources reserved for the entrypoint, as JSON."),
            "entrypointNumCpus": number("CPUs reserved for the entrypoint."),
            "entrypointNumGpus": number("GPUs reserved for the entrypoint."),
            "ttlSecondsAfterFinished": integer(
                "Seconds after the job finishes before the RayCluster is deleted (with "
                "shutdownAfterJobFinishes).",
                default=0,
            ),
            "preRunningDeadlineSeconds": integer(
                "Seconds from initialisation to Running before the job is marked Failed.", minimum=1
            ),
            "shutdownAfterJobFinishes": boolean("Delete the RayCluster when the job finishes."),
            "suspend": boolean("Do not run the job (no RayCluster) while true."),
        },
    )


def ray_job_status() -> Schema:
    return obj(
        {
            "rayJobInfo": obj(
                {"startTime": time(), "endTime": time()},
                "Start and end of the Ray job as reported by the dashboard.",
            ),
            "jobId": string(),
            "rayClusterName": string(),
            "dashboardURL": string(),
            "jobStatus": string("Ray job status: PENDING, RUNNING, STOPPED, SUCCEEDED or FAILED."),
            "jobDeploymentStatus": string(
                "Initializing, Running, Complete, Failed, ValidationFailed, Suspending, Suspended, Retrying "
                "or Waiting."
            ),
            "reason": string("Why the job failed."),
            "message": string(),
            "startTime": time("When the job started initialising."),
            "endTime": time("When the job reached Complete or Failed."),
            "succeeded": integer("Successful attempts.", default=0),
            "failed": integer("Failed attempts.", default=0),
            "rayClusterStatus": ray_cluster_status("Status of the job's RayCluster."),
            "jobStatusCheckFailureStartTime": time("Since when polling the job's status has been failing."),
            "observedGeneration": integer("The generation this status describes.", fmt="int64"),
        },
    )


# RayService ---------------------------------------------------------------------------------------


def ray_service_spec() -> Schema:
    return obj(
        {
            "rayClusterDeletionDelaySeconds": integer(
                "Seconds before an old RayCluster is deleted (default 60).", minimum=0
            ),
            "serviceUnhealthySecondThreshold": integer("Deprecated; ignored."),
            "deploymentUnhealthySecondThreshold": integer("Deprecated; ignored."),
            "serveService": ref(CORE + "Service", "Custom Service in front of the Serve proxies."),
            "upgradeStrategy": obj(
                {
                    "type": string("NewCluster, NewClusterWithIncrementalUpgrade or None."),
                    "clusterUpgradeOptions": obj(
                        {
                            "maxSurgePercent": integer(
                                "Capacity the new cluster scales up by per step.", default=100
                            ),
                            "stepSizePercent": integer("Traffic moved to the new cluster per step."),
                            "intervalSeconds": integer("Seconds between steps."),
                            "gatewayClassName": string("GatewayClass of the Gateway that splits traffic."),
                        },
                        "Incremental upgrade settings (feature gate RayServiceIncrementalUpgrade).",
                        required=["gatewayClassName", "intervalSeconds", "stepSizePercent"],
                    ),
                },
                "How a changed cluster spec is rolled out.",
            ),
            "managedBy": managed_by("RayService"),
            "serveConfigV2": string("Ray Serve applications, as a YAML document."),
            "rayClusterConfig": ray_cluster_spec("The RayCluster that serves the applications."),
            "excludeHeadPodFromServeSvc": boolean("Never send Serve traffic to the head Pod."),
            "suspend": boolean("Delete everything the RayService owns while true."),
        },
        required=["rayClusterConfig"],
    )


def _serve_status() -> Schema:
    return obj(
        {
            "applicationStatuses": map_of(
                obj(
                    {
                        "serveDeploymentStatuses": map_of(
                            obj({"status": string(), "message": string()}), "Deployments by name."
                        ),
                        "status": string(),
                        "message": string(),
                    }
                ),
                "Serve applications by name.",
            ),
            "targetCapacity": integer("Serve target_capacity percentage of this cluster."),
            "trafficRoutedPercent": integer("Share of traffic routed to this cluster."),
            "lastTrafficMigratedTime": time("When trafficRoutedPercent last changed."),
            "rayClusterName": string(),
            "rayClusterStatus": ray_cluster_status(),
        }
    )


def ray_service_status() -> Schema:
    return obj(
        {
            "conditions": conditions("Ready, UpgradeInProgress, RollbackInProgress, Suspending, Suspended."),
            "lastUpdateTime": time("When the status was last written."),
            "serviceStatus": string("Deprecated, use conditions: Running when Ready."),
            "activeServiceStatus": _serve_status(),
            "pendingServiceStatus": _serve_status(),
            "numServeEndpoints": integer("Ray Pods currently behind the Serve Service."),
            "observedGeneration": integer("The generation this status describes.", fmt="int64"),
        },
    )


# Whole objects -----------------------------------------------------------------------------------


def root(kind: str, spec: Schema, status: Schema) -> Schema:
    """The openAPIV3Schema of one kind. The root metadata may only be `{type: object}`."""
    return obj(
        {
            "apiVersion": string("Versioned schema of this object (ray.io/v1)."),
            "kind": string(f"Kind of this object ({kind})."),
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        f"{kind} (ray.io).",
    )


def ray_cluster_schema() -> Schema:
    return root(
        c.KIND_RAYCLUSTER,
        ray_cluster_spec("Desired state of the Ray cluster."),
        ray_cluster_status("Observed state of the Ray cluster."),
    )


def ray_job_schema() -> Schema:
    return root(
        c.KIND_RAYJOB,
        _describe(ray_job_spec(), "Desired state of the Ray job."),
        _describe(ray_job_status(), "Observed state of the Ray job."),
    )


def ray_service_schema() -> Schema:
    return root(
        c.KIND_RAYSERVICE,
        _describe(ray_service_spec(), "Desired state of the Ray service."),
        _describe(ray_service_status(), "Observed state of the Ray service."),
    )


# RayWorkerGroup (rayop.io/v1alpha1) ----------------------------------------------------------------


def ray_worker_group_schema() -> Schema:
    """rayop's own kind: one worker group as a scale target (see rayop.api.workergroup, docs/scaling.md)."""
    immutable = [rule("self == oldSelf", "is immutable")]
    spec = obj(
        {
            "rayClusterName": string(
                "The RayCluster this worker group belongs to (for a RayCluster's own groups).",
                rules=immutable,
            ),
            "rayServiceName": string(
                "The RayService this worker group belongs to; it follows the service's active cluster "
                "across upgrades.",
                rules=immutable,
            ),
            "groupName": string("workerGroupSpecs[].groupName of the group.", rules=immutable),
            "replicas": integer(
                "Desired replicas of the group; `kubectl scale` and the HorizontalPodAutoscaler write it "
                "through the scale subresource. Clamped to the group's [minReplicas, maxReplicas].",
                minimum=0,
            ),
        },
        "Which worker group, and how many replicas of it.",
        required=["groupName", "replicas"],
        rules=[
            rule(
                "has(self.rayClusterName) != has(self.rayServiceName)",
                "exactly one of rayClusterName and rayServiceName must be set",
            )
        ],
    )
    status = obj(
        {
            "replicas": integer("Replicas of the group that exist now (Pods / numOfHosts)."),
            "readyReplicas": integer("Replicas whose Pods are all ready."),
            "selector": string("Label selector of exactly this group's worker Pods."),
            "rayClusterName": string("The RayCluster that runs the group now."),
            "syncedReplicas": integer(
                "The group's replicas in the RayCluster when the two last agreed; a later change there "
                "is copied into spec.replicas."
            ),
            "minReplicas": integer("The group's minReplicas."),
            "maxReplicas": integer("The group's maxReplicas."),
            "scaledBy": string(
                "Who sizes the group: RayAutoscaler (enableInTreeAutoscaling), ScaleTarget (this "
                "object's spec.replicas) or None (suspended).",
                enum=list(W.SCALED_BY_VALUES),
            ),
            "observedGeneration": integer("The generation whose spec.replicas is applied.", fmt="int64"),
            "conditions": conditions("Synced: whether the RayCluster runs what spec.replicas asks for."),
        },
        "Observed state of the worker group.",
    )
    return obj(
        {
            "apiVersion": string(f"Versioned schema of this object ({W.API_VERSION})."),
            "kind": string(f"Kind of this object ({W.KIND})."),
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        f"{W.KIND} ({W.GROUP}): one worker group of a RayCluster or RayService, sized through its scale "
        "subresource.",
    )


def ray_serve_deployment_schema() -> Schema:
    """rayop's own kind: one Serve deployment of a RayService as a scale target (see
    rayop.api.servedeployment, docs/scaling.md)."""
    immutable = [rule("self == oldSelf", "is immutable")]
    spec = obj(
        {
            "rayServiceName": string(
                "The RayService whose Serve config holds the deployment.", rules=immutable
            ),
            "applicationName": string(
                "The Serve application (serveConfigV2 applications[].name).", rules=immutable
            ),
            "deploymentName": string("The deployment in that application.", rules=immutable),
            "replicas": integer(
                "The deployment's num_replicas; `kubectl scale` and the HorizontalPodAutoscaler write it "
                "through the scale subresource. The RayService controller folds it into the Serve config it "
                "applies. A change of the deployment's num_replicas in serveConfigV2 is copied here.",
                minimum=1,
            ),
        },
        "Which Serve deployment, and how many replicas of it.",
        required=["rayServiceName", "applicationName", "deploymentName", "replicas"],
    )
    status = obj(
        {
            "replicas": integer("Replicas of the deployment that Ray runs or starts (not stopping)."),
            "readyReplicas": integer("Replicas in Ray Serve's RUNNING state."),
            "targetReplicas": integer("Ray Serve's target_num_replicas for the deployment."),
            "selector": string(
                "Label selector of the Pods that run the deployment's replicas: the active RayCluster's "
                "Pods of the worker groups (or head) Ray placed them on."
            ),
            "rayClusterName": string("The RayService's active RayCluster, whose Serve state this reports."),
            "configReplicas": integer(
                "num_replicas of the deployment in serveConfigV2 when this object last followed it; a later "
                "change there is copied into spec.replicas."
            ),
            "scaledBy": string(
                "Who sizes the deployment: ScaleTarget (this object's spec.replicas) or ServeAutoscaler "
                "(autoscaling_config or num_replicas: auto, in serveConfigV2 or in the deployment's code).",
                enum=list(SD.SCALED_BY_VALUES),
            ),
            "observedGeneration": integer("The generation whose spec.replicas is applied.", fmt="int64"),
            "conditions": conditions(
                "Synced: whether Ray Serve runs what spec.replicas asks for. DedicatedPods: whether the "
                "selected Pods run only this deployment's replicas."
            ),
        },
        "Observed state of the Serve deployment.",
    )
    return obj(
        {
            "apiVersion": string(f"Versioned schema of this object ({SD.API_VERSION})."),
            "kind": string(f"Kind of this object ({SD.KIND})."),
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        f"{SD.KIND} ({SD.GROUP}): one deployment of a RayService's Serve application, sized through its "
        "scale subresource.",
    )
