"""The node agent against a real control plane: hand-written Pods run as processes, like on a kubelet.

The plane here is this module's own (see tests/nodes.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rayop.base.procs import pid_alive
from rayop.builders.options import BuildOptions
from rayop.builders.pod import build_head_pod, build_worker_pod
from rayop.builders.service import build_head_service
from rayop.local.plane import ControlPlane
from rayop.node import containers
from rayop.node.agent import NodeAgent
from rayop.node.locate import locate
from rayop.node.logs import LogOptions, LogReader
from rayop.runtime.client import (
    CONFIGMAPS,
    JOBS,
    LEASES,
    NAMESPACES,
    NODES,
    PODS,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    ApiClient,
    load_kubeconfig,
)
from tests import nodes, rbac
from tests.helpers import eventually
from tests.nodes import RAY_ENV, free_subnet, needs_root, node_network, start_node_plane, stop_node_plane

Obj = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
pytestmark = needs_root
# Other modules and benchmarks use these through this module.
_free_subnet = free_subnet
start_agent = nodes.start_agent
stop_agent = nodes.stop_agent


@pytest.fixture(scope="module")
def node_net() -> dict[str, str]:
    return node_network()


@pytest.fixture(scope="module")
def node_plane(node_net: dict[str, str]) -> Iterator[ControlPlane]:
    cp = start_node_plane(node_net)
    try:
        rbac.enable(cp)
        yield cp
    finally:
        stop_node_plane(cp)


@pytest.fixture(scope="module")
async def node(node_plane: ControlPlane, node_net: dict[str, str]) -> AsyncIterator[NodeAgent]:
    state = Path(tempfile.mkdtemp(prefix="rayop-node-", dir="/var/tmp"))
    agent, task = await start_agent(node_plane, node_net, state, cpu="16", memory="16Gi")
    try:
        yield agent
    finally:
        leftovers = await stop_agent(agent, task)
        shutil.rmtree(state, ignore_errors=True)
        assert leftovers == [], f"netns left behind: {leftovers}"


@pytest.fixture
async def kube(node_plane: ControlPlane) -> AsyncIterator[ApiClient]:
    client = ApiClient(load_kubeconfig(node_plane.kubeconfig))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def ns(node: NodeAgent, kube: ApiClient) -> AsyncIterator[str]:
    name = f"n-{uuid.uuid4().hex[:8]}"
    await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    # Pods need the namespace's default ServiceAccount (admission) and its CA ConfigMap (token volume).
    await eventually(lambda: kube.get(SERVICEACCOUNTS, "default", name), 30, what="default SA")
    await eventually(lambda: kube.get(CONFIGMAPS, "kube-root-ca.crt", name), 30, what="kube-root-ca.crt")
    yield name
    await kube.delete(NAMESPACES, name, ignore_not_found=True)


def pod(name: str, script: str, *, restart: str = "Never", **spec: Any) -> Obj:
    c: Obj = {"name": "main", "image": "rayproject/ray:2.60.0", "command": ["bash", "-c", script]}
    c.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": spec.pop("labels", {"test": name})},
        "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 5, "containers": [c], **spec},
    }


async def phase(kube: ApiClient, ns: str, name: str, *want: str, timeout: float = 60) -> Obj:
    async def check() -> Obj | None:
        p = await kube.get(PODS, name, ns)
        return p if (p.get("status") or {}).get("phase") in want else None

    result: Obj = await eventually(check, timeout, 0.2, what=f"pod {name} in {want}")
    return result


async def logs(kube: ApiClient, ns: str, name: str, container: str | None = None) -> str:
    loc = await locate(kube, ns, name, container)
    return LogReader(loc.log_path, LogOptions()).read(1 << 30).decode(errors="replace")


def ready(p: Obj) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (p.get("status") or {}).get("conditions") or []
    )


# --- plain pods --------------------------------------------------------------------------------------


async def test_pod_runs_and_reports_exit_codes(node: NodeAgent, kube: ApiClient, ns: str) -> None:
    await kube.create(PODS, pod("ok", "echo hello from $(hostname)"), ns)
    await kube.create(PODS, pod("bad", "echo failing; exit 3"), ns)
    ok = await phase(kube, ns, "ok", "Succeeded")
    st = ok["status"]
    assert st["podIP"].startswith(node.network.cidr.rsplit(".", 1)[0])
    assert st["hostIP"] == node.network.gateway
    assert st["startTime"]
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (0, "Completed")
    assert ok["spec"]["nodeName"] == node.cfg.name
    assert "hello from ok" in await logs(kube, ns, "ok")
    bad = await phase(kube, ns, "bad", "Failed")
    term = bad["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (3, "Error")
    assert "failing" in await logs(kube, ns, "bad")


async def test_a_login_shell_keeps_the_pods_environment(node: NodeAgent, kube: ApiClient, ns: str) -> None:
    # KubeRay's Redis cleanup Job (and ENABLE_LOGIN_SHELL) run `bash -lc`: the host's /etc/profile must not
    # take the pod environment's `python` off PATH.
    lc = pod("login", "")
    lc["spec"]["containers"][0]["command"] = ["/bin/bash", "-lc", "--", "python -c 'print(6 * 7)'"]
    await kube.create(PODS, lc, ns)
    done = await phase(kube, ns, "login", "Succeeded", "Failed")
    assert done["status"]["phase"] == "Succeeded", await logs(kube, ns, "login")
    assert await logs(kube, ns, "login") == "42\n"


async def test_env_volumes_and_service_account(node: NodeAgent, kube: ApiClient, ns: str) -> None:
    await kube.create(
        CONFIGMAPS,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg"},
            "data": {"k1": "v1", "app.conf": "x=1"},
        },
        ns,
    )
    await kube.create(
        SECRETS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "sec"},
            "data": {"password": base64.b64encode(b"s3cret").decode()},
        },
        ns,
    )
    check_sa = (
        "import json,os,ssl,urllib.request;"
        "d='/var/run/secrets/kubernetes.io/serviceaccount/';"
        "ctx=ssl.create_default_context(cafile=d+'ca.crt');"
        "h,p=os.environ['KUBERNETES_SERVICE_HOST'],os.environ['KUBERNETES_SERVICE_PORT'];"
        "req=urllib.request.Request(f'https://{h}:{p}/apis/authentication.k8s.io/v1/selfsubjectreviews',"
        "data=json.dumps({'apiVersion':'authentication.k8s.io/v1','kind':'SelfSubjectReview'}).encode(),"
        "headers={'Authorization':'Bearer '+open(d+'token').read(),'Content-Type':'application/json'});"
        "print('WHOAMI', json.load(urllib.request.urlopen(req,context=ctx))['status']['userInfo']['username'])"
    )
    script = "; ".join(
        [
            "echo HOST $(hostname)",
            "echo PWD $(pwd)",
            "echo ENV $GREETING $MY_NAME $MY_IP $MEM_MI $PW $CM_k1 $K1",
            "echo CM $(cat /etc/cfg/app.conf)",
            "echo SEC $(cat /etc/sec/password)",
            "echo LABELS $(cat /etc/podinfo/labels)",
            "echo SHM $(stat -f -c %T /dev/shm) CACHE $(stat -f -c %T /cache)",
            "echo SHARED $(cat /shared/from-init)",
            "echo TMP $(test -e /tmp/init-only && echo shared || echo private) HOME $HOME",
            f'python -c "{check_sa}"',
            "echo PY $(command -v python)",
            "echo CGROUP $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)",
        ]
    )
    spec = pod(
        "env",
        script,
        serviceAccountName="default",
        container={
            "workingDir": "/work/dir",
            "env": [
                {"name": "WHO", "value": "world"},
                {"name": "GREETING", "value": "hello-$(WHO)"},
                {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {
                    "name": "MEM_MI",
                    "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                },
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                {"name": "K1", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k1"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}],
            "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
            "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/cfg"},
                {"name": "sec", "mountPath": "/etc/sec", "readOnly": True},
                {"name": "podinfo", "mountPath": "/etc/podinfo"},
                {"name": "shm", "mountPath": "/dev/shm"},
                {"name": "cache", "mountPath": "/cache"},
                {"name": "shared", "mountPath": "/shared"},
            ],
        },
        initContainers=[
            {
                "name": "init",
                "image": "busybox",
                "command": ["bash", "-c", "echo written-by-init > /shared/from-init; touch /tmp/init-only"],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            }
        ],
        volumes=[
            {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "app.conf", "path": "app.conf"}]}},
            {"name": "sec", "secret": {"secretName": "sec"}},
            {
                "name": "podinfo",
                "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
            },
            {"name": "shm", "emptyDir": {"medium": "Memory"}},
            {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "shared", "emptyDir": {}},
        ],
    )
    created = await kube.create(PODS, spec, ns)
    # The ServiceAccount admission plugin added the token volume; the agent fills it through TokenRequest.
    assert any(v["name"].startswith("kube-api-access-") for v in created["spec"]["volumes"])
    done = await phase(kube, ns, "env", "Succeeded", "Failed")
    out = await logs(kube, ns, "env")
    assert done["status"]["phase"] == "Succeeded", out
    ip = done["status"]["podIP"]
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert lines["HOST"] == "env"
    assert lines["PWD"] == "/work/dir"
    assert lines["ENV"] == f"hello-world env {ip} 256 s3cret v1 v1"
    assert lines["CM"] == "x=1"
    assert lines["SEC"] == "s3cret"
    assert 'test="env"' in lines["LABELS"]
    assert lines["SHM"] == "tmpfs CACHE tmpfs"
    assert lines["SHARED"] == "written-by-init"
    assert lines["TMP"] == "private HOME /tmp/.home", "each container has its own /tmp and home"
    assert lines["WHOAMI"] == f"system:serviceaccount:{ns}:default"
    assert lines["PY"] == str(RAY_ENV / "bin" / "python")
    if node.cgroups.root is not None:
        # The memory limit is enforced, and visible where Ray reads it.
        assert lines["CGROUP"] == str(256 * 2**20)
    init = done["status"]["initContainerStatuses"][0]["state"]["terminated"]
    assert init["exitCode"] == 0


async def test_missing_secret_is_a_config_error(node: NodeAgent, kube: ApiClient, ns: str) -> None:
    spec = pod(
        "nosecret",
        "true",
        container={"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]},
    )
    await kube.create(PODS, spec, ns)

    async def waiting() -> str | None:
        p = await kube.get(PODS, "nosecret", ns)
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            return str(cs["state"].get("waiting", {}).get("reason") or "") or None
        return None

    assert await eventually(waiting, 30, what="waiting reason") == "CreateContainerConfigError"


async def test_service_names_resolve_inside_pods(node: NodeAgent, kube: ApiClient, ns: str) -> None:
    server = pod(
        "web",
        "exec python -m http.server 8080",
        restart="Always",
        labels={"app": "web"},
        container={
            "ports": [{"containerPort": 8080, "name": "http"}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        },
    )
    await kube.create(PODS, server, ns)
    for name, cluster_ip in (("web", None), ("web-headless", "None")):
        svc: Obj = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080, "targetPort": 8080}]},
        }
        if cluster_ip:
            svc["spec"]["clusterIP"] = cluster_ip
        await kube.create(SERVICES, svc, ns)
    names = ["web", f"web.{ns}", f"web.{ns}.svc", f"web.{ns}.svc.cluster.local", f"web-headless.{ns}.svc"]
    fetch = "; ".join(
        f"until python -c \"import urllib.request; urllib.request.urlopen('http://{n}:8080/', timeout=2)\" "
        f"2>/dev/null; do sleep 0.3; done; echo OK {n} $(getent hosts {n} | awk '{{print $1}}')"
        for n in names
    )
    await kube.create(PODS, pod("client", fetch), ns)
    done = await phase(kube, ns, "client", "Succeeded", "Failed", timeout=90)
    web = await kube.get(PODS, "web", ns)
    assert ready(web)
    out = await logs(kube, ns, "client")
    assert done["status"]["phase"] == "Succeeded", out
    for n in names:
        assert f"OK {n} {web['status']['podIP']}" in out


async def test_readiness_probe_and_exec(
    node: NodeAgent, node_plane: ControlPlane, kube: ApiClient, ns: str
) -> None:
    spec = pod(
        "probe",
        "exec sleep 600",
        restart="Always",
        container={
            "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1},
        },
    )
    await kube.create(PODS, spec, ns)
    p = await phase(kube, ns, "probe", "Running")
    assert not ready(p)
    loc = await locate(kube, ns, "probe", None)
    code, out = await containers.exec_in(
        loc.pid, loc.spec_path, ["bash", "-c", "hostname; touch /tmp/ready"], 10
    )
    assert (code, out.decode().strip()) == (0, "probe")

    async def is_ready() -> bool:
        return ready(await kube.get(PODS, "probe", ns))

    await eventually(is_ready, 30, 0.2, what="Ready after the probe passes")
    # The same through the command line, as a user runs it: exit codes pass through.
    code, out_s, err_s = await rayop_cli(
        node_plane, "exec", "probe", "-n", ns, "--", "bash", "-c", "rm /tmp/ready; echo $HOSTNAME; exit 7"
    )
    assert (code, out_s.strip()) == (7, "probe"), err_s

    async def unready() -> bool:
        return not ready(await kube.get(PODS, "probe", ns))

    await eventually(unready, 30, 0.2, what="not Ready once the probe fails")


async def test_node_is_ready_with_a_fresh_lease(node: NodeAgent, kube: ApiClient) -> None:
    n = await kube.get(NODES, node.cfg.name)
    conds = {c["type"]: c["status"] for c in n["status"]["conditions"]}
    assert conds["Ready"] == "True"
    assert n["status"]["allocatable"]["cpu"] == "16"
    assert {"type": "InternalIP", "address": node.network.gateway} in n["status"]["addresses"]
    lease = await kube.get(LEASES, node.cfg.name, "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == node.cfg.name
    first = lease["spec"]["renewTime"]

    async def renewed() -> bool:
        return bool((await kube.get(LEASES, node.cfg.name, "kube-node-lease"))["spec"]["renewTime"] != first)

    await eventually(renewed, node.cfg.lease_seconds, 0.5, what="lease renewal")


async def test_liveness_failure_restarts_the_container(node: NodeAgent, kube: ApiClient, ns: str) -> None:
    spec = pod(
        "sick",
        "touch /tmp/alive; exec sleep 600",
        restart="Always",
        container={
            "livenessProbe": {
                "exec": {"command": ["bash", "-c", "test -f /tmp/alive && rm /tmp/alive"]},
                "periodSeconds": 1,
                "failureThreshold": 1,
            }
        },
    )
    await kube.create(PODS, spec, ns)

    async def restarted() -> Obj | None:
        p = await kube.get(PODS, "sick", ns)
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            if cs["restartCount"] >= 1:
                found: Obj = cs
                return found
        return None

    cs = await eventually(restarted, 60, 0.2, what="restart after a failed liveness probe")
    assert cs["lastState"]["terminated"]["exitCode"] == 143  # SIGTERM to the process group


async def rayop_cli(plane: ControlPlane, *args: str) -> tuple[int, str, str]:
    """`rayop logs|exec ...` as a user runs them (the podcmds group on its own, as main wires it)."""
    code = "import typer; from rayop.cli import podcmds; a=typer.Typer(); podcmds.register(a); a()"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_restart_on_failure_with_back_off(
    node: NodeAgent, node_plane: ControlPlane, kube: ApiClient, ns: str
) -> None:
    # Fails on its first run only: the marker lives in an emptyDir, which survives container restarts.
    script = "if [ -f /state/ran ]; then echo second; exit 0; fi; touch /state/ran; echo first; exit 1"
    spec = pod(
        "flaky",
        script,
        restart="OnFailure",
        container={"volumeMounts": [{"name": "state", "mountPath": "/state"}]},
        volumes=[{"name": "state", "emptyDir": {}}],
    )
    await kube.create(PODS, spec, ns)
    p = await phase(kube, ns, "flaky", "Succeeded", timeout=60)
    cs = p["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert await rayop_cli(node_plane, "logs", "flaky", "-n", ns) == (0, "second\n", "")
    assert await rayop_cli(node_plane, "logs", "flaky", "-n", ns, "--previous") == (0, "first\n", "")
    code, _, err = await rayop_cli(node_plane, "exec", "flaky", "-n", ns, "--", "true")
    assert code == 1 and "is not running" in err


async def test_unschedulable_pod_stays_pending(node: NodeAgent, kube: ApiClient, ns: str) -> None:
    spec = pod("huge", "true", container={"resources": {"requests": {"cpu": "100"}}})
    await kube.create(PODS, spec, ns)

    async def unschedulable() -> Obj | None:
        p = await kube.get(PODS, "huge", ns)
        for c in (p.get("status") or {}).get("conditions") or []:
            if c["type"] == "PodScheduled" and c["status"] == "False":
                found: Obj = c
                return found
        return None

    cond = await eventually(unschedulable, 30, 0.2, what="PodScheduled=False")
    assert cond["reason"] == "Unschedulable"
    assert "Insufficient cpu" in cond["message"]
    assert not (await kube.get(PODS, "huge", ns))["spec"].get("nodeName")


async def test_deletion_terminates_gracefully_and_cleans_up(
    node: NodeAgent, kube: ApiClient, ns: str, tmp_path: Path
) -> None:
    # A daemonised child in its own session, as Ray's start command leaves them: it must not survive.
    script = "setsid sleep 900 & trap 'echo got SIGTERM > /out/term; exit 0' TERM; sleep 900 & wait"
    spec = pod(
        "victim",
        script,
        restart="Always",
        container={"volumeMounts": [{"name": "out", "mountPath": "/out"}]},
        volumes=[{"name": "out", "hostPath": {"path": str(tmp_path)}}],
    )
    await kube.create(PODS, spec, ns)
    p = await phase(kube, ns, "victim", "Running")
    uid = p["metadata"]["uid"]
    netns = node.workers[uid].state.netns
    pids = await eventually(lambda: len(node.pod_processes(uid)) >= 4 and node.pod_processes(uid), 10)
    await kube.delete(PODS, "victim", ns, grace_period=10)

    async def gone() -> bool:
        return await kube.get_or_none(PODS, "victim", ns) is None

    await eventually(gone, 30, 0.2, what="pod object removed")
    assert not any(pid_alive(pid) for pid in pids)
    assert netns not in node.network.own_netns()
    # SIGTERM reached the process group first (the trap ran), the rest went with the PID namespace.
    assert (tmp_path / "term").read_text() == "got SIGTERM\n"


async def test_job_runs_to_complete(node: NodeAgent, kube: ApiClient, ns: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hello"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": "x", "command": ["python", "-c", "print(sum(range(10)))"]}
                    ],
                }
            },
        },
    }
    await kube.create(JOBS, job, ns)

    async def complete() -> bool:
        j = await kube.get(JOBS, "hello", ns)
        return any(
            c["type"] == "Complete" and c["status"] == "True"
            for c in (j.get("status") or {}).get("conditions") or []
        )

    await eventually(complete, 90, 0.3, what="Job Complete")
    pods = await kube.list(PODS, ns, label_selector="job-name=hello")
    assert await logs(kube, ns, pods["items"][0]["metadata"]["name"]) == "45\n"


async def test_agent_restart_readopts_running_pods(
    node_plane: ControlPlane, kube: ApiClient, ns: str
) -> None:
    # A second node of its own, so stopping its agent leaves the module's node alone.
    x = _free_subnet()
    tag = f"{(os.getpid() + 1) % 100000}"
    net = {"cidr": f"10.213.{x}.0/24", "gateway": f"10.213.{x}.1", "bridge": f"rt{tag}", "name": f"e2e-{tag}"}
    state = Path(tempfile.mkdtemp(prefix="rayop-node2-", dir="/var/tmp"))
    agent, task = await start_agent(node_plane, net, state, cleanup_on_stop=False)
    try:
        spec = pod(
            "survivor",
            "exec sleep 900",
            restart="Always",
            nodeSelector={"kubernetes.io/hostname": net["name"]},
        )
        await kube.create(PODS, spec, ns)
        p = await phase(kube, ns, "survivor", "Running")
        uid = p["metadata"]["uid"]
        before = agent.workers[uid].state.containers["main"].pid
        await stop_agent(agent, task)
        assert pid_alive(before), "pods outlive an agent stopped with cleanup_on_stop=False"
        agent, task = await start_agent(node_plane, net, state)
        w = await eventually(lambda: agent.workers.get(uid), 30, what="re-adopted worker")
        assert w.state.containers["main"].pid == before
        await kube.delete(PODS, "survivor", ns, grace_period=1)
        await eventually(lambda: not pid_alive(before), 30, what="container stopped")
        p2 = await kube.get_or_none(PODS, "survivor", ns)
        assert p2 is None or p2["status"]["containerStatuses"][0]["restartCount"] == 0
    finally:
        agent.cfg.cleanup_on_stop = True
        leftovers = await stop_agent(agent, task)
        shutil.rmtree(state, ignore_errors=True)
    assert leftovers == []


# --- a real Ray cluster ------------------------------------------------------------------------------


def ray_cluster_objects(ns: str) -> tuple[Obj, Obj, list[Obj]]:
    """The example RayCluster's head Service, head Pod and two worker Pods, as the operator builds them
    (without owner references: no RayCluster object exists here, and the GC would delete orphans)."""
    cluster = yaml.safe_load((REPO / "examples" / "raycluster.yaml").read_text())
    cluster["metadata"].update(namespace=ns, uid=str(uuid.uuid4()))
    opts = BuildOptions()

    def strip(o: Obj) -> Obj:
        o["metadata"].pop("ownerReferences", None)
        o["metadata"]["namespace"] = ns
        return o

    group = cluster["spec"]["workerGroupSpecs"][0]
    svc = strip(build_head_service(cluster, opts))
    head = strip(build_head_pod(cluster, opts))
    workers = [strip(build_worker_pod(cluster, group, opts, replica_index=i)) for i in range(2)]
    return svc, head, workers


async def diagnose(kube: ApiClient, ns: str, names: list[str]) -> str:
    out = []
    for n in names:
        p = await kube.get(PODS, n, ns)
        conds = {c["type"]: c["status"] for c in p["status"].get("conditions") or []}
        out.append(f"{n}: {p['status'].get('phase')} {conds}")
        for c in p["spec"].get("initContainers", []) + p["spec"]["containers"]:
            with contextlib.suppress(Exception):
                text = (await logs(kube, ns, n, c["name"]))[-1500:]
                out.append(f"--- {c['name']}:\n{text}")
    return "\n".join(out)


TASK_ON_WORKERS = """
import socket, ray
ray.init()
@ray.remote(num_cpus=1)
def where():
    import time; time.sleep(1)
    return socket.gethostname()
