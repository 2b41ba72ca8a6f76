"""Update rules, warnings, status invariants, error rendering and feature-gate parsing."""

from __future__ import annotations

import pytest

from rayop.api.features import DEFAULT_GATES, parse_feature_gates, resolve_gates
from rayop.validation import (
    FieldError,
    aggregate_message,
    validate,
    validate_raycluster_status,
    validate_rayjob_status,
    warnings_for,
)
from rayop.validation.errors import format_value, not_supported, too_long
from tests.unit.validation_cases import SERVE_CONFIG, build

W0 = "spec.workerGroupSpecs[0]"


# ---- update rules (CEL transition rules in KubeRay's CRDs, checked again here)


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob", "RayService"])
def test_managed_by_is_immutable(kind: str) -> None:
    old = build(kind, {"spec.managedBy": "ray.io/kuberay-operator"})
    new = build(kind, {"spec.managedBy": "kueue.x-k8s.io/multikueue"})
    assert [str(e) for e in validate(kind, new, old=old)] == [
        'spec.managedBy: Invalid value: "kueue.x-k8s.io/multikueue": field is immutable'
    ]
    assert validate(kind, old, old=old) == []


def test_managed_by_cannot_be_added_later() -> None:
    old = build("RayCluster", {})
    new = build("RayCluster", {"spec.managedBy": "kueue.x-k8s.io/multikueue"})
    assert [str(e) for e in validate("RayCluster", new, old=old)] == [
        'spec.managedBy: Invalid value: "kueue.x-k8s.io/multikueue": field is immutable'
    ]


@pytest.mark.parametrize(
    ("kind", "base"),
    [("RayCluster", "spec"), ("RayJob", "spec.rayClusterSpec"), ("RayService", "spec.rayClusterConfig")],
)
def test_gcs_backend_is_immutable(kind: str, base: str) -> None:
    gates = {"GCSFaultToleranceEmbeddedStorage": True}
    old = build(kind, {f"{base}.gcsFaultToleranceOptions": {"redisAddress": "r:6379"}})
    new = build(kind, {f"{base}.gcsFaultToleranceOptions": {"backend": "rocksdb"}})
    assert [str(e) for e in validate(kind, new, gates=gates, old=old)] == [
        f"{base}.gcsFaultToleranceOptions.backend: Invalid value: \"rocksdb\": field is immutable (was 'redis')"
    ]
    same = build(kind, {f"{base}.gcsFaultToleranceOptions": {"backend": "redis", "redisAddress": "r:1"}})
    assert validate(kind, same, gates=gates, old=old) == []


def test_update_of_replicas_is_fine() -> None:
    old = build("RayCluster", {})
    new = build("RayCluster", {f"{W0}.replicas": 1, f"{W0}.maxReplicas": 4})
    assert validate("RayCluster", new, old=old) == []


# ---- status invariants (used by the controllers)


def test_raycluster_status_suspend_conditions() -> None:
    both = {
        "status": {
            "conditions": [
                {"type": "RayClusterSuspending", "status": "True"},
                {"type": "RayClusterSuspended", "status": "True"},
            ]
        }
    }
    one = {"status": {"conditions": [{"type": "RayClusterSuspended", "status": "True"}]}}
    assert [str(e) for e in validate_raycluster_status(both)] == [
        "status.conditions: Invalid value: null: RayClusterSuspending and RayClusterSuspended must not both be true"
    ]
    assert validate_raycluster_status(one) == []


def test_rayjob_status_waiting_only_interactive() -> None:
    bad = {"spec": {}, "status": {"jobDeploymentStatus": "Waiting"}}
    ok = {"spec": {"submissionMode": "InteractiveMode"}, "status": {"jobDeploymentStatus": "Waiting"}}
    assert [str(e) for e in validate_rayjob_status(bad)] == [
        'status.jobDeploymentStatus: Invalid value: "Waiting": is only valid in InteractiveMode'
    ]
    assert validate_rayjob_status(ok) == []


# ---- warnings


