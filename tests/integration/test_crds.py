"""The generated ray.io CRDs on a real kube-apiserver (the session `plane`, which installed config/crd/).

What KubeRay users rely on: every field of KubeRay v1.7.0 is accepted in ray.io/v1 and ray.io/v1alpha1,
pod templates are validated and pruned like Pods, the schema-level rules (enums, minimums, CEL) refuse bad
objects with the field's path, `kubectl get` shows KubeRay's columns and `kubectl explain` works. The last
test fails when config/crd/ is stale with respect to the plane's own OpenAPI documents.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from rayop.api import constants as C
from rayop.api import crdgen
from rayop.api import schema as S
from rayop.api.kinds import KINDS, by_kind
from rayop.local.openapi import fetch_documents
from rayop.local.plane import ControlPlane, PlaneError
from rayop.runtime.client import CRDS, ApiClient, ApiError

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
CRD_DIR = REPO / "config" / "crd"
RAY_KINDS = [k for k in KINDS if k.group == C.GROUP]
PLURALS = {k.kind: k.plural for k in RAY_KINDS}
V1 = {k.kind: k.resource for k in RAY_KINDS}
ALL_FIELDS = {
    C.KIND_RAYCLUSTER: DATA / "raycluster-all-fields.yaml",
    C.KIND_RAYJOB: DATA / "rayjob-all-fields.yaml",
    C.KIND_RAYSERVICE: DATA / "rayservice-all-fields.yaml",
}


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def minimal_cluster(name: str) -> dict[str, Any]:
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND_RAYCLUSTER,
        "metadata": {"name": name},
        "spec": {
            "headGroupSpec": {
                "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.60.0"}]}}
            },
            "workerGroupSpecs": [
                {
                    "groupName": "workers",
                    "template": {
                        "spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.60.0"}]}
                    },
                }
            ],
        },
    }


def minimal_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND_RAYJOB,
        "metadata": {"name": name},
        "spec": {"entrypoint": "python -c 'print(1)'", "rayClusterSpec": minimal_cluster(name)["spec"]},
    }


def minimal_service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND_RAYSERVICE,
        "metadata": {"name": name},
        "spec": {"serveConfigV2": "applications: []\n", "rayClusterConfig": minimal_cluster(name)["spec"]},
    }


def assert_contained(expected: Any, actual: Any, path: str = "") -> None:
    """Every value of `expected` is in `actual` (which may hold more: defaults the API server added)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r}"
        for k, v in expected.items():
            assert k in actual, f"{path}.{k} was pruned"
            assert_contained(v, actual[k], f"{path}.{k}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_contained(e, a, f"{path}[{i}]")
    else:
        assert expected == actual, f"{path}: {expected!r} != {actual!r}"


async def rejected(call: Awaitable[Any]) -> str:
    with pytest.raises(ApiError) as err:
        await call
    assert err.value.status == 422, err.value
    return err.value.message


async def eventually(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, PlaneError):
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)


# Installation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(PLURALS))
async def test_crd_is_established_with_kuberays_names(kube: ApiClient, kind: str) -> None:
    crd = await kube.get(CRDS, f"{PLURALS[kind]}.{C.GROUP}")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert crd["status"]["storedVersions"] == ["v1"]
    assert crd["status"]["acceptedNames"]["categories"] == ["all"]
    assert [(v["name"], v["served"], v["storage"]) for v in crd["spec"]["versions"]] == [
        ("v1", True, True),
        ("v1alpha1", True, False),
    ]


async def test_rayop_own_kind_is_established_with_its_scale_subresource(kube: ApiClient) -> None:
    crd = await kube.get(CRDS, "rayworkergroups.rayop.io")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    assert crd["status"]["storedVersions"] == ["v1alpha1"]
    assert crd["status"]["acceptedNames"]["shortNames"] == ["rwg"]
    (version,) = crd["spec"]["versions"]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


# Every field ---------------------------------------------------------------------------------------


def test_the_every_field_manifests_cover_every_spec_field() -> None:
    for kind, path in ALL_FIELDS.items():
        declared = set(by_kind(kind).schema()["properties"]["spec"]["properties"])
        used = {field for d in docs(path) for field in d["spec"]}
        assert used == declared, f"{path.name} misses {sorted(declared - used)}"