hosts = ray.get([where.options(scheduling_strategy="SPREAD").remote() for _ in range(6)])
print("HOSTS", " ".join(sorted(set(hosts))))
"""


@pytest.mark.skipif(not (RAY_ENV / "bin" / "ray").exists(), reason="no Ray environment")
async def test_ray_cluster_forms_from_kuberay_pods(node: NodeAgent, kube: ApiClient, ns: str) -> None:
    svc, head, workers = ray_cluster_objects(ns)
    await kube.create(SERVICES, svc, ns)
    names = [(await kube.create(PODS, p, ns))["metadata"]["name"] for p in (head, *workers)]

    async def all_ready() -> bool:
        return all([ready(await kube.get(PODS, n, ns)) for n in names])

    try:
        # Generous: the machine is shared, and three Ray nodes starting at once on 2 cores take a while.
        await eventually(all_ready, 420, 1.0, what="head and workers Ready")
    except AssertionError:
        raise AssertionError(await diagnose(kube, ns, names)) from None
    loc = await locate(kube, ns, names[0], "ray-head")
    code, out = await containers.exec_in(loc.pid, loc.spec_path, ["ray", "status"], 60)
    text = out.decode(errors="replace")
    assert code == 0, text
    # "Active:" / "Idle:" list "<count> <node type>" lines: 1 headgroup + 2 workers.
    nodes = text.split("Active:", 1)[1].split("Pending:", 1)[0]
    counts = [int(line.split()[0]) for line in nodes.splitlines() if line.strip()[:1].isdigit()]
    assert sum(counts) == 3, text
    code, out = await containers.exec_in(loc.pid, loc.spec_path, ["python", "-c", TASK_ON_WORKERS], 120)
    text = out.decode(errors="replace")
    assert code == 0, text
    hosts = text.split("HOSTS", 1)[1].split()
    assert any(h in names[1:] for h in hosts), text
    # Deleting the pods stops every Ray process and removes their network namespaces.
    uids = [(await kube.get(PODS, n, ns))["metadata"]["uid"] for n in names]
    procs = [pid for uid in uids for pid in node.pod_processes(uid)]
    netns = [node.workers[uid].state.netns for uid in uids]
    assert len(procs) > 20
    for n in names:
        await kube.delete(PODS, n, ns)

    async def all_gone() -> bool:
        return all([await kube.get_or_none(PODS, n, ns) is None for n in names])

    await eventually(all_gone, 120, 0.5, what="pods gone")
    assert not any(pid_alive(p) for p in procs)
    assert not set(netns) & set(node.network.own_netns())


# --- Ray's autoscaler, in the head pod, as the pod's ServiceAccount -------------------------------------

DEMAND = """
import socket, time, ray
ray.init()
@ray.remote(num_cpus=1)
def work():
    time.sleep(3)
    return socket.gethostname()