def test_no_warnings_for_plain_manifests() -> None:
    for kind in ("RayCluster", "RayJob", "RayService"):
        assert warnings_for(kind, build(kind, {})) == []


def test_min_max_without_autoscaling_warns() -> None:
    obj = build("RayCluster", {f"{W0}.minReplicas": 1, f"{W0}.maxReplicas": 5})
    assert warnings_for("RayCluster", obj) == [
        f"{W0}: minReplicas (1) and maxReplicas (5) only bound replicas while enableInTreeAutoscaling is not "
        "true; nothing scales this group between them. Set spec.enableInTreeAutoscaling: true to autoscale"
    ]
    auto = build(
        "RayCluster", {f"{W0}.minReplicas": 1, f"{W0}.maxReplicas": 5, "spec.enableInTreeAutoscaling": True}
    )
    assert warnings_for("RayCluster", auto) == []


def test_replicas_outside_bounds_warns() -> None:
    obj = build("RayCluster", {f"{W0}.replicas": 7, f"{W0}.minReplicas": 2, f"{W0}.maxReplicas": 2})
    assert warnings_for("RayCluster", obj) == [
        f"{W0}.replicas: 7 is outside [minReplicas, maxReplicas] = [2, 2]; 2 will run"
    ]


def test_ray_start_command_warns_without_annotation() -> None:
    changes = {
        f"{W0}.template.spec.containers[0].command": ["/bin/bash", "-c"],
        f"{W0}.template.spec.containers[0].args": ["ray start --address=head:6379 --block"],
    }
    obj = build("RayCluster", changes)
    (w,) = warnings_for("RayCluster", obj)
    assert w == (
        f"{W0}.template.spec.containers[0].command: runs 'ray start' itself, so rayStartParams are ignored; "
        'annotate ray.io/overwrite-container-cmd: "true" if that is intended'
    )
    assert 'ray.io/overwrite-container-cmd: "true"' in w
    annotated = build(
        "RayCluster", {**changes, "metadata.annotations.'ray.io/overwrite-container-cmd'": "true"}
    )
    assert warnings_for("RayCluster", annotated) == []


def test_v1alpha1_warns() -> None:
    obj = build("RayJob", {"apiVersion": "ray.io/v1alpha1"})
    assert warnings_for("RayJob", obj) == [
        "ray.io/v1alpha1 RayJob is deprecated and frozen at its December 2023 feature set; use ray.io/v1"
    ]


def test_serve_config_camel_case_and_missing_applications() -> None:
    camel = "applications:\n  - name: app\n    importPath: m:app\n    routePrefix: /\n"
    obj = build("RayService", {"spec.serveConfigV2": camel})
    assert warnings_for("RayService", obj) == [
        "spec.serveConfigV2.applications[0]: key 'importPath' is camelCase; Ray Serve expects 'import_path' and ignores 'importPath'",
        "spec.serveConfigV2.applications[0]: key 'routePrefix' is camelCase; Ray Serve expects 'route_prefix' and ignores 'routePrefix'",
        "spec.serveConfigV2.applications[0]: has no import_path; Ray Serve rejects the config",
    ]
    single = build("RayService", {"spec.serveConfigV2": "import_path: m:app\ndeployments: []\n"})
    assert warnings_for("RayService", single) == [
        "spec.serveConfigV2: looks like the single-application format; Ray Serve expects a top-level "
        "'applications' list with one entry per application",
        "spec.serveConfigV2: unknown key 'import_path' is ignored by Ray Serve",
        "spec.serveConfigV2: unknown key 'deployments' is ignored by Ray Serve",
    ]


def test_serve_config_duplicates_and_deployments() -> None:
    cfg = (
        "applications:\n"
        "  - {name: a, import_path: m:a, route_prefix: /x}\n"
        "  - {name: a, import_path: m:b, route_prefix: /x, deployments: [{numReplicas: 2}]}\n"
    )
    got = warnings_for("RayService", build("RayService", {"spec.serveConfigV2": cfg}))
    assert got == [
        "spec.serveConfigV2.applications[1].name: 'a' is also used by applications[0]; Ray Serve rejects duplicate names",
        "spec.serveConfigV2.applications[1].route_prefix: '/x' is also used by applications[0]; Ray Serve rejects duplicates",
        "spec.serveConfigV2.applications[1].deployments[0]: key 'numReplicas' is camelCase; Ray Serve expects 'num_replicas' and ignores 'numReplicas'",
        "spec.serveConfigV2.applications[1].deployments[0]: has no name; Ray Serve rejects the config",
    ]


