"""The `rayop` CLI with real Ray on the local node agent: `job submit --working-dir` ships a local directory
and runs it (a failing script gives a non-zero exit), `logs` reads pods through the API server's
pods/log, `session` serves the head's dashboard on localhost through pods/portforward.

The CLI runs as a subprocess with the plane's kubeconfig; the operator runs in this process with
--use-kubernetes-proxy (the host has no cluster DNS), as `rayop local up` runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rayop.api.kinds import RAYJOBS
from rayop.local.plane import ControlPlane
from rayop.node.agent import NodeAgent
from rayop.runtime.client import ApiClient
from rayop.runtime.manager import Manager
from tests.e2e import test_node_agent as na
from tests.integration.rayjobs import operator

pytestmark = na.pytestmark
node_net = na.node_net
node_plane = na.node_plane
kube = na.kube
ns = na.ns

MAIN = """
import ray
import helper

ray.init()

@ray.remote
def square(x):
    return x * x

print("from the working dir:", helper.greet(open("data/name.txt").read().strip()), flush=True)
print("squares:", ray.get([square.remote(i) for i in range(4)]), flush=True)
"""
FAIL = """
import sys
print("about to fail", flush=True)
sys.exit(3)
"""


@pytest.fixture(scope="module")
async def node(node_plane: ControlPlane, node_net: dict[str, str]) -> AsyncIterator[NodeAgent]:
    state = Path(tempfile.mkdtemp(prefix="rayop-node-", dir="/var/tmp"))
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    agent, task = await na.start_agent(node_plane, node_net, state, cpu="16", memory="16Gi", default_env=env)
    try:
        yield agent
    finally:
        leftovers = await na.stop_agent(agent, task)
        assert leftovers == [], f"netns left behind: {leftovers}"


@pytest.fixture
async def op(node: NodeAgent, kube: ApiClient, ns: str) -> AsyncIterator[Manager]:
    async with operator(kube, ns, use_proxy=True) as mgr:
        yield mgr


async def rayop(plane: ControlPlane, *args: str, timeout: float = 300) -> tuple[int, str, str]:
    argv = list(args)
    at = argv.index("--") if "--" in argv else len(argv)
    argv[at:at] = ["--kubeconfig", str(plane.kubeconfig)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rayop.cli.main",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(
            f"rayop {' '.join(args)} did not finish: {out.decode()} {err.decode()}"
        ) from None
    return proc.returncode or 0, out.decode(), err.decode()


def working_dir(tmp: Path) -> Path:
    d = tmp / "app"
    (d / "data").mkdir(parents=True)
    (d / "main.py").write_text(textwrap.dedent(MAIN))
    (d / "fail.py").write_text(textwrap.dedent(FAIL))
    (d / "helper.py").write_text("def greet(name):\n    return f'hello {name}'\n")
    (d / "data" / "name.txt").write_text("rayop\n")
    return d


SMALL = ("--head-cpu", "1", "--head-memory", "2Gi", "--worker-replicas", "0")


async def test_job_submit_working_dir_logs_and_session(
    op: Manager, node_plane: ControlPlane, kube: ApiClient, ns: str, tmp_path: Path
) -> None:
    app = working_dir(tmp_path)
    code, out, err = await rayop(node_plane, "job", "submit", "--name", "ok", "-n", ns, "--working-dir", str(app),
                                 *SMALL, "--", "python", "main.py")  # fmt: skip
    assert code == 0, f"{out}\n{err}"
    assert "from the working dir: hello rayop" in out
    assert "squares: [0, 1, 4, 9]" in out
    assert "RayJob ok: Running, job RUNNING" in err and "RayJob ok succeeded" in err
    job = await kube.get(RAYJOBS, "ok", ns)
    assert job["spec"]["submissionMode"] == "InteractiveMode"
    assert job["status"]["jobStatus"] == "SUCCEEDED" and job["status"]["jobId"].startswith("ok-")
    cluster = job["status"]["rayClusterName"]

    # The same cluster, a script that fails: the command fails with the driver's exit code.
    code, out, err = await rayop(node_plane, "job", "submit", "--name", "bad", "-n", ns, "--cluster", cluster,
                                 "--working-dir", str(app), "--", "python", "fail.py")  # fmt: skip
    assert "about to fail" in out, f"{out}\n{err}"
    assert code == 3, f"{code}\n{out}\n{err}"
    assert "RayJob bad failed (exit code 3)" in err

    await check_logs(node_plane, ns, cluster)
    await check_session(node_plane, ns, cluster)


async def check_logs(plane: ControlPlane, ns: str, cluster: str) -> None:
    """`rayop logs cluster/NAME`: the head container's output through the API server."""
    code, out, err = await rayop(plane, "logs", f"cluster/{cluster}", "-n", ns, timeout=60)
    assert code == 0, err
    assert "Ray runtime started" in out or "ray start" in out.lower(), out[-2000:]
    code, out, err = await rayop(plane, "get", "nodes", "-n", ns, "-c", cluster, "-o", "json", timeout=60)
    head = json.loads(out)["items"][0]["metadata"]["name"]
    code, out, err = await rayop(plane, "logs", head, "-n", ns, "--tail", "1", timeout=60)
    assert code == 0 and len(out.strip().splitlines()) == 1, (out, err)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def check_session(plane: ControlPlane, ns: str, cluster: str) -> None:
    """`rayop session NAME` serves the dashboard on localhost until interrupted."""
    dash, client, serve = free_ports(3)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rayop.cli.main", "session", cluster, "-n", ns, "--kubeconfig", str(plane.kubeconfig),
        "--dashboard-port", str(dash), "--client-port", str(client), "--serve-port", str(serve),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    try:
        while not any("The dashboard answers" in line for line in lines):
            line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
            if not line:
                raise AssertionError(f"session ended: {lines} {(await proc.stderr.read()).decode()}")
            lines.append(line)
        assert f"  Ray Dashboard: http://localhost:{dash}\n" in lines, lines
        assert f"  Ray Interactive Client: ray://localhost:{client}\n" in lines, lines

        # aiohttp, not threads: the node agent runs in this process, and its kubelet API opens each
        # pod connection from the default executor, which blocking test threads would starve.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

            async def get(path: str) -> Any:
                async with http.get(f"http://127.0.0.1:{dash}{path}") as r:
                    assert r.status == 200, await r.text()
                    return await r.json(content_type=None)

            version = await get("/api/version")
            assert version["ray_version"] == "2.60.0"
            jobs = await get("/api/jobs/")
            assert {j["submission_id"].rsplit("-", 1)[0] for j in jobs} >= {"ok", "bad"}
            # Many connections at once, as a browser opens them.
            many = await asyncio.gather(*(get("/api/version") for _ in range(8)))
            assert all(v["ray_version"] == "2.60.0" for v in many)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 30)
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0, (await proc.stderr.read()).decode()


async def test_logs_follow_a_plain_pod(
    node: NodeAgent, node_plane: ControlPlane, kube: ApiClient, ns: str
) -> None:
    """`rayop logs -f` streams until the container exits (no Ray needed)."""
    from rayop.runtime.client import PODS

    script = "for i in 1 2 3; do echo line-$i; sleep 0.5; done"
    await kube.create(PODS, na.pod("counter", script), ns)
    await na.phase(kube, ns, "counter", "Running", "Succeeded", timeout=60)
    code, out, err = await rayop(node_plane, "logs", "counter", "-n", ns, "-f", timeout=60)
    assert code == 0, err
    assert out.split() == ["line-1", "line-2", "line-3"]
    code, out, err = await rayop(node_plane, "logs", "pod/nope", "-n", ns, timeout=60)
    assert code == 1 and f'error: pod "nope" not found in namespace "{ns}"' in err
