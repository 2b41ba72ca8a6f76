"""`rayop operator` as real processes: probes, leader election between replicas, SIGTERM, SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rayop.local.plane import ControlPlane, pick_free_ports
from rayop.runtime.client import LEASES, ApiClient
from tests import rbac

REPO = Path(__file__).resolve().parents[2]


class Operator:
    def __init__(self, plane: ControlPlane, namespace: str, log: Path) -> None:
        self.metrics_port, self.probe_port = pick_free_ports(2)
        # As itself, under the chart's roles (tests/rbac.py); its Lease goes in the test namespace.
        rbac.grant_in_namespace(plane, namespace)
        self.log = log
        self.out = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rayop.cli.main",
                "operator",
                f"--kubeconfig={rbac.operator_kubeconfig(plane)}",
                f"--metrics-addr=127.0.0.1:{self.metrics_port}",
                f"--health-probe-bind-address=127.0.0.1:{self.probe_port}",
                f"--leader-election-namespace={namespace}",
                f"--watch-namespace={namespace}",
                "--log-stdout-encoder=json",
            ],
            cwd=REPO,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def get(self, port: int, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.out.close()


@pytest.fixture
def operators(tmp_path: Path) -> Iterator[list[Operator]]:
    ops: list[Operator] = []
    yield ops
    for op in ops:
        op.stop()


async def poll(cond: Callable[[], Any], timeout: float, what: str) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        res = cond()
        if asyncio.iscoroutine(res):
            res = await res
        if res:
            return loop.time() - start
        if loop.time() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def holder(kube: ApiClient, namespace: str) -> str | None:
    lease = await kube.get_or_none(LEASES, "ray-operator-leader", namespace)
    return ((lease or {}).get("spec") or {}).get("holderIdentity")


async def test_two_replicas_one_leader_takeover_on_kill(
    plane: ControlPlane, kube: ApiClient, namespace: str, operators: list[Operator], tmp_path: Path
) -> None:
    first = Operator(plane, namespace, tmp_path / "op1.log")
    operators.append(first)
    await poll(lambda: first.get(first.probe_port, "/readyz") == 200, 60, "op1 ready")
    await poll(lambda: holder(kube, namespace), 30, "a lease holder")
    leader1 = await holder(kube, namespace)

    second = Operator(plane, namespace, tmp_path / "op2.log")
    operators.append(second)
    await poll(lambda: second.get(second.probe_port, "/readyz") == 200, 60, "op2 ready (standby)")
    assert await holder(kube, namespace) == leader1
    assert second.get(second.metrics_port, "/metrics") == 200
    assert second.get(second.probe_port, "/healthz") == 200

    os.killpg(first.proc.pid, signal.SIGKILL)  # no chance to release the lease
    first.proc.wait(10)
    took = await poll(lambda: _changed(kube, namespace, leader1), 25, "takeover by op2")
    print(f"takeover after SIGKILL: {took:.1f}s")
    assert took < 20, f"takeover took {took:.1f}s"
    assert second.proc.poll() is None

    # SIGTERM: graceful exit 0, lease released at once.
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(40) == 0
    assert await holder(kube, namespace) in (None, "")
    log = (tmp_path / "op2.log").read_text()
    assert '"msg": "became leader"' in log and '"msg": "manager stopped"' in log


async def _changed(kube: ApiClient, namespace: str, old: str | None) -> bool:
    h = await holder(kube, namespace)
    return bool(h) and h != old