def test_empty_serve_config_warns() -> None:
    obj = build("RayService", {"spec.serveConfigV2": ""})
    assert warnings_for("RayService", obj) == [
        "spec.serveConfigV2: is empty; no Serve application will be deployed and the RayService will not become Ready"
    ]


def test_runtime_env_shape() -> None:
    renv = "workingDir: /src\nenv_vars:\n  N: 1\npip: [requests]\nfoo: bar\n"
    obj = build("RayJob", {"spec.runtimeEnvYAML": renv})
    assert validate("RayJob", obj) == []
    assert warnings_for("RayJob", obj) == [
        "spec.runtimeEnvYAML: key 'workingDir' is camelCase; the Ray runtime environment expects 'working_dir' and ignores 'workingDir'",
        "spec.runtimeEnvYAML: unknown key 'foo' is ignored by the Ray runtime environment",
        "spec.runtimeEnvYAML.env_vars[N]: value 1 is not a string; Ray requires string values (quote it)",
    ]


def test_rayjob_ignored_cluster_edits() -> None:
    old = build("RayJob", {})
    new = build(
        "RayJob",
        {"spec.rayClusterSpec.workerGroupSpecs[0].replicas": 1, "spec.rayClusterSpec.rayVersion": "2.59.0"},
    )
    assert (
        "spec.rayClusterSpec: changes after creation are ignored while the RayJob's RayCluster exists"
        in warnings_for("RayJob", new, old)
    )


def test_raycluster_template_change_warns_without_recreate() -> None:
    old = build("RayCluster", {})
    new = build("RayCluster", {f"{W0}.template.spec.containers[0].image": "rayproject/ray:2.61.0"})
    assert warnings_for("RayCluster", new, old) == [
        f"{W0}.template: pod template changes are not applied to running pods unless spec.upgradeStrategy.type "
        "is Recreate; delete the pods or the cluster to pick them up"
    ]
    recreate = build(
        "RayCluster",
        {
            f"{W0}.template.spec.containers[0].image": "rayproject/ray:2.61.0",
            "spec.upgradeStrategy.type": "Recreate",
        },
    )
    assert warnings_for("RayCluster", recreate, old) == []


def test_image_version_mismatch_and_deprecated_fields() -> None:
    obj = build(
        "RayService",
        {
            "spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].image": "rayproject/ray:2.41.0-py311",
            "spec.serviceUnhealthySecondThreshold": 60,
        },
    )
    assert warnings_for("RayService", obj) == [
        "spec.rayClusterConfig.rayVersion: 2.60.0 differs from the head image tag 2.41.0 (rayproject/ray:2.41.0-py311); the operator picks probes and features by rayVersion",
        "spec.serviceUnhealthySecondThreshold: is deprecated and ignored (health-based cluster recreation was removed)",
    ]


def test_warnings_never_raise() -> None:
    for bad in (None, 3, "x", [], {"spec": 5}, {"spec": {"serveConfigV2": 5, "rayClusterConfig": []}}):
        for kind in ("RayCluster", "RayJob", "RayService"):
            assert isinstance(warnings_for(kind, bad), list)


# ---- rendering


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (5, "5"),
        (1.5, "1.5"),
        (2.0, "2"),
        ('a"b', '"a\\"b"'),
        ({"b": 1, "a": [1]}, '{"a":[1],"b":1}'),
    ],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


