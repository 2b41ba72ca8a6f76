"""RayService builders: its RayCluster, the Services that follow the serving cluster, the Serve config."""

from __future__ import annotations

from typing import Any

import pytest

from rayop.builders import rayservice as B
from rayop.builders.options import BuildOptions
from rayop.builders.pod import build_head_pod
from rayop.validation import validate_rayservice
from tests.unit.test_rayservice_machine import cluster_config, rayservice


def test_head_service_is_the_clusters_under_the_rayservices_name() -> None:
    rs = rayservice()
    rs["spec"]["rayClusterConfig"]["headServiceAnnotations"] = {"a": "b"}
    c = B.build_cluster(rs, "rs-abcde")
    svc = B.build_head_service_for(rs, c)
    assert svc["metadata"]["name"] == "rs-head-svc"
    assert svc["metadata"]["labels"] == {
        "ray.io/originated-from-cr-name": "rs",
        "ray.io/originated-from-crd": "RayService",
        "ray.io/node-type": "head",
        "ray.io/identifier": "rs-head",
    }
    assert svc["metadata"]["annotations"] == {"a": "b"}
    assert svc["metadata"]["ownerReferences"][0]["kind"] == "RayService"
    assert svc["spec"]["selector"]["ray.io/cluster"] == "rs-abcde"
    assert svc["spec"]["selector"]["ray.io/node-type"] == "head"
    assert svc["spec"]["clusterIP"] == "None"
    assert [p["name"] for p in svc["spec"]["ports"]] == ["dashboard", "gcs-server", "metrics", "serve"]
    ip = B.build_head_service_for(rs, c, BuildOptions(head_cluster_ip_service=True))
    assert "clusterIP" not in ip["spec"]


def test_serve_service_selects_serving_pods_of_one_cluster() -> None:
    rs = rayservice()
    rs["spec"]["rayClusterConfig"]["headGroupSpec"]["serviceType"] = "NodePort"
    svc = B.build_serve_service(rs, B.build_cluster(rs, "rs-abcde"))
    assert svc["metadata"]["name"] == "rs-serve-svc"
    assert svc["metadata"]["labels"]["ray.io/serve"] == "rs-serve"
    assert svc["spec"] == {
        "selector": {"ray.io/cluster": "rs-abcde", "ray.io/serve": "true"},
        "ports": [{"name": "serve", "port": 8000}],
        "type": "NodePort",
    }


def test_serve_service_defaults_to_8000_without_declared_ports() -> None:
    cfg = cluster_config()
    del cfg["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    rs = rayservice(rayClusterConfig=cfg)
    svc = B.build_serve_service(rs, B.build_cluster(rs, "rs-x"))
    assert svc["spec"]["ports"] == [{"name": "serve", "port": 8000}]


def test_switch_keeps_the_allocated_cluster_ip() -> None:
    have = {
        "spec": {"clusterIP": "10.96.1.2", "clusterIPs": ["10.96.1.2"], "selector": {"ray.io/cluster": "a"}}
    }
    want = {"spec": {"selector": {"ray.io/cluster": "b", "ray.io/serve": "true"}, "ports": []}}
    spec = B.switched_service_spec(have, want)
    assert spec["clusterIP"] == "10.96.1.2" and spec["clusterIPs"] == ["10.96.1.2"]
    assert spec["selector"]["ray.io/cluster"] == "b"
    assert B.service_cluster(have) == "a" and B.service_cluster(None) == ""


def test_rayop_records_are_not_copied_from_the_rayservice() -> None:
    rs = rayservice(
        annotations={"rayop.io/serve-config-hash": "X", "rayop.io/delete-after": "2026-01-01T00:00:00Z"}
    )
    ann = B.build_cluster(rs, "rs-x")["metadata"]["annotations"]
    assert "rayop.io/serve-config-hash" not in ann and "rayop.io/delete-after" not in ann


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "applications:\n- name: a\n  import_path: m:app\n",
            {"applications": [{"name": "a", "import_path": "m:app"}]},
        ),
        ("", {}),
        ("http_options:\n  port: 8001\n", {"http_options": {"port": 8001}}),
    ],
)
def test_serve_config_yaml_to_json(text: str, want: dict[str, Any]) -> None:
    assert B.serve_config(text) == want


def test_serve_config_rejects_a_list() -> None:
    with pytest.raises(B.ServeConfigError, match="YAML mapping"):
        B.serve_config("- a\n- b\n")


def test_ports_of_a_built_pod() -> None:
    rs = rayservice()
    c = B.build_cluster(rs, "rs-x")
    c["metadata"]["uid"] = "u"
    pod = build_head_pod(c, BuildOptions())
    assert B.serve_port(pod) == 8000
    assert B.metrics_port(pod) == 8080
    c["spec"]["headGroupSpec"]["rayStartParams"] = {"metrics-export-port": "9090"}
    assert B.metrics_port(build_head_pod(c, BuildOptions())) == 9090


@pytest.mark.parametrize(
    ("value", "ok"), [("90s", True), ("0", True), ("120", True), ("-5s", False), ("soon", False)]
)
def test_drain_timeout_annotation_is_validated(value: str, ok: bool) -> None:
    errs = validate_rayservice(rayservice(annotations={"rayop.io/serve-drain-timeout": value}))
    assert (not errs) is ok, errs
    if not ok:
        assert "metadata.annotations[rayop.io/serve-drain-timeout]" in str(errs[0])