@pytest.mark.parametrize("version", [C.VERSION, C.ALPHA_VERSION])
@pytest.mark.parametrize("kind", sorted(ALL_FIELDS))
async def test_every_field_manifest_applies_and_nothing_is_pruned(
    plane: ControlPlane, kube: ApiClient, namespace: str, kind: str, version: str
) -> None:
    objects = docs(ALL_FIELDS[kind])
    for obj in objects:
        obj["apiVersion"] = f"{C.GROUP}/{version}"
    # Server-side apply validates strictly: an unknown field in the test data fails here, not silently.
    plane.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))
    for obj in objects:
        stored = await kube.get(V1[kind], obj["metadata"]["name"], namespace)
        assert stored["apiVersion"] == C.API_VERSION
        assert_contained(obj["spec"], stored["spec"], "spec")


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO / "examples").glob("*.yaml")))
async def test_examples_apply_unchanged(
    plane: ControlPlane, kube: ApiClient, namespace: str, example: str
) -> None:
    objects = docs(REPO / "examples" / example)
    plane.kubectl("apply", "--server-side", "-n", namespace, "-f", str(REPO / "examples" / example))
    ray_objects = [o for o in objects if o["apiVersion"] == C.API_VERSION]
    assert ray_objects
    for obj in ray_objects:
        stored = await kube.get(V1[obj["kind"]], obj["metadata"]["name"], namespace)
        assert_contained(obj["spec"], stored["spec"], "spec")


async def test_crd_defaults_are_applied(kube: ApiClient, namespace: str) -> None:
    cluster = await kube.create(V1[C.KIND_RAYCLUSTER], minimal_cluster("defaults"), namespace)
    group = cluster["spec"]["workerGroupSpecs"][0]
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (0, 0, 2147483647)
    assert (group["numOfHosts"], group["priority"]) == (1, 0)
    job = await kube.create(V1[C.KIND_RAYJOB], minimal_job("defaults"), namespace)
    assert job["spec"]["submissionMode"] == "K8sJobMode"
    assert (job["spec"]["backoffLimit"], job["spec"]["ttlSecondsAfterFinished"]) == (0, 0)
    # A default is applied where its object is present, not invented for absent parents.
    assert "networkPolicy" not in job["spec"]["rayClusterSpec"]


# Pod templates behave like Pods ---------------------------------------------------------------------


async def test_unknown_fields_in_a_pod_template_are_pruned(kube: ApiClient, namespace: str) -> None:
    obj = minimal_cluster("pruned")
    head = obj["spec"]["headGroupSpec"]["template"]
    head["metadata"] = {"labels": {"keep": "me"}, "uid": "not-allowed-here"}
    container = head["spec"]["containers"][0]
    container["bogusField"] = "x"
    container["ports"] = [{"containerPort": 8265, "name": "dashboard", "madeUp": 1}]
    obj["spec"]["workerGroupSpecs"][0]["template"]["spec"]["notAPodField"] = True
    # No fieldValidation parameter: the API server warns and prunes instead of refusing.
    created = await kube.create(V1[C.KIND_RAYCLUSTER], obj, namespace)
    stored = await kube.get(V1[C.KIND_RAYCLUSTER], created["metadata"]["name"], namespace)
    template = stored["spec"]["headGroupSpec"]["template"]
    assert template["metadata"] == {"labels": {"keep": "me"}}
    assert "bogusField" not in template["spec"]["containers"][0]
    assert template["spec"]["containers"][0]["ports"] == [
        {"containerPort": 8265, "name": "dashboard", "protocol": "TCP"}
    ]
    assert "notAPodField" not in stored["spec"]["workerGroupSpecs"][0]["template"]["spec"]


async def test_pod_template_types_are_validated(kube: ApiClient, namespace: str) -> None:
    obj = minimal_cluster("badport")
    obj["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": "abc"}]
    obj["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"].append({"image": "no-name"})
    message = await rejected(kube.create(V1[C.KIND_RAYCLUSTER], obj, namespace))
    assert "spec.headGroupSpec.template.spec.containers[0].ports[0].containerPort" in message
    assert "spec.workerGroupSpecs[0].template.spec.containers[1].name: Required value" in message


# Schema-level rules ----------------------------------------------------------------------------------


async def test_invalid_enum_value_is_rejected(kube: ApiClient, namespace: str) -> None:
    obj = minimal_cluster("badenum")
    obj["spec"]["autoscalerOptions"] = {"upscalingMode": "Sometimes"}
    message = await rejected(kube.create(V1[C.KIND_RAYCLUSTER], obj, namespace))
    assert 'spec.autoscalerOptions.upscalingMode: Unsupported value: "Sometimes"' in message


async def test_negative_min_replicas_is_rejected(kube: ApiClient, namespace: str) -> None:
    obj = minimal_cluster("negative")
    obj["spec"]["workerGroupSpecs"][0]["minReplicas"] = -1
    message = await rejected(kube.create(V1[C.KIND_RAYCLUSTER], obj, namespace))
    assert "spec.workerGroupSpecs[0].minReplicas" in message
    assert "greater than or equal to 0" in message


