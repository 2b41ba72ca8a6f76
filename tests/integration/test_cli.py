"""The `rayop` CLI against a real kube-apiserver: get, create, scale, delete, job submit (no Ray needed),
errors (not found, forbidden, missing CRDs), exec credentials and completion.

Commands run in-process (typer's runner) when nothing else runs in the test's event loop, and as
subprocesses next to the in-process operator."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from typer.testing import CliRunner, Result

from rayop.api.kinds import RAYCLUSTERS, RAYJOBS, RAYSERVICES
from rayop.base.objects import status_of
from rayop.cli.kube import explain_api_error
from rayop.cli.main import app
from rayop.local.plane import ControlPlane
from rayop.runtime.client import SERVICEACCOUNTS, ApiClient, ApiError, Resource, load_kubeconfig
from tests.exec_plugin import FakePlugin
from tests.helpers import eventually
from tests.integration.rayclusters import mark_ready, operator, pods_of, raycluster

T = TypeVar("T")
RAYSERVICE_YAML = (Path(__file__).parent / "data" / "rayservice-all-fields.yaml").read_text()
runner = CliRunner()


def sync(plane: ControlPlane, fn: Callable[[ApiClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with ApiClient(load_kubeconfig(plane.kubeconfig)) as kube:
            return await fn(kube)

    return asyncio.run(main())


def rayop(plane: ControlPlane, *args: str, kubeconfig: str | None = None) -> Result:
    argv = list(args)
    at = argv.index("--") if "--" in argv else len(argv)
    argv[at:at] = ["--kubeconfig", kubeconfig or str(plane.kubeconfig)]
    return runner.invoke(app, argv, env={"COLUMNS": "200"})


async def rayop_proc(plane: ControlPlane, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rayop.cli.main",
        *args,
        "--kubeconfig",
        str(plane.kubeconfig),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


# With the operator: a cluster from flags, listed, scaled and deleted ----------------------------------


async def test_create_get_scale_delete_with_the_operator(
    plane: ControlPlane, kube: ApiClient, namespace: str
) -> None:
    ns = namespace
    async with operator(kube, ns):
        code, out, err = await rayop_proc(
            plane, "create", "cluster", "demo", "-n", ns, "--worker-replicas", "2", "--worker-cpu", "1",
            "--worker-memory", "1Gi", "--head-cpu", "1", "--head-memory", "2Gi",
        )  # fmt: skip
        assert code == 0, err
        assert out.strip() == f"raycluster.ray.io/demo created in namespace {ns}"

        async def ready() -> bool:
            await mark_ready(kube, ns, "demo")
            return status_of(await kube.get(RAYCLUSTERS, "demo", ns)).get("state") == "ready"

        await eventually(ready, 60, interval=0.3, what="demo ready")
        code, out, err = await rayop_proc(plane, "get", "clusters", "-n", ns)
        assert code == 0, err
        rows = table(out)
        assert rows[0] == [
            "NAME",
            "DESIRED",
            "WORKERS",
            "AVAILABLE",
            "WORKERS",
            "CPUS",
            "GPUS",
            "MEMORY",
            "STATUS",
            "AGE",
        ]
        assert rows[1][:8] == ["demo", "2", "2", "3", "0", "4Gi", "ready", rows[1][7]]
        code, out, err = await rayop_proc(plane, "get", "workergroups", "-n", ns, "-c", "demo")
        assert table(out)[1] == [
            "default-group",
            "0",
            "2147483647",
            "2/2",
            "2",
            "0",
            "2Gi",
            "demo",
            "replicas",
        ], out
        code, out, err = await rayop_proc(plane, "get", "nodes", "-n", ns, "-o", "json")
        pods = json.loads(out)["items"]
        assert sorted(p["metadata"]["labels"]["ray.io/node-type"] for p in pods) == [
            "head",
            "worker",
            "worker",
        ]
        code, out, err = await rayop_proc(plane, "get", "nodes", "-n", ns)
        assert [r[2] for r in table(out)[1:]] == ["head", "worker", "worker"]
        assert all(r[4] == "Running" and r[7].startswith("10.1.0.") for r in table(out)[1:]), out

        code, out, err = await rayop_proc(
            plane, "scale", "cluster", "demo", "-n", ns, "--group", "default-group", "--replicas", "1"
        )
        assert code == 0, err
        assert "replicas 2 -> 1" in out
        await eventually(
            lambda: _count(pods_of(kube, ns, "demo", "worker"), 1), 60, what="scaled to one worker"
        )

        code, out, err = await rayop_proc(plane, "delete", "cluster", "demo", "-n", ns, "--wait")
        assert code == 0, err
        assert await kube.get_or_none(RAYCLUSTERS, "demo", ns) is None


async def _count(pods: Awaitable[list[dict[str, Any]]], n: int) -> bool:
    return len(await pods) == n


# Without the operator --------------------------------------------------------------------------------


def test_get_kinds_and_formats(plane: ControlPlane, namespace: str) -> None:
    ns = namespace
    r = rayop(plane, "get", "clusters", "-n", ns)
    assert r.exit_code == 0 and r.stdout == "" and f"No resources found in {ns} namespace." in r.stderr

    async def setup(kube: ApiClient) -> None:
        await kube.create(RAYCLUSTERS, raycluster("c1", ns, replicas=1, enableInTreeAutoscaling=True))
        job = {
            "apiVersion": "ray.io/v1",
            "kind": "RayJob",
            "metadata": {"name": "j1", "namespace": ns},
            "spec": {"entrypoint": "python x.py", "clusterSelector": {"ray.io/cluster": "c1"}},
        }
        created = await kube.create(RAYJOBS, job)
        created["status"] = {"jobStatus": "RUNNING", "jobDeploymentStatus": "Running", "rayClusterName": "c1",
                             "startTime": "2026-01-01T00:00:00Z", "endTime": "2026-01-01T00:02:05Z"}  # fmt: skip
        await kube.replace_status(RAYJOBS, created)
        svc = yaml.safe_load(RAYSERVICE_YAML)
        svc["metadata"] = {"name": "s1", "namespace": ns}
        await kube.create(RAYSERVICES, svc)

    sync(plane, setup)
    r = rayop(plane, "get", "jobs", "-n", ns)
    assert r.exit_code == 0, r.stderr
    assert table(r.stdout)[1][:5] == ["j1", "RUNNING", "Running", "c1", "2m5s"]
    r = rayop(plane, "get", "services", "-n", ns, "-o", "yaml")
    assert [o["metadata"]["name"] for o in yaml.safe_load(r.stdout)["items"]] == ["s1"]
    r = rayop(plane, "get", "clusters", "c1", "-n", ns, "-o", "json")
    assert json.loads(r.stdout)["metadata"]["name"] == "c1"
    r = rayop(plane, "get", "workergroups", "-A")
    mine = [row for row in table(r.stdout) if row[0] == ns]
    assert mine == [[ns, "workers", "0", "200", "0/1", "1", "0", "1Gi", "c1", "autoscaler"]], r.stdout
    r = rayop(plane, "get", "clusters", "nope", "-n", ns)
    assert r.exit_code == 1 and r.stderr.strip() == f'error: RayCluster "nope" not found in namespace "{ns}"'

    # Ray's autoscaler owns c1's replicas: scale refuses and says what to do.
    r = rayop(plane, "scale", "cluster", "c1", "-n", ns, "-g", "workers", "-r", "3")
    assert r.exit_code == 1 and "--min N --max M" in r.stderr
    r = rayop(plane, "scale", "cluster", "c1", "-n", ns, "-g", "workers", "--max", "10")
    assert r.exit_code == 0 and "max 200 -> 10" in r.stdout
    got = sync(plane, lambda k: k.get(RAYCLUSTERS, "c1", ns))
    assert got["spec"]["workerGroupSpecs"][0]["maxReplicas"] == 10

    r = rayop(plane, "create", "cluster", "c1", "-n", ns)
    assert r.exit_code == 1 and f'RayCluster "c1" already exists in namespace "{ns}"' in r.stderr

    r = rayop(
        plane,
        "job",
        "submit",
        "--name",
        "j2",
        "--cluster",
        "c1",
        "-n",
        ns,
        "--no-wait",
        "--",
        "python",
        "-c",
        "print(1)",
    )
    assert r.exit_code == 0, r.stderr
    j2 = sync(plane, lambda k: k.get(RAYJOBS, "j2", ns))
    assert j2["spec"]["clusterSelector"] == {"ray.io/cluster": "c1"}
    assert j2["spec"]["entrypoint"] == "python -c 'print(1)'"

    for kind, name in (("job", "j1"), ("service", "s1"), ("cluster", "c1")):
        r = rayop(plane, "delete", kind, name, "-n", ns)
        assert r.exit_code == 0, r.stderr
    r = rayop(plane, "delete", "job", "j1", "-n", ns)
    assert r.exit_code == 1 and 'RayJob "j1" not found' in r.stderr


def test_missing_crd_message_from_a_real_server(plane: ControlPlane) -> None:
    async def probe(kube: ApiClient) -> str:
        try:
            await kube.list(Resource("ray.io", "v1", "raywidgets", kind="RayWidget"), "default")
        except ApiError as e:
            return explain_api_error(e, kube.config.server)
        raise AssertionError("listed a kind that does not exist")

    assert "raywidgets.ray.io/v1 API is not installed on this cluster" in sync(plane, probe)


# Credentials: a service account's token, through an exec plugin ---------------------------------------


def _token(plane: ControlPlane, ns: str, sa: str) -> str:
    async def make(kube: ApiClient) -> str:
        await kube.create(
            SERVICEACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}}, ns
        )
        req = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        }
        out = await kube.request("POST", SERVICEACCOUNTS.path(ns, sa, "token"), body=req)
        return str(out["status"]["token"])

    return sync(plane, make)


def _kubeconfig_for(plane: ControlPlane, path: Path, user: dict[str, Any], ns: str) -> Path:
    doc = yaml.safe_load(plane.kubeconfig.read_text())
    doc["users"] = [{"name": "u", "user": user}]
    doc["contexts"] = [
        {"name": "sa", "context": {"cluster": doc["clusters"][0]["name"], "user": "u", "namespace": ns}}
    ]
    doc["current-context"] = "sa"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_forbidden_names_verb_and_resource(plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    token = _token(plane, namespace, "nobody")
    kc = _kubeconfig_for(plane, tmp_path / "config", {"token": token}, namespace)
    r = rayop(plane, "get", "clusters", kubeconfig=str(kc))
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith(
        f'error: forbidden: you may not list rayclusters.ray.io in namespace "{namespace}"'
    )
    assert "system:serviceaccount" in r.stderr and "Traceback" not in r.stderr


def test_exec_plugin_against_the_api_server(plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    token = _token(plane, namespace, "viewer")

    async def grant(kube: ApiClient) -> None:
        from rayop.runtime.client import ROLEBINDINGS, ROLES

        rules = [{"apiGroups": ["ray.io"], "resources": ["rayclusters"], "verbs": ["get", "list"]}]
        await kube.create(
            ROLES,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "v"},
                "rules": rules,
            },
            namespace,
        )
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "v"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "v"},
            "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": namespace}],
        }
        await kube.create(ROLEBINDINGS, binding, namespace)
        await kube.create(RAYCLUSTERS, raycluster("seen", namespace, replicas=0))

    sync(plane, grant)
    plugin = FakePlugin(tmp_path)
    # The first credential is refused (401): the client runs the plugin again and goes on with the next.
    plugin.answer([{"token": "not-a-valid-token"}, {"token": token}])
    kc = _kubeconfig_for(plane, tmp_path / "config", plugin.user(), namespace)
    r = rayop(plane, "get", "clusters", kubeconfig=str(kc))
    assert r.exit_code == 0, r.output
    assert table(r.stdout)[1][0] == "seen"
    assert len(plugin.runs) == 2
    # A plugin that fails is one line naming it.
    plugin.answer([{"exit": 1}])
    (tmp_path / "runs.jsonl").unlink()
    r = rayop(plane, "get", "clusters", kubeconfig=str(kc))
    assert r.exit_code == 1 and "error: exec plugin fake-plugin exited with code 1" in r.stderr


def test_completion_of_cluster_names(plane: ControlPlane, namespace: str) -> None:
    sync(plane, lambda k: k.create(RAYCLUSTERS, raycluster("alpha", namespace, replicas=0)))
    sync(plane, lambda k: k.create(RAYCLUSTERS, raycluster("beta", namespace, replicas=0)))
    words = f"rayop get clusters --kubeconfig {plane.kubeconfig} -n {namespace} al"
    env = {**os.environ, "_RAYOP_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": "7"}

    async def complete() -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rayop.cli.main", env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return out.decode()

    assert asyncio.run(complete()).split() == ["alpha"]
