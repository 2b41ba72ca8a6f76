"""`rayop operator` as a real process: killed mid scale-up, and two replicas with leader election."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rayop.api import constants as C
from rayop.local.plane import ControlPlane, pick_free_ports
from rayop.runtime.client import LEASES, ApiClient
from tests import rbac
from tests.helpers import eventually
from tests.integration.rayclusters import RAYCLUSTERS, mark_ready, pods_of, raycluster

T = 60.0
RAYOP = str(Path(sys.executable).with_name("rayop"))


class OperatorProc:
    def __init__(self, plane: ControlPlane, namespace: str, log_path: Path, *args: str) -> None:
        (probe,) = pick_free_ports(1)
        rbac.grant_in_namespace(plane, namespace)
        cmd = [
            RAYOP,
            "operator",
            # As itself, under the chart's roles (tests/rbac.py); its Lease goes in the test namespace.
            "--kubeconfig",
            str(rbac.operator_kubeconfig(plane)),
            "--watch-namespace",
            namespace,
            "--metrics-addr",
            "0",
            "--health-probe-bind-address",
            f"127.0.0.1:{probe}",
            "--log-stdout-encoder",
            "console",
            *args,
        ]
        env = {**os.environ, C.OPENV_RAYCLUSTER_DEFAULT_REQUEUE_SECONDS: "10"}
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[OperatorProc]]:
    started: list[OperatorProc] = []
    yield started
    for p in started:
        p.stop()


async def workers(kube: ApiClient, ns: str, name: str) -> list[dict[str, Any]]:
    return await pods_of(kube, ns, name, "worker")


async def test_killed_mid_scale_up_then_restarted_gives_exactly_the_desired_pods(
    plane: ControlPlane, kube: ApiClient, namespace: str, procs: list[OperatorProc], tmp_path: Path
) -> None:
    ns = namespace
    # A low client QPS stretches the 50 creations over seconds, so the kill lands mid-way.
    slow = OperatorProc(
        plane, ns, tmp_path / "op1.log", "--enable-leader-election=false", "--qps", "15", "--burst", "5"
    )
    procs.append(slow)
    await kube.create(RAYCLUSTERS, raycluster("big", ns, replicas=0))
    await eventually(lambda: _n(pods_of(kube, ns, "big", "head"), 1), T, what="head pod")
    await kube.patch(
        RAYCLUSTERS,
        "big",
        [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 50}],
        ns,
        patch_type="json",
    )

    async def some_created() -> int:
        n = len(await workers(kube, ns, "big"))
        return n if n >= 5 else 0

    before = await eventually(some_created, T, interval=0.05, what="scale-up under way")
    slow.kill()
    at_kill = len(await workers(kube, ns, "big"))
    assert before <= at_kill < 50, f"the kill should land mid scale-up ({at_kill} workers)"

    fresh = OperatorProc(plane, ns, tmp_path / "op2.log", "--enable-leader-election=false")
    procs.append(fresh)
    await eventually(lambda: _n(workers(kube, ns, "big"), 50), T, what="50 workers after the restart")
    await mark_ready(kube, ns, "big")

    async def ready() -> bool:
        rc = await kube.get(RAYCLUSTERS, "big", ns)
        await mark_ready(kube, ns, "big")
        return (rc.get("status") or {}).get("state") == "ready"

    # `ready` needs exactly desired+1 pods, all Running and Ready: a duplicate would keep it away.
    await eventually(ready, T, what="status ready")
    pods = await workers(kube, ns, "big")
    assert len(pods) == 50
    idx = sorted(int(p["metadata"]["labels"][C.LABEL_WORKER_GROUP_REPLICA_INDEX]) for p in pods)
    assert idx == list(range(50))
    assert len(await pods_of(kube, ns, "big", "head")) == 1
    assert fresh.proc.poll() is None


async def test_two_replicas_one_leader_takeover_within_20s(
    plane: ControlPlane, kube: ApiClient, namespace: str, procs: list[OperatorProc], tmp_path: Path
) -> None:
    ns = namespace
    args = ("--enable-leader-election=true", "--leader-election-namespace", ns)
    a = OperatorProc(plane, ns, tmp_path / "a.log", *args)
    b = OperatorProc(plane, ns, tmp_path / "b.log", *args)
    procs += [a, b]

    def leaders() -> list[OperatorProc]:
        return [p for p in (a, b) if "became leader" in p.text()]

    await eventually(lambda: len(leaders()) == 1, T, what="one leader")
    lease = await kube.get(LEASES, C.LEADER_ELECTION_ID, ns)
    first_holder = lease["spec"]["holderIdentity"]
    leader = leaders()[0]
    other = b if leader is a else a
    await kube.create(RAYCLUSTERS, raycluster("one", ns, replicas=1))
    await eventually(lambda: _n(workers(kube, ns, "one"), 1), T, what="leader reconciles")
    assert "became leader" not in other.text()

    leader.kill()
    # Acceptance: the standby leads within 20 s of the leader's death (15 s lease, 2 s retry).
    await eventually(lambda: "became leader" in other.text(), 20, what="the standby takes over")
    lease = await kube.get(LEASES, C.LEADER_ELECTION_ID, ns)
    assert lease["spec"]["holderIdentity"] != first_holder
    await kube.create(RAYCLUSTERS, raycluster("two", ns, replicas=2))
    await eventually(lambda: _n(workers(kube, ns, "two"), 2), T, what="new leader reconciles")


async def _n(aw: Any, want: int) -> bool:
    return len(await aw) == want
