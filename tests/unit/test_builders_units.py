"""Table-driven tests of the builders' small rules: `ray start` rendering, quantities, desired replicas,
pod deletion, names, hashes, options (docs/compatibility.md)."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from rayop.builders import cluster as cl
from rayop.builders import pod as P
from rayop.builders import service, storage
from rayop.builders.options import BuildOptions
from rayop.builders.quantity import QuantityError, canonical_str, go_float, parse_quantity

Obj = dict[str, Any]

# --- ray start -------------------------------------------------------------------------------------------------

PARAMS = [
    ("empty", {}, ""),
    ("true-is-switch", {"block": "true"}, " --block "),
    ("TRUE-any-case", {"block": "TRUE"}, " --block "),
    ("false-dropped", {"disable-usage-stats": "false"}, ""),
    ("False-dropped", {"x": "False"}, ""),
    (
        "explicit-false-flags",
        {"include-dashboard": "false", "log-color": "false", "include-log-monitor": "false"},
        " --include-dashboard=false  --include-log-monitor=false  --log-color=false ",
    ),
    ("explicit-flag-true-keeps-value", {"log-color": "true"}, " --log-color=true "),
    (
        "sorted-bytewise",
        {"num-cpus": "1", "Num": "2", "address": "a:1"},
        " --Num=2  --address=a:1  --num-cpus=1 ",
    ),
    ("value-verbatim", {"resources": "'{\"A\":1}'"}, " --resources='{\"A\":1}' "),
    ("env-reference-kept", {"redis-password": "$REDIS_PASSWORD"}, " --redis-password=$REDIS_PASSWORD "),
]


@pytest.mark.parametrize(("cid", "params", "want"), PARAMS, ids=[c[0] for c in PARAMS])
def test_convert_param_map(cid: str, params: dict[str, str], want: str) -> None:
    assert P.convert_param_map(params) == want


START = [
    ("head-no-resources", "head", {}, None, "ray start --head "),
    ("cpu-limit-rounds-up", "worker", {}, {"limits": {"cpu": "1500m"}}, "ray start  --num-cpus=2 "),
    ("cpu-request-fallback", "worker", {}, {"requests": {"cpu": "3"}}, "ray start  --num-cpus=3 "),
    (
        "zero-limit-falls-back",
        "worker",
        {},
        {"limits": {"cpu": "0"}, "requests": {"cpu": "2"}},
        "ray start  --num-cpus=2 ",
    ),
    ("memory-limit-only", "worker", {}, {"requests": {"memory": "1Gi"}}, "ray start "),
    ("memory-limit-bytes", "worker", {}, {"limits": {"memory": "1Gi"}}, "ray start  --memory=1073741824 "),
    ("memory-decimal", "worker", {}, {"limits": {"memory": "1.5G"}}, "ray start  --memory=1500000000 "),
    (
        "params-win",
        "worker",
        {"num-cpus": "0", "memory": "5"},
        {"limits": {"cpu": "4", "memory": "1Gi"}},
        "ray start  --memory=5  --num-cpus=0 ",
    ),
    (
        "gpu-first-sorted-key",
        "worker",
        {},
        {"limits": {"nvidia.com/gpu": "2", "amd.com/gpu": "1"}},
        "ray start  --num-gpus=1 ",
    ),
    (
        "gpu-zero-skipped",
        "worker",
        {},
        {"limits": {"amd.com/gpu": "0", "nvidia.com/gpu": "2"}},
        "ray start  --num-gpus=2 ",
    ),
    ("mig-is-gpu", "worker", {}, {"limits": {"nvidia.com/mig-1g.5gb": "1"}}, "ray start  --num-gpus=1 "),
    (
        "tpu-resource",
        "worker",
        {},
        {"limits": {"google.com/tpu": "4"}},
        "ray start  --resources='{\"TPU\":4}' ",
    ),
    (
        "neuron-resource",
        "worker",
        {},
        {"limits": {"aws.amazon.com/neuroncore": "2"}},
        "ray start  --resources='{\"neuron_cores\":2}' ",
    ),
    (
        "first-accelerator-only",
        "worker",
        {},
        {"limits": {"google.com/tpu": "4", "aws.amazon.com/neuroncore": "2"}},
        "ray start  --resources='{\"neuron_cores\":2}' ",
    ),
    (
        "merge-existing-json",
        "worker",
        {"resources": "'{\"x\": 1.5}'"},
        {"limits": {"google.com/tpu": "4"}},
        'ray start  --resources=\'{"TPU":4,"x":1.5}\' ',
    ),
    (
        "existing-tpu-wins",
        "worker",
        {"resources": '{"TPU": 8}'},
        {"limits": {"google.com/tpu": "4"}},
        'ray start  --resources={"TPU": 8} ',
    ),
    (
        "unparsable-json-blocks-accelerators",
        "worker",
        {"resources": '"{\\"A\\": 1}"'},
        {"limits": {"nvidia.com/gpu": "1"}},
        'ray start  --resources="{\\"A\\": 1}" ',
    ),
]


@pytest.mark.parametrize(("cid", "kind", "params", "resources", "want"), START, ids=[c[0] for c in START])
def test_generate_ray_start_command(
    cid: str, kind: str, params: dict[str, str], resources: Any, want: str
) -> None:
    before = dict(params)
    assert P.generate_ray_start_command(kind, params, resources) == want
    assert params == before


def test_group_resources_override_params() -> None:
    params: dict[str, str] = {"num-cpus": "9", "resources": "'{\"old\":1}'"}
    P._update_params_from_group_resources(
        params, {"CPU": "2500m", "Memory": "1Gi", "amd.com/gpu": "1", "b": "1", "A": "0.25"}
    )
    assert params == {
        "num-cpus": "3",
        "memory": "1073741824",
        "num-gpus": "1",
        "resources": '\'{"A":0.25,"b":1}\'',
    }


def test_group_labels_sorted() -> None:
    params: dict[str, str] = {}
    P._update_params_from_group_labels(params, {"z": "1", "a": "2"})
    assert params == {"labels": "a=2,z=1"}


# --- quantities ------------------------------------------------------------------------------------------------

QUANTITIES = [
    ("500m", "500m", 1, Decimal("0.5")),
    ("1", "1", 1, Decimal(1)),
    ("2000m", "2", 2, Decimal(2)),
    ("1000", "1k", 1000, Decimal(1000)),
    ("1200", "1200", 1200, Decimal(1200)),
    ("0.5", "500m", 1, Decimal("0.5")),
    ("1Gi", "1Gi", 2**30, Decimal(2**30)),
    ("1.5Gi", "1536Mi", 3 * 2**29, Decimal(3 * 2**29)),
    ("1024Mi", "1Gi", 2**30, Decimal(2**30)),
    ("512", "512", 512, Decimal(512)),
    ("1000Ki", "1000Ki", 1024000, Decimal(1024000)),
    ("100M", "100M", 10**8, Decimal(10**8)),
    ("1e3", "1e3", 1000, Decimal(1000)),
    ("1E6", "1e6", 10**6, Decimal(10**6)),
    ("12e2", "1200", 1200, Decimal(1200)),
    ("100u", "100u", 1, Decimal("0.0001")),
    ("1n", "1n", 1, Decimal("1e-9")),
    ("0", "0", 0, Decimal(0)),
    ("+3", "3", 3, Decimal(3)),
    ("-1", "-1", -1, Decimal(-1)),
    (".5", "500m", 1, Decimal("0.5")),
]


@pytest.mark.parametrize(("text", "canon", "value", "exact"), QUANTITIES, ids=[q[0] for q in QUANTITIES])
def test_quantities(text: str, canon: str, value: int, exact: Decimal) -> None:
    q = parse_quantity(text)
    assert q.value == exact
    assert canonical_str(text) == canon
    assert q.int_value() == value


@pytest.mark.parametrize("bad", ["", "1.2.3", "1Gb", "abc", "1 Gi", "Gi", "1e", "1e400", "1e999999999Ki"])
def test_bad_quantities(bad: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(bad)


def test_numbers_and_sums() -> None:
    assert parse_quantity(3).value == 3
    assert parse_quantity(0.25).value == Decimal("0.25")
    assert str(parse_quantity("1Gi") + parse_quantity("512Mi")) == "1536Mi"
    assert str(parse_quantity("500m") * 3 + parse_quantity("1")) == "2500m"
    assert str(parse_quantity("1G") + parse_quantity("1Gi")) == "2073741824"
    assert str(parse_quantity("0.1") * 3) == "300m"  # exact: no float drift


def test_sub_nano_rounds_up() -> None:
    assert parse_quantity("0.0000000001").value == Decimal("1e-9")


@pytest.mark.parametrize(
    ("f", "want"), [(4.0, "4"), (0.5, "0.5"), (1e21, "1e+21"), (1e-7, "1e-07"), (123.25, "123.25")]
)
def test_go_float(f: float, want: str) -> None:
    assert go_float(f) == want


# --- replicas ----------------------------------------------------------------------------------------------------

REPLICAS = [
    ("within", {"replicas": 2, "minReplicas": 1, "maxReplicas": 3}, 2),
    ("below-min", {"replicas": 0, "minReplicas": 1, "maxReplicas": 3}, 1),
    ("above-max", {"replicas": 7, "minReplicas": 1, "maxReplicas": 3}, 3),
    ("nil-is-min", {"minReplicas": 2, "maxReplicas": 3}, 2),
    ("defaults", {}, 0),
    ("no-max-is-int32", {"replicas": 1000}, 1000),
    ("min-over-max-uses-max", {"replicas": 5, "minReplicas": 4, "maxReplicas": 2}, 2),
    ("hosts-multiply", {"replicas": 2, "minReplicas": 0, "maxReplicas": 3, "numOfHosts": 4}, 8),
    ("hosts-zero-is-one", {"replicas": 2, "maxReplicas": 3, "numOfHosts": 0}, 2),
    ("suspended", {"replicas": 2, "maxReplicas": 3, "suspend": True}, 0),
    ("suspend-false", {"replicas": 2, "maxReplicas": 3, "suspend": False}, 2),
]


@pytest.mark.parametrize(("cid", "group", "want"), REPLICAS, ids=[r[0] for r in REPLICAS])
def test_desired_worker_replicas(cid: str, group: Obj, want: int) -> None:
    assert cl.desired_worker_replicas(group) == want


# --- should_delete_pod ---------------------------------------------------------------------------------------------


def pod_with(phase: str, policy: str | None = None, ray_state: Obj | None = None, name: str = "ray") -> Obj:
    spec: Obj = {"containers": [{"name": "ray"}, {"name": "sidecar"}]}
    if policy:
        spec["restartPolicy"] = policy
    statuses = [{"name": "sidecar", "state": {"terminated": {"exitCode": 0}}}]
    if ray_state is not None:
        statuses.append({"name": name, "state": ray_state})
    return {
        "metadata": {"name": "p", "labels": {"ray.io/node-type": "worker"}},
        "spec": spec,
        "status": {"phase": phase, "containerStatuses": statuses},
    }


DELETE = [
    ("failed", pod_with("Failed"), "ray", True),
    ("succeeded", pod_with("Succeeded", "Always"), "ray", True),
    ("running-healthy", pod_with("Running", "Never", {"running": {}}), "ray", False),
    ("ray-terminated-never", pod_with("Running", "Never", {"terminated": {"exitCode": 1}}), "ray", True),
    ("ray-terminated-always", pod_with("Running", "Always", {"terminated": {"exitCode": 1}}), "ray", False),
    (
        "ray-terminated-onfailure",
        pod_with("Running", "OnFailure", {"terminated": {"exitCode": 1}}),
        "ray",
        False,
    ),
    (
        "ray-terminated-default-policy",
        pod_with("Running", None, {"terminated": {"exitCode": 1}}),
        "ray",
        False,
    ),
    ("sidecar-terminated-only", pod_with("Running", "Never", {"running": {}}), "ray", False),
    ("pending", pod_with("Pending", "Never"), "ray", False),
    ("name-from-spec", pod_with("Running", "Never", {"terminated": {"exitCode": 1}}), "", True),
    ("other-container-name", pod_with("Running", "Never", {"terminated": {}}, name="x"), "ray", False),
]


@pytest.mark.parametrize(("cid", "pod", "ray", "want"), DELETE, ids=[d[0] for d in DELETE])
def test_should_delete_pod(cid: str, pod: Obj, ray: str, want: bool) -> None:
    delete, reason = cl.should_delete_pod(pod, ray)
    assert delete is want
    assert reason


# --- names, hashes ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "kind", "generate", "want"),
    [
        ("rc", "head", True, "rc-head-"),
        ("RC", "head", False, "rc-head"),
        ("a" * 60, "worker", True, "a" * 50 + "-worker-"),
        ("rc-group", "worker", True, "rc-group-worker-"),
    ],
)
def test_pod_name(prefix: str, kind: str, generate: bool, want: str) -> None:
    assert cl.pod_name(prefix, kind, generate=generate) == want


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("ok", "ok"),
        ("1abc", "rabc"),
        ("-abc", "rabc"),
        ("x" * 10 + "y" * 50, "y" * 50),
        ("_a", "ra"),
        ("$a", "$a"),
    ],
)
def test_check_name(name: str, want: str) -> None:
    assert cl.check_name(name) == want


def test_check_label() -> None:
    assert cl.check_label("a" * 70) == "a" * 63
    assert cl.check_label(".x") == "rx"


SPEC: Obj = {
    "rayVersion": "2.60.0",
    "headGroupSpec": {
        "template": {"spec": {"containers": [{"name": "h", "image": "ray:1"}], "tolerations": [{"key": "a"}]}}
    },
    "workerGroupSpecs": [
        {
            "groupName": "g",
            "replicas": 1,
            "minReplicas": 0,
            "maxReplicas": 5,
            "scaleStrategy": {"workersToDelete": ["p1"]},
            "template": {
                "spec": {"containers": [{"name": "w", "image": "ray:1"}], "schedulingGates": [{"name": "q"}]}
            },
        }
    ],
}


def _spec_with(path: list[Any], value: Any) -> Obj:
    s = copy.deepcopy(SPEC)
    cur: Any = s
    for key in path[:-1]:
        cur = cur[key]
    cur[path[-1]] = value
    return s


@pytest.mark.parametrize(
    "path, value",
    [
        (["workerGroupSpecs", 0, "replicas"], 4),
        (["workerGroupSpecs", 0, "minReplicas"], 1),
        (["workerGroupSpecs", 0, "maxReplicas"], 9),
        (["workerGroupSpecs", 0, "scaleStrategy", "workersToDelete"], ["p2", "p3"]),
        (["headGroupSpec", "template", "spec", "tolerations"], []),
        (["workerGroupSpecs", 0, "template", "spec", "schedulingGates"], []),
        (["upgradeStrategy"], {"type": "Recreate"}),
    ],
)
def test_hash_ignores_scaling_fields(path: list[Any], value: Any) -> None:
    h = cl.cluster_hash_without_replicas(SPEC)
    assert len(h) == 32 and h.isalnum() and h == h.upper()
    assert cl.cluster_hash_without_replicas(_spec_with(path, value)) == h
    assert cl.upgrade_recreate_hash(_spec_with(path, value)) == h


@pytest.mark.parametrize(
    "path, value",
    [
        (["workerGroupSpecs", 0, "template", "spec", "containers", 0, "image"], "ray:2"),
        (["headGroupSpec", "template", "spec", "containers", 0, "image"], "ray:2"),
        (["rayVersion"], "2.61.0"),
        (["workerGroupSpecs", 0, "groupName"], "h"),
    ],
)
def test_hash_changes_with_pod_shape(path: list[Any], value: Any) -> None:
    assert cl.cluster_hash_without_replicas(_spec_with(path, value)) != cl.cluster_hash_without_replicas(SPEC)


def test_hash_independent_of_key_order() -> None:
    reordered = dict(reversed(list(SPEC.items())))
    assert cl.cluster_hash_without_replicas(reordered) == cl.cluster_hash_without_replicas(SPEC)


# --- cluster switches, options ------------------------------------------------------------------------------------


def test_switches() -> None:
    rc: Obj = {
        "metadata": {"name": "rc", "namespace": "ns", "annotations": {"ray.io/ft-enabled": "TRUE"}},
        "spec": {},
    }
    assert cl.gcs_ft_enabled(rc) and cl.gcs_ft_backend(rc) == "redis"
    rc["metadata"]["annotations"] = {}
    assert not cl.gcs_ft_enabled(rc) and cl.gcs_ft_backend(rc) is None
    rc["spec"] = {
        "gcsFaultToleranceOptions": {"backend": "rocksdb"},
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"version": "v2"},
        "authOptions": {"mode": "token"},
    }
    assert cl.gcs_ft_backend(rc) == "rocksdb"
    assert cl.is_autoscaling_enabled(rc) and cl.autoscaler_version(rc) == "v2"
    assert cl.is_auth_enabled(rc) and not cl.is_k8s_auth_enabled(rc)
    assert cl.head_service_name(rc) == "rc-head-svc"
    assert cl.fqdn_ray_ip(rc, "example") == "rc-head-svc.ns.svc.example"
    assert cl.head_port({"port": 7000}) == "7000" and cl.head_port(None) == "6379"


def test_options_from_env() -> None:
    opts = BuildOptions.from_env(
        {
            "CLUSTER_DOMAIN": "corp",
            "ENABLE_INIT_CONTAINER_INJECTION": "False",
            "ENABLE_PROBES_INJECTION": "no",  # anything but "false" keeps probes on
            "ENABLE_LOGIN_SHELL": "TRUE",
            "ENABLE_DETERMINISTIC_HEAD_POD_NAME": "true",
            "ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE": "1",  # only "true" counts
        },
        feature_gates={"RayMultiHostIndexing": False},
        default_pod_labels={"a": "b"},
    )
    assert opts.cluster_domain == "corp"
    assert not opts.enable_init_container_injection and opts.enable_probes_injection
    assert opts.enable_login_shell and opts.deterministic_head_pod_name and not opts.head_cluster_ip_service
    assert not opts.gate("RayMultiHostIndexing") and opts.gate("RayClusterStatusConditions")
    assert opts.default_pod_labels == {"a": "b"}
    assert BuildOptions.from_env({}) == BuildOptions()


def _rc(**spec: Any) -> Obj:
    base: Obj = {
        "headGroupSpec": {"template": {"spec": {"containers": [{"name": "h", "image": "ray"}]}}},
        "workerGroupSpecs": [
            {
                "groupName": "g",
                "numOfHosts": 2,
                "template": {"spec": {"containers": [{"name": "w", "image": "ray"}]}},
            }
        ],
    }
    base.update(spec)
    return {"metadata": {"name": "rc", "namespace": "ns", "uid": "u"}, "spec": base}


def test_multi_host_labels_follow_gate() -> None:
    rc = _rc()
    group = rc["spec"]["workerGroupSpecs"][0]
    on = P.build_worker_pod(rc, group, BuildOptions(), replica_index=3, replica_name="g-abcde", host_index=1)
    labels = on["metadata"]["labels"]
    assert (
        labels["ray.io/worker-group-replica-index"],
        labels["ray.io/worker-group-replica-name"],
        labels["ray.io/replica-host-index"],
    ) == ("3", "g-abcde", "1")
    off = P.build_worker_pod(
        rc, group, BuildOptions().with_gates({"RayMultiHostIndexing": False}), replica_index=3
    )
    assert not any(k.startswith("ray.io/worker-group-replica") for k in off["metadata"]["labels"])


def test_empty_template_is_a_build_error() -> None:
    rc = _rc(headGroupSpec={"template": {"spec": {"containers": []}}})
    with pytest.raises(P.BuildError):
        P.build_head_pod(rc, BuildOptions())
    rc = _rc(
        headGroupSpec={
            "template": {"spec": {"containers": [{"name": "h", "resources": {"limits": {"cpu": "x"}}}]}}
        }
    )
    with pytest.raises(P.BuildError):
        P.build_head_pod(rc, BuildOptions())


def test_serve_service_needs_serve_port() -> None:
    rc = _rc(
        headGroupSpec={
            "template": {
                "spec": {
                    "containers": [{"name": "h", "ports": [{"name": "dashboard", "containerPort": 8265}]}]
                }
            }
        }
    )
    assert service.build_serve_service(rc) is None
    assert service.build_serve_service(_rc()) is not None  # default ports include serve


def test_gcs_pvc_variants() -> None:
    assert storage.build_gcs_pvc(_rc()) is None
    assert (
        storage.build_gcs_pvc(
            _rc(gcsFaultToleranceOptions={"backend": "rocksdb", "storage": {"claimName": "mine"}})
        )
        is None
    )
    retained = storage.build_gcs_pvc(
        _rc(gcsFaultToleranceOptions={"backend": "rocksdb", "storage": {"deletionPolicy": "Retain"}})
    )
    assert retained is not None and "ownerReferences" not in retained["metadata"]
    assert retained["spec"]["resources"]["requests"]["storage"] == "1Gi"
    head = P.build_head_pod(
        _rc(gcsFaultToleranceOptions={"backend": "rocksdb", "storage": {"claimName": "mine"}}), BuildOptions()
    )
    assert head["spec"]["volumes"][0] == {
        "name": "gcs-storage",
        "persistentVolumeClaim": {"claimName": "mine"},
    }