print("HOSTS", " ".join(sorted(set(ray.get([work.remote() for _ in range(2)])))))
"""


@pytest.mark.skipif(not (RAY_ENV / "bin" / "ray").exists(), reason="no Ray environment")
@pytest.mark.parametrize("version", ["v2", "v1"])
async def test_autoscaler_scales_real_pods(node: NodeAgent, kube: ApiClient, ns: str, version: str) -> None:
    from tests.integration.rayjobs import RAYCLUSTERS, operator

    rc = yaml.safe_load((REPO / "examples" / "raycluster-autoscaler.yaml").read_text())
    rc["spec"]["autoscalerOptions"]["version"] = version
    rc["spec"]["autoscalerOptions"]["idleTimeoutSeconds"] = 20
    name = rc["metadata"]["name"]
    async with operator(kube, ns):
        await kube.create(RAYCLUSTERS, rc, ns)

        async def state_ready() -> bool:
            rc_now = await kube.get(RAYCLUSTERS, name, ns)
            return (rc_now.get("status") or {}).get("state") == "ready"

        await eventually(state_ready, 300, 1.0, what="RayCluster ready")
        heads = await kube.list(PODS, ns, label_selector=f"ray.io/cluster={name},ray.io/node-type=head")
        head = heads["items"][0]["metadata"]["name"]
        loc = await locate(kube, ns, head, "ray-head")
        # The head advertises no CPU: the autoscaler must add workers through the RayCluster's replicas.
        code, out = await containers.exec_in(loc.pid, loc.spec_path, ["python", "-c", DEMAND], 400)
        text = out.decode(errors="replace")
        assert code == 0, text + (await logs(kube, ns, head, "autoscaler"))[-3000:]
        hosts = text.split("HOSTS", 1)[1].split()
        assert hosts and all("-small-worker-" in h for h in hosts), text
        rc_now = await kube.get(RAYCLUSTERS, name, ns)
        assert rc_now["spec"]["workerGroupSpecs"][0]["replicas"] >= 1
        workers = {
            p["metadata"]["name"]
            for p in (
                await kube.list(PODS, ns, label_selector=f"ray.io/cluster={name},ray.io/node-type=worker")
            )["items"]
        }
        assert set(hosts) <= workers

        # Idle workers go away again: the autoscaler names them in workersToDelete, the operator deletes
        # them, and the node agent stops their processes.
        async def scaled_down() -> bool:
            left = await kube.list(PODS, ns, label_selector=f"ray.io/cluster={name},ray.io/node-type=worker")
            return not left["items"]

        await eventually(scaled_down, 240, 1.0, what="idle workers removed")
        await kube.delete(RAYCLUSTERS, name, ns)

        async def all_gone() -> bool:
            return not (await kube.list(PODS, ns, label_selector=f"ray.io/cluster={name}"))["items"]

        await eventually(all_gone, 120, 1.0, what="cluster pods removed")
