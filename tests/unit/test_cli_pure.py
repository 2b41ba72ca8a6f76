"""The CLI's pure parts: table rows, generated manifests, scale plans, error messages, job outcomes,
working-directory packages."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from rayop.builders.generate import (
    DEFAULT_RAY_VERSION,
    ClusterShape,
    ShapeError,
    build_raycluster,
    build_rayjob,
    check_shape,
)
from rayop.cli import tables
from rayop.cli.jobwatch import StatusLine, entrypoint_of, format_elapsed, outcome, status_line
from rayop.cli.kube import CliError, explain_api_error, parse_api_path, render_table, verb_of
from rayop.cli.scale import plan_scale
from rayop.cli.targets import Ref, parse_ref
from rayop.ray.packages import MAX_PACKAGE_BYTES, PackageError, package_directory
from rayop.runtime.client import ApiError

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def ago(seconds: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-0.5, "0s"),
        (-3, "<invalid>"),
        (5, "5s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600 + 120, "3h2m"),
        (9 * 3600, "9h"),
        (50 * 3600, "2d2h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400 + 86400, "3y1d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration_is_kubectls(seconds: float, text: str) -> None:
    assert tables.human_duration(seconds) == text


def cluster(**spec: Any) -> dict[str, Any]:
    worker = {
        "groupName": "gpu",
        "replicas": 2,
        "minReplicas": 1,
        "maxReplicas": 4,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "w",
                        "resources": {"requests": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}},
                    }
                ]
            }
        },
    }
    return {
        "metadata": {"name": "c1", "namespace": "ns", "creationTimestamp": ago(90), "resourceVersion": "7"},
        "spec": {"workerGroupSpecs": [worker], **spec},
        "status": {
            "state": "ready",
            "desiredWorkerReplicas": 2,
            "availableWorkerReplicas": 1,
            "desiredCPU": "3",
            "desiredGPU": "2",
            "desiredMemory": "6Gi",
        },
    }


def pod(
    name: str, node_type: str, group: str, phase: str = "Running", ready: bool = True, **st: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "creationTimestamp": ago(30),
            "labels": {"ray.io/cluster": "c1", "ray.io/node-type": node_type, "ray.io/group": group},
        },
        "spec": {"containers": [{"name": "ray", "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]},
        "status": {
            "phase": phase,
            "podIP": "10.0.0.5" if phase == "Running" else None,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "ray", "ready": ready, "restartCount": 2}],
            **st,
        },
    }


def test_cluster_rows() -> None:
    assert tables.cluster_row(cluster(), NOW) == ["c1", "2", "1", "3", "2", "6Gi", "ready", "90s"]
    assert tables.cluster_row(cluster(), NOW, all_namespaces=True)[0] == "ns"
    assert tables.cluster_headers(True)[:2] == ["namespace", "name"]


def test_workergroups_count_ready_pods_and_totals() -> None:
    pods = [
        pod("h", "head", "headgroup"),
        pod("w1", "worker", "gpu"),
        pod("w2", "worker", "gpu", ready=False),
    ]
    (g,) = tables.worker_groups(cluster(), pods)
    assert (g.desired, g.ready, g.cpu, g.gpu, g.memory, g.scaled_by) == (2, 1, "2", "2", "4Gi", "replicas")
    assert tables.workergroup_row(g) == ["gpu", "1", "4", "1/2", "2", "2", "4Gi", "c1", "replicas"]
    (auto,) = tables.worker_groups(cluster(enableInTreeAutoscaling=True), pods)
    assert auto.scaled_by == "autoscaler"


def test_node_rows() -> None:
    waiting = {
        "containerStatuses": [
            {
                "name": "ray",
                "ready": False,
                "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            }
        ]
    }
    pods = [
        pod("w1", "worker", "gpu"),
        pod("h", "head", "headgroup"),
        pod("w0", "worker", "gpu", phase="Pending", ready=False, **waiting),
    ]
    pods.sort(key=tables.node_sort_key)
    rows = [tables.node_row(p, NOW) for p in pods]
    assert [r[0] for r in rows] == ["h", "w0", "w1"]
    assert rows[0] == [
        "h",
        "c1",
        "head",
        "headgroup",
        "Running",
        "1/1",
        "2",
        "10.0.0.5",
        "1",
        "0",
        "2Gi",
        "30s",
    ]
    assert rows[1][4:8] == ["CrashLoopBackOff", "0/1", "5", "<none>"]


def test_job_and_service_rows() -> None:
    job = {
        "metadata": {"name": "j", "creationTimestamp": ago(300)},
        "spec": {"clusterSelector": {"ray.io/cluster": "shared"}},
        "status": {"jobStatus": "RUNNING", "jobDeploymentStatus": "Running", "startTime": ago(125)},
    }
    assert tables.job_row(job, NOW) == ["j", "RUNNING", "Running", "shared", "2m5s", "5m"]
    svc = {
        "metadata": {"name": "s", "creationTimestamp": ago(10)},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "numServeEndpoints": 2,
                   "activeServiceStatus": {"rayClusterName": "s-abc"}},
    }  # fmt: skip
    assert tables.service_row(svc, NOW) == ["s", "Ready", "2", "s-abc", "", "10s"]


def test_render_table_is_kubectl_like() -> None:
    assert render_table(["name", "age"], [["a", "1s"], ["long-name", "2m"]]) == (
        "NAME        AGE\na           1s\nlong-name   2m\n"
    )


# Generated manifests ------------------------------------------------------------------------------


def test_default_ray_version_is_the_pinned_one() -> None:
    pinned = dict(
        line.split("=", 1)
        for line in (REPO / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert pinned["RAYOP_RAY_VERSION"] == DEFAULT_RAY_VERSION


def test_generated_cluster_shape() -> None:
    obj = build_raycluster(
        "demo", "ns", ClusterShape(worker_replicas=2, worker_gpu="1", head_cpu="1", labels={"team": "a"})
    )
    assert obj["metadata"] == {"name": "demo", "namespace": "ns", "labels": {"team": "a"}}
    spec = obj["spec"]
    assert spec["rayVersion"] == DEFAULT_RAY_VERSION and "enableInTreeAutoscaling" not in spec
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == f"rayproject/ray:{DEFAULT_RAY_VERSION}"
    assert head["resources"] == {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    assert {p["name"]: p["containerPort"] for p in head["ports"]}["dashboard"] == 8265
    (group,) = spec["workerGroupSpecs"]
    assert group["groupName"] == "default-group" and group["replicas"] == 2 and "minReplicas" not in group
    res = group["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"]["nvidia.com/gpu"] == "1" and res["limits"]["nvidia.com/gpu"] == "1"
    auto = build_raycluster("a", "ns", ClusterShape(autoscale=True, min_replicas=0, max_replicas=5))
    assert auto["spec"]["enableInTreeAutoscaling"] is True
    assert (
        auto["spec"]["workerGroupSpecs"][0]["minReplicas"],
        auto["spec"]["workerGroupSpecs"][0]["maxReplicas"],
    ) == (0, 5)


def test_generated_cluster_passes_admission_rules() -> None:
    from rayop.validation.registry import validate

    for shape in (ClusterShape(), ClusterShape(autoscale=True, max_replicas=3, worker_gpu="2")):
        obj = build_raycluster("demo", "ns", shape)
        # The API server fills CRD defaults before the webhook sees the object.
        for g in obj["spec"]["workerGroupSpecs"]:
            g.setdefault("minReplicas", 0)
            g.setdefault("maxReplicas", 2147483647)
        assert validate("RayCluster", obj) == []
    job = build_rayjob(
        "j", "ns", entrypoint="python a.py", submission_mode="InteractiveMode", shape=ClusterShape()
    )
    for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        g.setdefault("minReplicas", 0)
        g.setdefault("maxReplicas", 2147483647)
    assert validate("RayJob", job) == []


def test_bad_flags_are_all_named() -> None:
    errs = check_shape(
        ClusterShape(
            head_cpu="lots",
            worker_memory="-1Gi",
            worker_replicas=5,
            max_replicas=2,
            autoscale=True,
            min_replicas=3,
        )
    )
    text = "; ".join(errs)
    for part in (
        "--head-cpu 'lots'",
        "--worker-memory '-1Gi' must not be negative",
        "--min 3 must not be more than --max 2",
        "--worker-replicas 5 must not be more than --max 2",
    ):
        assert part in text
    assert "needs --max" in "; ".join(check_shape(ClusterShape(autoscale=True)))
    with pytest.raises(ShapeError):
        build_raycluster("x", "ns", ClusterShape(head_memory="0"))


def test_rayjob_on_a_selected_cluster() -> None:
    job = build_rayjob(
        "j", "ns", entrypoint="python -c 'print(1)'", submission_mode="K8sJobMode", cluster="shared"
    )
    assert job["spec"] == {
        "submissionMode": "K8sJobMode",
        "entrypoint": "python -c 'print(1)'",
        "clusterSelector": {"ray.io/cluster": "shared"},
    }
    with pytest.raises(ShapeError):
        build_rayjob(
            "j", "ns", entrypoint="x", submission_mode="K8sJobMode", cluster="c", shape=ClusterShape()
        )


# Scale -------------------------------------------------------------------------------------------


def test_scale_plan_patches_one_group_with_preconditions() -> None:
    plan = plan_scale(cluster(), "gpu", 3, None, None)
    assert plan.patch == [
        {"op": "test", "path": "/spec/workerGroupSpecs/0/groupName", "value": "gpu"},
        {"op": "add", "path": "/spec/workerGroupSpecs/0/replicas", "value": 3},
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "7"},
    ]
    assert plan.changes == ["replicas 2 -> 3"]
    assert plan_scale(cluster(), "gpu", 2, None, None).patch == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", 1, None, None), "has no worker group 'nope' \\(its groups: gpu\\)"),
        (("gpu", 9, None, None), "must not be more than maxReplicas 4"),
        (("gpu", 0, None, None), "must not be less than minReplicas 1"),
        (("gpu", None, 5, 3), "minReplicas 5 must not be more than maxReplicas 3"),
        (("gpu", -1, None, None), "--replicas -1 must not be negative"),
    ],
)
def test_scale_plan_refusals(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(CliError, match=message):
        plan_scale(cluster(), *args)


def test_scale_refused_while_the_autoscaler_owns_the_group() -> None:
    with pytest.raises(CliError, match=r"Ray's autoscaler sizes worker group gpu.*--min N --max M"):
        plan_scale(cluster(enableInTreeAutoscaling=True), "gpu", 3, None, None)
    plan = plan_scale(cluster(enableInTreeAutoscaling=True), "gpu", None, 0, 8)
    assert plan.changes == ["min 1 -> 0", "max 4 -> 8"]


# Errors ------------------------------------------------------------------------------------------


def test_api_paths_and_verbs() -> None:
    p = parse_api_path("https://h/apis/ray.io/v1/namespaces/ns/rayclusters/c1/status")
    assert (p.group, p.version, p.namespace, p.plural, p.name, p.sub) == (
        "ray.io",
        "v1",
        "ns",
        "rayclusters",
        "c1",
        "status",
    )
    assert p.resource == "rayclusters.ray.io/status"
    logs = parse_api_path("https://h/api/v1/namespaces/ns/pods/p/log")
    assert (logs.resource, verb_of("GET", logs)) == ("pods/log", "get")
    assert verb_of("GET", parse_api_path("https://h/apis/ray.io/v1/rayclusters")) == "list"
    assert verb_of("PATCH", p) == "patch"


def test_error_messages() -> None:
    nf = ApiError(404, {"reason": "NotFound", "message": "x", "details": {"name": "c1", "kind": "rayclusters"}}, "GET",
                  "https://h/apis/ray.io/v1/namespaces/ns/rayclusters/c1")  # fmt: skip
    assert explain_api_error(nf) == 'RayCluster "c1" not found in namespace "ns"'
    no_crd = ApiError(404, {"reason": "NotFound", "message": "the server could not find the requested resource"}, "GET",
                      "https://h/apis/ray.io/v1/namespaces/ns/rayclusters")  # fmt: skip
    assert "API is not installed on this cluster" in explain_api_error(no_crd, "https://h")
    forbidden = ApiError(403, {"reason": "Forbidden", "message": 'User "bob" cannot list resource "rayclusters"'}, "GET",
                         "https://h/apis/ray.io/v1/namespaces/team/rayclusters")  # fmt: skip
    assert explain_api_error(forbidden).startswith(
        'forbidden: you may not list rayclusters.ray.io in namespace "team"'
    )
    unauthorized = ApiError(
        401, {"reason": "Unauthorized", "message": "Unauthorized"}, "GET", "https://h/api/v1/pods"
    )
    assert explain_api_error(unauthorized, "https://h", "prod") == (
        "unauthorized: the API server at https://h rejected your credentials (context 'prod'); "
        "log in again or check the kubeconfig's user"
    )


def test_refs() -> None:
    assert parse_ref("demo", "cluster") == Ref("cluster", "demo")
    assert parse_ref("rayjob/j", "pod") == Ref("job", "j")
    assert parse_ref("service/s", "cluster") == Ref("service", "s")
    with pytest.raises(CliError):
        parse_ref("deployment/x", "pod")


# Jobs --------------------------------------------------------------------------------------------


def test_entrypoint_quoting() -> None:
    assert entrypoint_of(["python main.py --x 1"]) == "python main.py --x 1"
    assert entrypoint_of(["python", "-c", "print('a b')"]) == "python -c 'print('\"'\"'a b'\"'\"')'"


def test_outcomes() -> None:
    def job(**st: Any) -> dict[str, Any]:
        return {"metadata": {"name": "j"}, "status": st}

    assert outcome(job(jobStatus="RUNNING", jobDeploymentStatus="Running")) is None
    assert outcome(job(jobStatus="SUCCEEDED")).code == 0  # type: ignore[union-attr]
    failed = outcome(job(jobStatus="FAILED", message="boom"), driver_exit_code=3)
    assert failed is not None and failed.code == 3 and "boom" in failed.message
    assert outcome(job(jobStatus="FAILED")).code == 1  # type: ignore[union-attr]
    dl = outcome(job(jobDeploymentStatus="Failed", reason="DeadlineExceeded", message="too slow"))
    assert dl is not None and dl.code == 1 and "DeadlineExceeded, too slow" in dl.message
    assert format_elapsed(3725) == "1h02m"
    assert (
        status_line(job(jobDeploymentStatus="Running", jobStatus="RUNNING"), 65)
        == "RayJob j: Running, job RUNNING, 1m05s"
    )


def test_status_line_without_terminal_prints_changes_only() -> None:
    err, out = io.StringIO(), io.StringIO()
    line = StatusLine(err, out, tty=False)
    line.update("a 1s", "A")
    line.update("a 2s", "A")
    line.log("hello\n")
    line.update("b 3s", "B")
    assert err.getvalue() == "a 1s\nb 3s\n" and out.getvalue() == "hello\n"
    err, out = io.StringIO(), io.StringIO()
    tty = StatusLine(err, out, tty=True)
    tty.update("a 1s", "A")
    tty.log("x\n")
    assert out.getvalue() == "x\n" and err.getvalue() == "\r\x1b[Ka 1s\r\x1b[Ka 1s"


# Packages ----------------------------------------------------------------------------------------


def test_working_dir_package(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('hi')\n")
    (tmp_path / "app" / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "app" / "run.sh").chmod(0o755)
    (tmp_path / "app" / "data").mkdir()
    (tmp_path / "app" / "empty").mkdir()
    (tmp_path / "app" / "data" / "x.csv").write_text("1,2\n")
    (tmp_path / "app" / ".git").mkdir()
    (tmp_path / "app" / ".git" / "HEAD").write_text("ref\n")
    (tmp_path / "app" / "big.bin").write_bytes(b"0" * 10)
    pkg = package_directory(tmp_path / "app", excludes=["*.bin"])
    assert pkg.uri.startswith("gcs://_ray_pkg_") and pkg.uri.endswith(".zip")
    assert (pkg.protocol, pkg.files) == ("gcs", 3)
    with zipfile.ZipFile(io.BytesIO(pkg.data)) as zf:
        names = sorted(zf.namelist())
        assert names == ["data/x.csv", "empty/", "main.py", "run.sh"]
        assert (zf.getinfo("run.sh").external_attr >> 16) & 0o111
    again = package_directory(tmp_path / "app", excludes=["*.bin"])
    assert (again.uri, again.data) == (pkg.uri, pkg.data), "the same files make the same package"
    (tmp_path / "app" / "main.py").write_text("print('changed')\n")
    assert package_directory(tmp_path / "app", excludes=["*.bin"]).uri != pkg.uri
    with pytest.raises(PackageError, match="no such directory"):
        package_directory(tmp_path / "missing")
    assert MAX_PACKAGE_BYTES == 100 * 1024 * 1024


def test_scale_target_is_the_groups_rayworkergroup() -> None:
    from rayop.cli.scale import pick_scale_target

    rwgs = [
        {"metadata": {"name": "other-gpu"}, "spec": {"rayClusterName": "other", "groupName": "gpu"}},
        {
            "metadata": {"name": "svc-gpu"},
            "spec": {"rayServiceName": "svc", "groupName": "gpu"},
            "status": {"rayClusterName": "svc-raycluster-abcde"},
        },
        {"metadata": {"name": "c1-gpu"}, "spec": {"rayClusterName": "c1", "groupName": "gpu"}},
    ]
    assert pick_scale_target(rwgs, "c1", "gpu") is rwgs[2]
    assert pick_scale_target(rwgs, "svc-raycluster-abcde", "gpu") is rwgs[1]
    assert pick_scale_target(rwgs, "c1", "cpu") is None
    (g,) = tables.worker_groups(cluster(), [], {"gpu": "c1-gpu"})
    assert g.scaled_by == "rayworkergroup/c1-gpu"
    (auto,) = tables.worker_groups(cluster(enableInTreeAutoscaling=True), [], {"gpu": "c1-gpu"})
    assert auto.scaled_by == "autoscaler"


def test_local_up_audit_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from rayop.cli.local import audit_options

    state = tmp_path / "state"
    assert audit_options(state, None, None) == []
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Metadata}]\n")
    # Relative paths are made absolute: the API server does not run in the caller's folder.
    monkeypatch.chdir(tmp_path)
    args = audit_options(state, Path("policy.yaml"), None)
    assert f"--audit-policy-file={policy}" in args
    assert f"--audit-log-path={state / 'logs' / 'audit.log'}" in args
    assert "--audit-log-format=json" in args and "--audit-log-mode=blocking" in args
    assert (state / "logs").is_dir()
    assert f"--audit-log-path={tmp_path / 'a.log'}" in audit_options(state, policy, Path("a.log"))
    with pytest.raises(typer.BadParameter, match="needs --audit-policy-file"):
        audit_options(state, None, tmp_path / "a.log")
    with pytest.raises(typer.BadParameter, match="is not a file"):
        audit_options(state, tmp_path / "missing.yaml", None)