def test_error_kinds_render_like_kubernetes() -> None:
    assert str(FieldError("a.b", 3, "must be small")) == "a.b: Invalid value: 3: must be small"
    assert str(FieldError("a", None, "", "Required")) == "a: Required value"
    assert str(FieldError("a", "x", "no", "Forbidden")) == "a: Forbidden: no"
    assert str(FieldError("a", "x", "", "Duplicate")) == 'a: Duplicate value: "x"'
    assert str(not_supported("a", "x", ("y", "z"))) == 'a: Unsupported value: "x": supported values: "y", "z"'
    assert str(too_long("a", "xxx", 2)) == "a: Too long: may not be more than 2 characters"
    long = FieldError("a", "x" * 500, "m")
    assert len(str(long)) < 260


def test_aggregate_message() -> None:
    e1, e2 = FieldError("a", 1, "x"), FieldError("b", 2, "y")
    assert aggregate_message([e1]) == "a: Invalid value: 1: x"
    assert aggregate_message([e1, e2, e1]) == "[a: Invalid value: 1: x, b: Invalid value: 2: y]"


def test_all_errors_at_once() -> None:
    obj = build(
        "RayCluster",
        {
            "metadata.name": "Bad",
            f"{W0}.minReplicas": 5,
            "spec.workerGroupSpecs[1]": {
                "groupName": "workers",
                "minReplicas": 0,
                "maxReplicas": 0,
                "template": {"spec": {"containers": [{"name": "w"}]}},
            },
        },
    )
    paths = [e.path for e in validate("RayCluster", obj)]
    assert paths == ["metadata.name", f"{W0}.minReplicas", "spec.workerGroupSpecs[1].groupName"]


# ---- gates


def test_default_gates_match_kuberay() -> None:
    on = {k for k, v in DEFAULT_GATES.items() if v}
    assert on == {
        "RayClusterStatusConditions",
        "RayJobDeletionPolicy",
        "RayMultiHostIndexing",
        "RayServiceIncrementalUpgrade",
    }
    assert resolve_gates({"RayCronJob": True})["RayCronJob"] is True


def test_parse_feature_gates() -> None:
    assert parse_feature_gates("RayCronJob=true, RayJobDeletionPolicy=false")["RayJobDeletionPolicy"] is False
    with pytest.raises(ValueError, match="unrecognized feature gate: Nope"):
        parse_feature_gates("Nope=true")
    with pytest.raises(ValueError, match="must be true or false"):
        parse_feature_gates("RayCronJob=maybe")


def test_serve_config_constant_is_valid() -> None:
    assert "import_path" in SERVE_CONFIG


# ---- ratcheting: updates report only the problems they introduce


def test_update_of_an_already_invalid_object_is_allowed() -> None:
    # Created while the webhook was off (or before a rule existed): min > max.
    old = build("RayCluster", {f"{W0}.minReplicas": 5, f"{W0}.maxReplicas": 3})
    assert validate("RayCluster", old)  # invalid on its own
    # The autoscaler patches replicas, a controller adds a finalizer: neither may be blocked.
    new = build(
        "RayCluster",
        {f"{W0}.minReplicas": 5, f"{W0}.maxReplicas": 3, f"{W0}.replicas": 4, "metadata.finalizers": ["x"]},
    )
    assert validate("RayCluster", new, old=old) == []


def test_update_that_adds_a_problem_is_rejected() -> None:
    old = build("RayCluster", {f"{W0}.minReplicas": 5, f"{W0}.maxReplicas": 3})
    new = build(
        "RayCluster",
        {f"{W0}.minReplicas": 5, f"{W0}.maxReplicas": 3, "spec.headGroupSpec.rayStartParams.labels": "a=b"},
    )
    assert [str(e) for e in validate("RayCluster", new, old=old)] == [
        "spec.headGroupSpec.rayStartParams[labels]: Forbidden: use headGroupSpec.labels instead"
    ]


def test_objects_being_deleted_are_always_admitted() -> None:
    old = build("RayJob", {"spec.suspend": True})
    new = build(
        "RayJob",
        {
            "spec.suspend": True,
            "metadata.deletionTimestamp": "2026-01-01T00:00:00Z",
            "metadata.finalizers": [],
        },
    )
    assert validate("RayJob", new, old=old) == []
    assert validate("RayJob", new) != []  # a create (or a controller's check) still sees the problem