@pytest.mark.parametrize(
    ("kind", "change", "field", "expected"),
    [
        (C.KIND_RAYCLUSTER, {"managedBy": "someone-else"}, "spec.managedBy", S.MSG_MANAGED_BY_VALUE),
        (C.KIND_RAYJOB, {"managedBy": "someone-else"}, "spec.managedBy", S.MSG_MANAGED_BY_VALUE),
        (C.KIND_RAYSERVICE, {"managedBy": "someone-else"}, "spec.managedBy", S.MSG_MANAGED_BY_VALUE),
        (
            C.KIND_RAYJOB,
            {
                "deletionStrategy": {
                    "onSuccess": {"policy": "DeleteCluster"},
                    "onFailure": {"policy": "DeleteCluster"},
                    "deletionRules": [{"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED"}}],
                }
            },
            "spec.deletionStrategy",
            S.MSG_DELETION_MIXED,
        ),
        (
            C.KIND_RAYJOB,
            {"deletionStrategy": {"onSuccess": {"policy": "DeleteCluster"}}},
            "spec.deletionStrategy",
            S.MSG_DELETION_INCOMPLETE,
        ),
        (
            C.KIND_RAYJOB,
            {
                "deletionStrategy": {
                    "deletionRules": [
                        {
                            "policy": "DeleteSelf",
                            "condition": {"jobStatus": "FAILED", "jobDeploymentStatus": "Failed"},
                        }
                    ]
                }
            },
            "spec.deletionStrategy.deletionRules[0].condition",
            S.MSG_CONDITION_BOTH,
        ),
        (
            C.KIND_RAYJOB,
            {
                "deletionStrategy": {
                    "deletionRules": [{"policy": "DeleteSelf", "condition": {"ttlSeconds": 5}}]
                }
            },
            "spec.deletionStrategy.deletionRules[0].condition",
            S.MSG_CONDITION_NONE,
        ),
        (
            C.KIND_RAYJOB,
            {"deletionStrategy": {"deletionRules": []}},
            "spec.deletionStrategy.deletionRules",
            "should have at least 1 items",
        ),
        (
            C.KIND_RAYJOB,
            {
                "deletionStrategy": {
                    "deletionRules": [
                        {"policy": "DeleteSelf", "condition": {"jobStatus": "FAILED", "ttlSeconds": -1}}
                    ]
                }
            },
            "spec.deletionStrategy.deletionRules[0].condition.ttlSeconds",
            "greater than or equal to 0",
        ),
        (
            C.KIND_RAYJOB,
            {
                "deletionStrategy": {
                    "deletionRules": [{"policy": "DeleteAll", "condition": {"jobStatus": "FAILED"}}]
                }
            },
            "spec.deletionStrategy.deletionRules[0].policy",
            'Unsupported value: "DeleteAll"',
        ),
        (
            C.KIND_RAYJOB,
            {"preRunningDeadlineSeconds": 0},
            "spec.preRunningDeadlineSeconds",
            "greater than or equal to 1",
        ),
        (
            C.KIND_RAYSERVICE,
            {"rayClusterDeletionDelaySeconds": -1},
            "spec.rayClusterDeletionDelaySeconds",
            "greater than or equal to 0",
        ),
        (
            C.KIND_RAYCLUSTER,
            {"gcsFaultToleranceOptions": {"backend": "etcd"}},
            "spec.gcsFaultToleranceOptions.backend",
            'Unsupported value: "etcd"',
        ),
    ],
)
async def test_schema_rules_reject_bad_specs(
    kube: ApiClient, namespace: str, kind: str, change: dict[str, Any], field: str, expected: str
) -> None:
    obj = {
        C.KIND_RAYCLUSTER: minimal_cluster,
        C.KIND_RAYJOB: minimal_job,
        C.KIND_RAYSERVICE: minimal_service,
    }[kind]("bad")
    obj["spec"].update(copy.deepcopy(change))
    message = await rejected(kube.create(V1[kind], obj, namespace))
    assert field in message and expected in message, message


@pytest.mark.parametrize(
    ("initial", "change", "expected"),
    [
        (
            {"managedBy": C.MANAGED_BY_KUBERAY},
            {"managedBy": C.MANAGED_BY_MULTIKUEUE},
            S.MSG_MANAGED_BY_IMMUTABLE,
        ),
        (
            {"gcsFaultToleranceOptions": {"backend": "redis", "redisAddress": "redis:6379"}},
            {"gcsFaultToleranceOptions": {"backend": "rocksdb"}},
            S.MSG_BACKEND_IMMUTABLE,
        ),
    ],
)
async def test_immutable_fields(
    kube: ApiClient, namespace: str, initial: dict[str, Any], change: dict[str, Any], expected: str
) -> None:
    obj = minimal_cluster("immutable")
    obj["spec"].update(initial)
    await kube.create(V1[C.KIND_RAYCLUSTER], obj, namespace)
    message = await rejected(kube.patch(V1[C.KIND_RAYCLUSTER], "immutable", {"spec": change}, namespace))
    assert expected in message
    # Setting the same value again is fine.
    await kube.patch(V1[C.KIND_RAYCLUSTER], "immutable", {"spec": initial}, namespace)


