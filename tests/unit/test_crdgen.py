"""The CRD generator (rayop.api.crdgen, rayop.api.schema) and the CRDs it produced in config/crd/.

The generator's conversion rules are checked on small synthetic OpenAPI components; the checked-in CRDs
are checked for the structural rules the API server enforces and for KubeRay v1.7.0's field set, defaults,
enums, CEL rules and printer columns. Whether they are current is checked against a real API server in
tests/integration/test_crds.py.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from rayop.api import crdgen
from rayop.api import kinds as registry
from rayop.api import schema as s
from rayop.api.kinds import by_kind
from rayop.cli import main

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "config" / "crd"
KINDS = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayService": "rayservices"}
ETCD_REQUEST_LIMIT = 1_572_864  # etcd's default --max-request-bytes (1.5 MiB)


def ref(name: str, **wrapper: Any) -> dict[str, Any]:
    return {**wrapper, "allOf": [{"$ref": s.REF_PREFIX + name}]}


# Conversion rules on synthetic components ------------------------------------------------------


def test_ref_is_inlined_and_the_wrapper_description_wins_for_ray_fields() -> None:
    comps = {"X": {"description": "core doc", "type": "object", "properties": {"a": {"type": "string"}}}}
    out = crdgen.inline(s.ref("X", "ray doc"), comps)
    assert out == {"type": "object", "properties": {"a": {"type": "string"}}, "description": "ray doc"}


def test_core_descriptions_and_enums_are_stripped() -> None:
    comps = {
        "X": {
            "description": "core doc",
            "type": "object",
            "properties": {"p": {"description": "d", "type": "string", "enum": ["A", "B"]}},
        }
    }
    assert crdgen.inline(s.ref("X"), comps) == {"type": "object", "properties": {"p": {"type": "string"}}}


def test_one_element_allof_is_merged_and_wrapper_keys_lay_over_the_target() -> None:
    comps = {
        "Outer": {
            "type": "object",
            "properties": {"inner": ref("Inner", description="field doc", default={})},
        },
        "Inner": {"type": "object", "properties": {"v": {"type": "integer", "format": "int32"}}},
    }
    out = crdgen.inline(s.ref("Outer"), comps)
    assert out["properties"]["inner"] == {
        "type": "object",
        "properties": {"v": {"type": "integer", "format": "int32"}},
    }


def test_patch_strategy_unions_readonly_and_gvk_are_dropped() -> None:
    comps = {
        "X": {
            "type": "object",
            "x-kubernetes-unions": [{"fields-to-discriminateBy": {}}],
            "x-kubernetes-group-version-kind": [{"group": "", "kind": "X", "version": "v1"}],
            "properties": {
                "items": {
                    "type": "array",
                    "items": {"type": "string"},
                    "x-kubernetes-patch-strategy": "merge",
                    "x-kubernetes-patch-merge-key": "name",
                    "x-kubernetes-list-type": "atomic",
                },
                "ro": {"type": "string", "readOnly": True},
            },
        }
    }
    out = crdgen.inline(s.ref("X"), comps)
    assert out == {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "atomic"},
            "ro": {"type": "string"},
        },
    }


def test_int_or_string_and_quantity_become_structural() -> None:
    comps: dict[str, Any] = {
        crdgen.INT_OR_STRING: {"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]},
        s.QUANTITY: {"oneOf": [{"type": "string"}, {"type": "number"}]},
        "X": {
            "type": "object",
            "properties": {
                "port": ref(crdgen.INT_OR_STRING),
                "limits": {"type": "object", "additionalProperties": {"$ref": s.REF_PREFIX + s.QUANTITY}},
            },
        },
    }
    out = crdgen.inline(s.ref("X"), comps)
    port = out["properties"]["port"]
    assert port == {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
    limit = out["properties"]["limits"]["additionalProperties"]
    assert limit["x-kubernetes-int-or-string"] is True
    assert limit["pattern"] == crdgen.QUANTITY_PATTERN
    assert "oneOf" not in json.dumps(out) and '"format"' not in json.dumps(out)


def test_defaults_rule() -> None:
    comps = {
        "Port": {
            "type": "object",
            "required": ["containerPort"],
            "properties": {
                "containerPort": {"type": "integer", "default": 0},
                "protocol": {"type": "string", "default": "TCP"},
            },
        },
        "C": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "default": ""},
                "args": {"type": "array", "items": {"type": "string", "default": ""}},
                "env": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
                "ports": {
                    "type": "array",
                    "items": ref("Port", default={}),
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
                },
                "probe": ref("Port", default={}),
            },
        },
    }
    out = crdgen.inline(s.ref("C"), comps)
    props = out["properties"]
    # A zero-value default on a required property would defeat `required`.
    assert "default" not in props["name"]
    assert "default" not in props["args"]["items"] and "default" not in props["env"]["additionalProperties"]
    # `default: {}` would materialise the object.
    assert "default" not in props["probe"]
    # A list-map key must keep its default, or the API server refuses the CRD.
    assert props["ports"]["items"]["properties"]["protocol"]["default"] == "TCP"
    assert "default" not in props["ports"]["items"]["properties"]["containerPort"]


def test_ray_level_defaults_are_kept_even_on_required_fields() -> None:
    wg = crdgen.inline(s.worker_group_spec(), {"io.k8s.api.core.v1.PodTemplateSpec": {"type": "object"}})
    assert "minReplicas" in wg["required"] and wg["properties"]["minReplicas"]["default"] == 0
    assert wg["properties"]["maxReplicas"]["default"] == s.MAX_INT32


def test_object_meta_is_reduced() -> None:
    meta_props: dict[str, Any] = {
        k: {"type": "string"} for k in ("name", "namespace", "uid", "generateName", "resourceVersion")
    }
    meta_props |= {
        "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
        "finalizers": {
            "type": "array",
            "items": {"type": "string", "default": ""},
            "x-kubernetes-list-type": "set",
        },
        "managedFields": {"type": "array", "items": {"type": "object"}},
    }
    comps = {
        crdgen.OBJECT_META: {"type": "object", "properties": meta_props},
        "T": {"type": "object", "properties": {"metadata": ref(crdgen.OBJECT_META, default={})}},
    }
    meta = crdgen.inline(s.ref("T"), comps)["properties"]["metadata"]
    assert sorted(meta["properties"]) == ["annotations", "finalizers", "labels", "name", "namespace"]


@pytest.mark.parametrize(
    ("comps", "message"),
    [
        (
            {
                "X": {"type": "object", "properties": {"y": ref("Y")}},
                "Y": {"type": "object", "properties": {"x": ref("X")}},
            },
            "cycle",
        ),
        ({"X": {"type": "object", "x-kubernetes-new-thing": True}}, "unsupported schema key"),
        ({"X": {"oneOf": [{"type": "string"}, {"type": "boolean"}]}}, "oneOf"),
        ({"X": {"type": "object", "properties": {"m": ref("Missing")}}}, "not in the OpenAPI documents"),
        (
            {"X": {"allOf": [{"$ref": s.REF_PREFIX + "Y"}, {"required": ["a"]}]}, "Y": {"type": "object"}},
            "allOf",
        ),
    ],
)
def test_inputs_that_cannot_become_structural_are_reported(comps: dict[str, Any], message: str) -> None:
    with pytest.raises(crdgen.SchemaError, match=message):
        crdgen.inline(s.ref("X"), comps)


def test_kubernetes_version_comes_from_the_documents_and_must_agree() -> None:
    assert crdgen.kubernetes_version([{"info": {"version": "1.36"}}, {"info": {"version": "1.36"}}]) == "1.36"
    with pytest.raises(crdgen.SchemaError):
        crdgen.kubernetes_version([{"info": {"version": "1.36"}}, {"info": {"version": "1.35"}}])


def test_first_document_wins_for_repeated_components() -> None:
    docs = [
        {"components": {"schemas": {"A": {"type": "string"}}}},
        {"components": {"schemas": {"A": {"type": "integer"}, "B": {"type": "object"}}}},
    ]
    assert crdgen.components(docs) == {"A": {"type": "string"}, "B": {"type": "object"}}


# Whole CRDs from stub documents -----------------------------------------------------------------


def _referenced(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"][len(s.REF_PREFIX) :]
        for v in node.values():
            yield from _referenced(v)
    elif isinstance(node, list):
        for v in node:
            yield from _referenced(v)


def stub_documents() -> list[dict[str, Any]]:
    """Documents whose every component the Ray schemas reference is a bare object."""
    names = sorted({n for build in (k.schema for k in registry.KINDS) for n in _referenced(build())})
    core = {n: {"type": "object"} for n in names if not n.startswith(s.NETWORKING)}
    net = {n: {"type": "object"} for n in names if n.startswith(s.NETWORKING)}
    return [
        {"info": {"version": "1.99"}, "components": {"schemas": core}},
        {"info": {"version": "1.99"}, "components": {"schemas": net}},
    ]


def test_the_ray_schemas_reference_only_the_expected_kubernetes_types() -> None:
    names = {n for build in (k.schema for k in registry.KINDS) for n in _referenced(build())}
    assert names == {
        "io.k8s.api.core.v1.PodTemplateSpec",
        "io.k8s.api.core.v1.Service",
        "io.k8s.api.core.v1.ResourceRequirements",
        "io.k8s.api.core.v1.SecurityContext",
        "io.k8s.api.core.v1.EnvVar",
        "io.k8s.api.core.v1.EnvFromSource",
        "io.k8s.api.core.v1.EnvVarSource",
        "io.k8s.api.core.v1.VolumeMount",
        "io.k8s.api.networking.v1.IngressTLS",
        "io.k8s.api.networking.v1.NetworkPolicyIngressRule",
        "io.k8s.api.networking.v1.NetworkPolicyEgressRule",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Condition",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
        "io.k8s.apimachinery.pkg.api.resource.Quantity",
    }


def test_render_is_deterministic_and_records_the_source_version() -> None:
    first = crdgen.render(stub_documents())
    assert first == crdgen.render(stub_documents())
    assert sorted(first) == [
        "ray.io_rayclusters.yaml",
        "ray.io_rayjobs.yaml",
        "ray.io_rayservices.yaml",
        "rayop.io_rayservedeployments.yaml",
        "rayop.io_rayworkergroups.yaml",
    ]
    for text in first.values():
        crd = yaml.safe_load(text)
        assert crd["metadata"]["annotations"][crdgen.ANN_KUBERNETES_VERSION] == "1.99"
        assert "&id" not in text and "*id" not in text  # no YAML aliases


def test_gen_crds_command_writes_files_and_leaves_unchanged_files_alone(tmp_path: Path) -> None:
    files = []
    for i, doc in enumerate(stub_documents()):
        f = tmp_path / f"doc{i}.json"
        f.write_text(json.dumps(doc))
        files += ["--openapi", str(f)]
    out = tmp_path / "crd"
    runner = CliRunner()
    result = runner.invoke(main.app, ["dev", "gen-crds", *files, "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "ray.io_rayclusters.yaml",
        "ray.io_rayjobs.yaml",
        "ray.io_rayservices.yaml",
        "rayop.io_rayservedeployments.yaml",
        "rayop.io_rayworkergroups.yaml",
    ]
    mtimes = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    result = runner.invoke(main.app, ["dev", "gen-crds", *files, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


def test_gen_crds_command_reports_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"info": {"version": "1.99"}, "components": {"schemas": {}}}))
    result = CliRunner().invoke(
        main.app, ["dev", "gen-crds", "--openapi", str(bad), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "not in the OpenAPI documents" in result.output


# The checked-in CRDs ----------------------------------------------------------------------------


@functools.cache
def load(kind: str) -> dict[str, Any]:
    path = CRD_DIR / f"ray.io_{KINDS[kind]}.yaml"
    docs = [d for d in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader) if d]
    assert len(docs) == 1
    crd: dict[str, Any] = docs[0]
    return crd


@pytest.fixture(params=sorted(KINDS))
def crd(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(request.param)


def v1_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = load(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for k, v in node.get("properties", {}).items():
            yield from walk(v, f"{path}.{k}")
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from walk(node["additionalProperties"], f"{path}{{}}")
        for sub in node.get("anyOf", []):
            yield from walk(sub, f"{path}|")


def test_files_are_in_canonical_form(crd: dict[str, Any]) -> None:
    path = CRD_DIR / by_kind(crd["spec"]["names"]["kind"]).crd_file
    assert crdgen.to_yaml(crd) == path.read_text()


def test_schema_is_structural(crd: dict[str, Any]) -> None:
    banned = {"$ref", "allOf", "oneOf", "x-kubernetes-patch-strategy", "x-kubernetes-patch-merge-key"}
    banned |= {"x-kubernetes-unions", "readOnly", "x-kubernetes-group-version-kind"}
    for version in crd["spec"]["versions"]:
        for path, node in walk(version["schema"]["openAPIV3Schema"]):
            assert not banned & set(node), f"{path}: {banned & set(node)}"
            assert node.get("format") != "int-or-string", path
            if "anyOf" in node:
                assert node.get("x-kubernetes-int-or-string") is True, path
                continue
            if node.get("x-kubernetes-int-or-string"):
                continue
            assert "type" in node, f"{path} has no type"
            assert not ("properties" in node and "additionalProperties" in node), path
            if "properties" in node or "additionalProperties" in node:
                assert node["type"] == "object", path
            for key in node.get("x-kubernetes-list-map-keys", []):
                item = node["items"]
                assert node["x-kubernetes-list-type"] == "map", path
                assert key in item.get("required", []) or "default" in item["properties"][key], (
                    f"{path}: {key}"
                )
            for req in node.get("required", []):
                assert req in node["properties"], f"{path}: required {req} not declared"


def test_sizes_stay_below_the_api_server_limits(crd: dict[str, Any]) -> None:
    # Requests are sent as compact JSON; etcd refuses values above 1.5 MiB.
    assert crdgen.json_size(crd) < ETCD_REQUEST_LIMIT * 0.6


def test_versions_names_and_subresources(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    kind = spec["names"]["kind"]
    assert crd["metadata"]["name"] == f"{KINDS[kind]}.ray.io"
    assert spec["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": KINDS[kind],
        "singular": kind.lower(),
        "categories": ["all"],
    }
    assert spec["scope"] == "Namespaced"
    assert spec["conversion"] == {"strategy": "None"}
    v1, alpha = spec["versions"]
    assert (v1["name"], v1["served"], v1["storage"]) == ("v1", True, True)
    assert (alpha["name"], alpha["served"], alpha["storage"]) == ("v1alpha1", True, False)
    assert alpha["schema"] == v1["schema"]
    assert v1["subresources"] == alpha["subresources"] == {"status": {}}
    assert crd["metadata"]["annotations"][crdgen.ANN_KUBERNETES_VERSION]


PRINTER_COLUMNS = {
    "RayCluster": [
        ("desired workers", "integer", ".status.desiredWorkerReplicas", 0),
        ("available workers", "integer", ".status.availableWorkerReplicas", 0),
        ("cpus", "string", ".status.desiredCPU", 0),
        ("memory", "string", ".status.desiredMemory", 0),
        ("gpus", "string", ".status.desiredGPU", 0),
        ("tpus", "string", ".status.desiredTPU", 1),
        ("status", "string", ".status.state", 0),
        ("age", "date", ".metadata.creationTimestamp", 0),
        ("head pod IP", "string", ".status.head.podIP", 1),
        ("head service IP", "string", ".status.head.serviceIP", 1),
    ],
    "RayJob": [
        ("job status", "string", ".status.jobStatus", 0),
        ("deployment status", "string", ".status.jobDeploymentStatus", 0),
        ("ray cluster name", "string", ".status.rayClusterName", 0),
        ("start time", "string", ".status.startTime", 0),
        ("end time", "string", ".status.endTime", 0),
        ("age", "date", ".metadata.creationTimestamp", 0),
    ],
    "RayService": [
        ("service status", "string", ".status.serviceStatus", 0),
        ("num serve endpoints", "string", ".status.numServeEndpoints", 0),
    ],
}


def test_printer_columns_are_kuberays(crd: dict[str, Any]) -> None:
    kind = crd["spec"]["names"]["kind"]
    for version in crd["spec"]["versions"]:
        got = [
            (c["name"], c["type"], c["jsonPath"], c.get("priority", 0))
            for c in version["additionalPrinterColumns"]
        ]
        assert got == PRINTER_COLUMNS[kind]


# KubeRay v1.7.0's spec fields (KubeRay's `docs/reference/api.md` at v1.7.0).
CLUSTER_SPEC = {
    "upgradeStrategy", "authOptions", "suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations",
    "enableInTreeAutoscaling", "gcsFaultToleranceOptions", "historyServerOptions", "networkPolicy",
    "tlsOptions", "headGroupSpec", "rayVersion", "workerGroupSpecs",
}  # fmt: skip
JOB_SPEC = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
    "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML",
    "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
    "ttlSecondsAfterFinished", "preRunningDeadlineSeconds", "shutdownAfterJobFinishes", "suspend",
}  # fmt: skip
SERVICE_SPEC = {
    "rayClusterDeletionDelaySeconds", "serviceUnhealthySecondThreshold", "deploymentUnhealthySecondThreshold",
    "serveService", "upgradeStrategy", "managedBy", "serveConfigV2", "rayClusterConfig",
    "excludeHeadPodFromServeSvc", "suspend",
}  # fmt: skip


def at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def test_every_kuberay_spec_field_is_declared() -> None:
    assert set(at(v1_schema("RayCluster"), "spec")["properties"]) == CLUSTER_SPEC
    assert set(at(v1_schema("RayJob"), "spec")["properties"]) == JOB_SPEC
    assert set(at(v1_schema("RayJob"), "spec.rayClusterSpec")["properties"]) == CLUSTER_SPEC
    assert set(at(v1_schema("RayService"), "spec")["properties"]) == SERVICE_SPEC
    assert set(at(v1_schema("RayService"), "spec.rayClusterConfig")["properties"]) == CLUSTER_SPEC
    wg = at(v1_schema("RayCluster"), "spec.workerGroupSpecs.[]")
    assert set(wg["properties"]) == {
        "suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds", "priority",
        "resources", "labels", "rayStartParams", "template", "scaleStrategy", "numOfHosts",
    }  # fmt: skip
    head = at(v1_schema("RayCluster"), "spec.headGroupSpec")
    assert set(head["properties"]) == {
        "template", "headService", "enableIngress", "ingressOptions", "resources", "labels", "rayStartParams",
        "serviceType",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "path", "required"),
    [
        ("RayCluster", "spec", ["headGroupSpec"]),
        ("RayCluster", "spec.headGroupSpec", ["template"]),
        ("RayCluster", "spec.workerGroupSpecs.[]", ["groupName", "maxReplicas", "minReplicas", "template"]),
        ("RayCluster", "spec.networkPolicy.workerGroups.[]", ["groupName"]),
        ("RayJob", "spec.deletionStrategy.deletionRules.[]", ["condition", "policy"]),
        ("RayService", "spec", ["rayClusterConfig"]),
        (
            "RayService",
            "spec.upgradeStrategy.clusterUpgradeOptions",
            ["gatewayClassName", "intervalSeconds", "stepSizePercent"],
        ),
    ],
)
def test_required_fields(kind: str, path: str, required: list[str]) -> None:
    assert at(v1_schema(kind), path).get("required") == required


@pytest.mark.parametrize(
    ("kind", "path", "default"),
    [
        ("RayCluster", "spec.workerGroupSpecs.[].replicas", 0),
        ("RayCluster", "spec.workerGroupSpecs.[].minReplicas", 0),
        ("RayCluster", "spec.workerGroupSpecs.[].maxReplicas", 2147483647),
        ("RayCluster", "spec.workerGroupSpecs.[].numOfHosts", 1),
        ("RayCluster", "spec.workerGroupSpecs.[].priority", 0),
        ("RayCluster", "spec.networkPolicy.mode", "DenyAll"),
        ("RayJob", "spec.backoffLimit", 0),
        ("RayJob", "spec.submissionMode", "K8sJobMode"),
        ("RayJob", "spec.ttlSecondsAfterFinished", 0),
        ("RayJob", "spec.deletionStrategy.deletionRules.[].condition.ttlSeconds", 0),
        ("RayJob", "status.succeeded", 0),
        ("RayJob", "status.failed", 0),
        ("RayService", "spec.upgradeStrategy.clusterUpgradeOptions.maxSurgePercent", 100),
    ],
)
def test_defaults(kind: str, path: str, default: Any) -> None:
    assert at(v1_schema(kind), path)["default"] == default


@pytest.mark.parametrize(
    ("kind", "path", "enum"),
    [
        ("RayCluster", "spec.autoscalerOptions.upscalingMode", ["Default", "Aggressive", "Conservative"]),
        ("RayCluster", "spec.autoscalerOptions.version", ["v1", "v2"]),
        ("RayCluster", "spec.authOptions.mode", ["disabled", "token"]),
        ("RayCluster", "spec.upgradeStrategy.type", ["Recreate", "None"]),
        ("RayCluster", "spec.gcsFaultToleranceOptions.backend", ["redis", "rocksdb"]),
        (
            "RayCluster",
            "spec.gcsFaultToleranceOptions.storage.deletionPolicy",
            ["DeleteWithCluster", "Retain"],
        ),
        ("RayCluster", "spec.networkPolicy.mode", ["DenyAll", "DenyAllIngress", "DenyAllEgress"]),
        (
            "RayCluster",
            "spec.headGroupSpec.ingressOptions.pathType",
            ["Exact", "Prefix", "ImplementationSpecific"],
        ),
        (
            "RayJob",
            "spec.deletionStrategy.onSuccess.policy",
            ["DeleteCluster", "DeleteWorkers", "DeleteSelf", "DeleteNone"],
        ),
        (
            "RayJob",
            "spec.deletionStrategy.deletionRules.[].policy",
            ["DeleteCluster", "DeleteWorkers", "DeleteSelf", "DeleteNone"],
        ),
        ("RayJob", "spec.deletionStrategy.deletionRules.[].condition.jobStatus", ["SUCCEEDED", "FAILED"]),
        ("RayJob", "spec.deletionStrategy.deletionRules.[].condition.jobDeploymentStatus", ["Failed"]),
    ],
)
def test_enums(kind: str, path: str, enum: list[str]) -> None:
    assert at(v1_schema(kind), path)["enum"] == enum


@pytest.mark.parametrize(
    ("kind", "path", "minimum"),
    [
        ("RayCluster", "spec.workerGroupSpecs.[].minReplicas", 0),
        ("RayCluster", "spec.workerGroupSpecs.[].maxReplicas", 0),
        ("RayJob", "spec.preRunningDeadlineSeconds", 1),
        ("RayJob", "spec.deletionStrategy.deletionRules.[].condition.ttlSeconds", 0),
        ("RayService", "spec.rayClusterDeletionDelaySeconds", 0),
    ],
)
def test_minimums(kind: str, path: str, minimum: int) -> None:
    assert at(v1_schema(kind), path)["minimum"] == minimum


@pytest.mark.parametrize(
    ("kind", "path", "rules"),
    [
        (
            "RayCluster",
            "spec.managedBy",
            ["self == oldSelf", "self in ['ray.io/kuberay-operator', 'kueue.x-k8s.io/multikueue']"],
        ),
        (
            "RayJob",
            "spec.managedBy",
            ["self == oldSelf", "self in ['ray.io/kuberay-operator', 'kueue.x-k8s.io/multikueue']"],
        ),
        (
            "RayService",
            "spec.managedBy",
            ["self == oldSelf", "self in ['ray.io/kuberay-operator', 'kueue.x-k8s.io/multikueue']"],
        ),
        ("RayCluster", "spec.gcsFaultToleranceOptions.backend", ["self == oldSelf"]),
        ("RayJob", "spec.rayClusterSpec.gcsFaultToleranceOptions.backend", ["self == oldSelf"]),
        (
            "RayJob",
            "spec.deletionStrategy",
            [
                "!((has(self.onSuccess) || has(self.onFailure)) && has(self.deletionRules))",
                "((has(self.onSuccess) && has(self.onFailure)) || has(self.deletionRules))",
            ],
        ),
        (
            "RayJob",
            "spec.deletionStrategy.deletionRules.[].condition",
            [
                "!(has(self.jobStatus) && has(self.jobDeploymentStatus))",
                "has(self.jobStatus) || has(self.jobDeploymentStatus)",
            ],
        ),
    ],
)
def test_cel_rules(kind: str, path: str, rules: list[str]) -> None:
    node = at(v1_schema(kind), path)
    assert [r["rule"] for r in node["x-kubernetes-validations"]] == rules
    assert all(r["message"] for r in node["x-kubernetes-validations"])


def test_deletion_rules_need_at_least_one_item() -> None:
    rules = at(v1_schema("RayJob"), "spec.deletionStrategy.deletionRules")
    assert rules["minItems"] == 1 and rules["x-kubernetes-list-type"] == "atomic"


def test_pod_templates_are_full_pod_schemas_without_descriptions() -> None:
    for kind, path in [
        ("RayCluster", "spec.headGroupSpec.template"),
        ("RayCluster", "spec.workerGroupSpecs.[].template"),
        ("RayJob", "spec.submitterPodTemplate"),
        ("RayService", "spec.rayClusterConfig.headGroupSpec.template"),
    ]:
        template = at(v1_schema(kind), path)
        assert template["description"]  # the Ray field keeps its description
        assert sorted(at(template, "metadata")["properties"]) == [
            "annotations",
            "finalizers",
            "labels",
            "name",
            "namespace",
        ]
        containers = at(template, "spec.containers")
        assert containers["x-kubernetes-list-type"] == "map"
        assert containers["items"]["required"] == ["name"]
        assert "image" in containers["items"]["properties"]
        assert at(template, "spec.containers.[].ports.[].protocol")["default"] == "TCP"
        assert all("description" not in node for _, node in walk(template["properties"]["spec"]))
        assert "x-kubernetes-embedded-resource" not in template


def test_ray_fields_are_documented() -> None:
    undocumented = [
        f"{kind}.spec.{name}"
        for kind in KINDS
        for name, node in at(v1_schema(kind), "spec")["properties"].items()
        if not node.get("description")
    ]
    assert undocumented == []


def test_no_short_names(crd: dict[str, Any]) -> None:
    assert "shortNames" not in crd["spec"]["names"]
