"""`rayop local up` as a user runs it, then what a user looks at first: `kubectl logs` of a Ray head (through
the API server and the node agent's kubelet API) and `kubectl top` (metrics-server behind its APIService).

The plane gets its own state folder, node name, pod network and bridge, so it never touches a local plane
the user runs on the same machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rayop.local import metrics_server
from rayop.local.plane import default_bin_dir
from tests.helpers import wait_for
from tests.nodes import RAY_ENV, needs_root, node_network

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    needs_root,
    pytest.mark.skipif(not (RAY_ENV / "bin" / "ray").exists(), reason="no Ray environment"),
    pytest.mark.skipif(not metrics_server.binary_path().exists(), reason="no metrics-server (make deps)"),
]

HEAD_ONLY = {
    "apiVersion": "ray.io/v1",
    "kind": "RayCluster",
    "metadata": {"name": "observed"},
    "spec": {
        "headGroupSpec": {
            "rayStartParams": {},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "ray-head",
                            "image": "rayproject/ray:2.60.0",
                            "resources": {"limits": {"cpu": "1", "memory": "2Gi"}},
                        }
                    ]
                }
            },
        }
    },
}


def pod(name: str, script: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "python:3", "command": ["bash", "-c", script]}],
        },
    }


@dataclass
class Local:
    dir: Path
    node: str

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(default_bin_dir() / "kubectl"), f"--kubeconfig={self.dir / 'kubeconfig'}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen_kubectl(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(default_bin_dir() / "kubectl"), f"--kubeconfig={self.dir / 'kubeconfig'}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rayop.cli.main", *args], capture_output=True, text=True, timeout=600, cwd=REPO
    )


@pytest.fixture(scope="module")
def local() -> Iterator[Local]:
    net = node_network("top")
    # Not under /tmp: pods get a private /tmp, which would hide their volumes kept in the state folder.
    state = Path(tempfile.mkdtemp(prefix="rayop-local-e2e-", dir="/var/tmp"))
    up = _cli(
        "local",
        "up",
        "--dir",
        str(state),
        "--node-name",
        net["name"],
        "--pod-cidr",
        net["cidr"],
        "--bridge",
        net["bridge"],
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "metrics-server" in up.stdout
        lp = Local(state, net["name"])
        # Start what the tests look at at once: Ray takes a while to come up on a loaded machine.
        out = lp.kubectl("apply", "-f", "-", input=json.dumps(HEAD_ONLY))
        assert out.returncode == 0, out.stderr
        for name, script in (
            ("burner", "timeout 150 python3 -c 'while True: pass'; exec sleep 600"),
            ("idle", "exec sleep 600"),
        ):
            out = lp.kubectl("apply", "-f", "-", input=json.dumps(pod(name, script)))
            assert out.returncode == 0, out.stderr
        yield lp
    finally:
        down = _cli("local", "down", "--dir", str(state))
        shutil.rmtree(state, ignore_errors=True)
    assert down.returncode == 0, down.stderr


def test_metrics_apiservice_is_available(local: Local) -> None:
    out = local.kubectl("get", "apiservice", metrics_server.APISERVICE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[1].split()[2] == "True", out.stdout


def _top(local: Local, what: str) -> dict[str, int]:
    """CPU in millicores per name, from `kubectl top pods|nodes`."""
    out = local.kubectl("top", what, "--no-headers")
    if out.returncode != 0:
        return {}
    cpu = {}
    for line in out.stdout.splitlines():
        name, value = line.split()[:2]
        cpu[name] = int(value[:-1]) if value.endswith("m") else int(float(value) * 1000)
    return cpu


def test_kubectl_top_shows_the_busy_and_the_idle_pod(local: Local) -> None:
    def running() -> bool:
        out = local.kubectl("get", "pods", "burner", "idle", "-o", "jsonpath={.items[*].status.phase}")
        return out.stdout.split() == ["Running", "Running"]

    wait_for(running, 90, 0.5, what="burner and idle running")
    t0 = time.monotonic()

    def measured() -> dict[str, int] | None:
        cpu = _top(local, "pods")
        return cpu if cpu.get("burner", 0) >= 100 and "idle" in cpu else None

    cpu = wait_for(measured, 60, 1.0, what="kubectl top pods with the burner busy")
    print(f"\nkubectl top pods after {time.monotonic() - t0:.0f} s: {cpu}")
    assert cpu["idle"] <= 10, cpu
    nodes = _top(local, "nodes")
    assert nodes.get(local.node, 0) > 0, nodes


def test_kubectl_logs_of_the_ray_head(local: Local) -> None:
    def head() -> str | None:
        out = local.kubectl(
            "get", "pods", "-l", "ray.io/node-type=head", "-o", "jsonpath={.items[0].metadata.name}"
        )
        return out.stdout.strip() or None

    name = wait_for(head, 60, 0.5, what="the head pod")
    wait_for(
        lambda: local.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}").stdout == "Running",
        120,
        0.5,
        what="the head pod running",
    )
    # Follow from the start, as a user watching the head come up: `ray start` prints that it started.
    follow = local.popen_kubectl("logs", "-f", name)
    # The deadline: reading blocks while the head prints nothing, so a timer ends the follow.
    deadline = threading.Timer(180, follow.kill)
    deadline.start()
    seen: list[str] = []
    try:
        assert follow.stdout is not None
        for line in follow.stdout:
            seen.append(line)
            if "Ray runtime started" in line:
                break
    finally:
        deadline.cancel()
        follow.kill()
        follow.wait()
    assert any("Ray runtime started" in ln for ln in seen), "".join(seen[-40:])
    full = local.kubectl("logs", name)
    assert full.returncode == 0, full.stderr
    assert "Ray runtime started" in full.stdout and "ray start --address=" in full.stdout
    tail = local.kubectl("logs", name, "--tail=3")
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert len(lines) == 3
    # The tail is the end of the log as it was then (the head keeps logging, so compare with a later read).
    assert "\n".join(lines) in local.kubectl("logs", name).stdout