# kubectl ---------------------------------------------------------------------------------------------


async def test_kubectl_get_shows_kuberays_columns(
    plane: ControlPlane, kube: ApiClient, namespace: str
) -> None:
    cluster = V1[C.KIND_RAYCLUSTER]
    await kube.create(cluster, minimal_cluster("cols"), namespace)
    await kube.create(V1[C.KIND_RAYJOB], minimal_job("cols"), namespace)
    await kube.create(V1[C.KIND_RAYSERVICE], minimal_service("cols"), namespace)
    status = {
        "state": "ready",
        "desiredWorkerReplicas": 2,
        "availableWorkerReplicas": 1,
        "desiredCPU": "3",
        "desiredMemory": "4Gi",
        "desiredGPU": "0",
        "desiredTPU": "0",
        "head": {"podIP": "10.1.2.3", "serviceIP": "10.4.5.6"},
    }
    await kube.patch(cluster, "cols", {"status": status}, namespace, sub="status")
    await kube.patch(
        V1[C.KIND_RAYJOB],
        "cols",
        {
            "status": {
                "jobStatus": "RUNNING",
                "jobDeploymentStatus": "Running",
                "rayClusterName": "cols-abcde",
            }
        },
        namespace,
        sub="status",
    )
    await kube.patch(
        V1[C.KIND_RAYSERVICE],
        "cols",
        {"status": {"serviceStatus": "Running", "numServeEndpoints": 2}},
        namespace,
        sub="status",
    )

    out = plane.kubectl("get", "rayclusters,rayjobs,rayservices", "-n", namespace)
    lines = [line.split() for line in out.splitlines() if line.strip()]
    headers = [line for line in out.splitlines() if line.startswith("NAME")]
    assert [h.split("  ")[0] for h in headers] == ["NAME"] * 3
    norm = [" ".join(h.split()) for h in headers]
    assert norm[0] == "NAME DESIRED WORKERS AVAILABLE WORKERS CPUS MEMORY GPUS STATUS AGE"
    assert norm[1] == "NAME JOB STATUS DEPLOYMENT STATUS RAY CLUSTER NAME START TIME END TIME AGE"
    assert norm[2] == "NAME SERVICE STATUS NUM SERVE ENDPOINTS"
    assert lines[1][:7] == ["raycluster.ray.io/cols", "2", "1", "3", "4Gi", "0", "ready"]
    assert lines[3][:4] == ["rayjob.ray.io/cols", "RUNNING", "Running", "cols-abcde"]
    assert lines[5] == ["rayservice.ray.io/cols", "Running", "2"]

    wide = plane.kubectl("get", "rayclusters", "-n", namespace, "-o", "wide")
    header, row = (" ".join(line.split()) for line in wide.splitlines()[:2])
    assert header == (
        "NAME DESIRED WORKERS AVAILABLE WORKERS CPUS MEMORY GPUS TPUS STATUS AGE HEAD POD IP HEAD SERVICE IP"
    )
    assert row.startswith("cols 2 1 3 4Gi 0 0 ready ") and row.endswith(" 10.1.2.3 10.4.5.6")
    # Category `all`: the Ray objects are listed by `kubectl get all`.
    assert "raycluster.ray.io/cols" in plane.kubectl("get", "all", "-n", namespace)


async def test_kubectl_explain_nested_pod_template_field(plane: ControlPlane) -> None:
    def explain() -> str:
        out = plane.kubectl("explain", "raycluster.spec.workerGroupSpecs.template.spec.containers")
        assert "FIELD: containers <[]Object>" in out
        return out

    # The CRD's schema reaches /openapi/v3 a little after the CRD is Established.
    out = await eventually(explain)
    for field in ("image\t<string>", "ports\t<[]Object>", "resources\t<Object>", "name\t<string> -required-"):
        assert field in out
    ray_field = plane.kubectl("explain", "rayjob.spec.deletionStrategy.deletionRules.condition.ttlSeconds")
    assert "<integer>" in ray_field and "Seconds after the status is reached" in ray_field


# Staleness -------------------------------------------------------------------------------------------


async def test_checked_in_crds_match_the_running_api_server(kube: ApiClient) -> None:
    fresh = crdgen.render(await fetch_documents(kube))
    stale = [name for name, text in fresh.items() if (CRD_DIR / name).read_text() != text]
    assert not stale, f"config/crd/{stale} differ from what the API server's OpenAPI gives: run `make crds`"
