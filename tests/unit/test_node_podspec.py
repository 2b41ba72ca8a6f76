"""The node agent's pure pod logic: quantities, fit, env, hosts file, phase."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rayop.node import podspec
from rayop.node.volumes import write_atomic

POD: dict[str, Any] = {
    "metadata": {
        "name": "p",
        "namespace": "ns",
        "uid": "u-1",
        "labels": {"ray.io/cluster": "c1", "app": "x"},
        "annotations": {"a": "b"},
    },
    "spec": {
        "nodeName": "n1",
        "serviceAccountName": "sa",
        "containers": [
            {"name": "main", "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}}},
            {"name": "side", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
        ],
        "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "2", "memory": "10Mi"}}}],
    },
    "status": {"podIP": "10.0.0.5", "hostIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.5"}]},
}


@pytest.mark.parametrize(
    ("q", "want"),
    [
        ("500m", Decimal("0.5")),
        ("1", Decimal(1)),
        ("1Gi", Decimal(2**30)),
        ("512Mi", Decimal(512 * 2**20)),
        ("1e3", Decimal(1000)),
        ("2k", Decimal(2000)),
        ("1.5", Decimal("1.5")),
        (2, Decimal(2)),
    ],
)
def test_parse_quantity(q: str | int, want: Decimal) -> None:
    assert podspec.parse_quantity(q) == want


def test_parse_quantity_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        podspec.parse_quantity("lots")


def test_pod_requests_take_limits_as_requests_and_max_of_init() -> None:
    # containers: 1500m + 250m = 1750m < init 2000m; memory 1Gi + 64Mi > init 10Mi
    assert podspec.pod_requests(POD) == {"cpu": 2000, "memory": 2**30 + 64 * 2**20}


def node(cpu: str = "4", memory: str = "8Gi", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels or {"kubernetes.io/hostname": "n1"}},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "3"}},
    }


def test_fit_and_reasons() -> None:
    assert podspec.unschedulable_reason(POD, node(), {"cpu": 0, "memory": 0}, 0) is None
    msg = podspec.unschedulable_reason(POD, node(cpu="1"), {}, 0)
    assert msg is not None and "Insufficient cpu" in msg
    msg = podspec.unschedulable_reason(POD, node(), {"memory": 8 * 2**30}, 0)
    assert msg is not None and "Insufficient memory" in msg
    assert "Too many pods" in (podspec.unschedulable_reason(POD, node(), {}, 3) or "")
    sel = {**POD, "spec": {**POD["spec"], "nodeSelector": {"disk": "ssd"}}}
    assert "node affinity/selector" in (podspec.unschedulable_reason(sel, node(), {}, 0) or "")


def test_taints_need_tolerations() -> None:
    n = node()
    n["spec"] = {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}
    assert "untolerated taint" in (podspec.unschedulable_reason(POD, n, {}, 0) or "")
    tol = {**POD, "spec": {**POD["spec"], "tolerations": [{"operator": "Exists"}]}}
    assert podspec.unschedulable_reason(tol, n, {}, 0) is None


def test_expand() -> None:
    env = {"A": "1", "B": "two"}
    assert podspec.expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-two-$(C)-$(A)"


def test_field_refs() -> None:
    assert podspec.field_ref(POD, "metadata.name") == "p"
    assert podspec.field_ref(POD, "metadata.labels['ray.io/cluster']") == "c1"
    assert podspec.field_ref(POD, "status.podIP") == "10.0.0.5"
    assert podspec.field_ref(POD, "spec.serviceAccountName") == "sa"
    assert podspec.field_ref(POD, "metadata.labels") == 'app="x"\nray.io/cluster="c1"'
    with pytest.raises(ValueError):
        podspec.field_ref(POD, "spec.nope")


def test_resource_field_ref_rounds_up_and_defaults_to_node() -> None:
    main = POD["spec"]["containers"][0]
    side = POD["spec"]["containers"][1]
    assert podspec.resource_field_ref(main, "limits.cpu", None, {}) == "2"
    assert podspec.resource_field_ref(main, "limits.cpu", "1m", {}) == "1500"
    assert podspec.resource_field_ref(main, "limits.memory", "1Mi", {}) == "1024"
    assert podspec.resource_field_ref(side, "limits.cpu", None, {"cpu": "8"}) == "8"
    assert podspec.resource_field_ref(main, "requests.memory", None, {}) == str(2**30)


def test_build_env_order_refs_and_errors() -> None:
    c = {
        "name": "main",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}, {"secretRef": {"name": "s"}}],
        "env": [
            {"name": "X", "value": "x-$(CM_k)"},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "O", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": True}}},
        ],
        "resources": {"limits": {"memory": "2Gi"}},
    }
    env = podspec.build_env(
        POD, c, {"PATH": "/bin"}, {"cm": {"k": "v"}, "gone": None}, {"s": {"pw": "secret"}}, {}
    )
    assert env == {
        "PATH": "/bin",
        "CM_k": "v",
        "pw": "secret",
        "X": "x-v",
        "IP": "10.0.0.5",
        "MEM": "2048",
        "S": "secret",
    }
    bad = {"name": "b", "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nokey"}}}]}
    with pytest.raises(podspec.MissingRef, match="couldn't find key nokey"):
        podspec.build_env(POD, bad, {}, {}, {"s": {"pw": "x"}}, {})
    with pytest.raises(podspec.MissingRef, match="not found"):
        podspec.build_env(
            POD, {"name": "b", "envFrom": [{"configMapRef": {"name": "cm"}}]}, {}, {"cm": None}, {}, {}
        )


def test_command_line_expands_vars() -> None:
    c = {"command": ["/bin/bash", "-c", "--"], "args": ["ray start --name $(NAME) $$HOME"]}
    assert podspec.command_line(c, {"NAME": "n"}) == ["/bin/bash", "-c", "--", "ray start --name n $HOME"]


def test_service_records_ready_only_unless_publish_not_ready() -> None:
    services = [
        {"metadata": {"namespace": "ns", "name": "web"}, "spec": {"clusterIP": "10.0.0.9"}},
        {
            "metadata": {"namespace": "ns", "name": "head"},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True},
        },
        {"metadata": {"namespace": "ns", "name": "ext"}, "spec": {"type": "ExternalName"}},
    ]
    slices = [
        {
            "metadata": {
                "namespace": "ns",
                "name": "web-abc",
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "endpoints": [
                {"addresses": ["10.1.0.3"], "conditions": {"ready": True}},
                {"addresses": ["10.1.0.2"], "conditions": {"ready": False}},
            ],
        },
        {
            "metadata": {
                "namespace": "ns",
                "name": "head-x",
                "labels": {"kubernetes.io/service-name": "head"},
            },
            "endpoints": [{"addresses": ["10.1.0.4"], "conditions": {"ready": False}, "hostname": "h0"}],
        },
    ]
    rec = podspec.service_records(services, slices)
    assert rec == {("ns", "web"): ["10.1.0.3"], ("ns", "head"): ["10.1.0.4"], ("ns", "h0.head"): ["10.1.0.4"]}


def test_render_hosts_short_names_only_in_own_namespace() -> None:
    text = podspec.render_hosts(
        "10.1.0.7",
        "p",
        "ns",
        None,
        {("ns", "web"): ["10.1.0.3"], ("other", "db"): ["10.1.0.9"]},
        "cluster.local",
        extra={"10.1.0.1": ["kubernetes", "kubernetes.default"]},
    )
    lines = text.splitlines()
    assert "10.1.0.7\tp" in lines
    assert "10.1.0.3\tweb web.ns web.ns.svc web.ns.svc.cluster.local" in lines
    assert "10.1.0.9\tdb.other db.other.svc db.other.svc.cluster.local" in lines
    assert "10.1.0.1\tkubernetes kubernetes.default" in lines


@pytest.mark.parametrize(
    ("policy", "states", "want"),
    [
        ("Always", [{"state": {"waiting": {}}}], "Pending"),
        ("Always", [{"state": {"running": {}}}], "Running"),
        ("Never", [{"state": {"terminated": {"exitCode": 0}}}], "Succeeded"),
        ("Never", [{"state": {"terminated": {"exitCode": 2}}}], "Failed"),
        ("OnFailure", [{"state": {"terminated": {"exitCode": 2}}}], "Running"),
        ("OnFailure", [{"state": {"terminated": {"exitCode": 0}}}], "Succeeded"),
        ("Always", [{"state": {"waiting": {}}, "restartCount": 1}], "Running"),
        ("Never", [{"state": {"terminated": {"exitCode": 0}}}, {"state": {"running": {}}}], "Running"),
    ],
)
def test_pod_phase(policy: str, states: list[dict[str, Any]], want: str) -> None:
    assert podspec.pod_phase(policy, True, False, states) == want


def test_pod_phase_init() -> None:
    assert podspec.pod_phase("Always", False, False, []) == "Pending"
    assert podspec.pod_phase("Never", False, True, []) == "Failed"


def test_write_atomic_swaps_data_link(tmp_path: Path) -> None:
    d = tmp_path / "vol"
    assert write_atomic(d, {"a": (b"1", 0o644), "sub/b": (b"2", 0o600)})
    assert (d / "a").read_text() == "1"
    assert (d / "sub" / "b").read_text() == "2"
    assert not write_atomic(d, {"a": (b"1", 0o644), "sub/b": (b"2", 0o600)})
    first = (d / "..data").resolve()
    assert write_atomic(d, {"a": (b"3", 0o644)})
    assert (d / "a").read_text() == "3"
    assert not (d / "sub").exists()
    assert not first.exists()


def test_a_pods_login_profile_keeps_the_containers_path(tmp_path: Path) -> None:
    # Found by the chaos campaign: KubeRay's Redis cleanup Job runs `bash -lc`, the host's Debian
    # /etc/profile set PATH, `python` (the pod environment's) was not found, the Job failed at once and a
    # GCS FT cluster's Redis keys were left behind.
    profile = tmp_path / "profile"
    profile.write_text(podspec.LOGIN_PROFILE)
    env = {"PATH": "/opt/pod-env/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        ["/bin/bash", "--noprofile", "--norc", "-c", f'. {profile}; echo "$PATH"'],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "/opt/pod-env/bin" in out.stdout.strip().split(":")
