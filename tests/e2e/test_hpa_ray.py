"""Ray's autoscaler and the Kubernetes HPA, together and apart, on the local plane with real Ray: the HPA
sizes a worker group from its Pods' CPU (and rayop removes only idle Ray nodes); the HPA sizes a Serve
deployment's replicas while Ray's autoscaler adds the worker Pods they need; both come back down when the
load stops, and no request fails. The runs are tests/e2e/hpa_scenarios.py, which bench/hpa_timeline.py
also plots; each prints its timeline.

The plane's HPA controller evaluates every 5 s instead of 15 s (docs/local-plane.md); everything else is
as upstream, and the HPAs use the examples' behavior with a 30 s scale-down window.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rayop.local import metrics_server
from rayop.runtime.client import ApiClient
from tests.e2e import hpa_scenarios as H
from tests.nodes import RAY_ENV, needs_root

pytestmark = [
    needs_root,
    pytest.mark.skipif(not (RAY_ENV / "bin" / "ray").exists(), reason="no Ray environment"),
    pytest.mark.skipif(not metrics_server.binary_path().exists(), reason="no metrics-server (make deps)"),
    # A run lasts 4-5 min on a quiet machine (it waits out the HPA's windows and Ray's idle timeout) and
    # 6-7 min on a busy host, the plane's start included in the first: past the suite's 600 s, a slow host
    # would stop it without saying which step was late. Its own steps have deadlines that say so.
    pytest.mark.timeout(900),
]


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[tuple[ApiClient, str]]:
    async with H.world() as w:
        yield w


def report(tl: H.Timeline) -> None:
    print(f"\n[hpa e2e] {tl.name}: marks {tl.marks}")
    for t, d in tl.decisions:
        print(f"  {t:7.1f}s HPA: {d}")
    print(f"  load: {tl.load}")
    out = Path(tempfile.gettempdir()) / f"rayop-hpa-{uuid.uuid4().hex[:6]}.json"
    out.write_text(json.dumps(tl.to_json()))
    print(f"  timeline: {out}")


async def test_hpa_scales_a_worker_group_up_under_cpu_load_and_back_down(
    world: tuple[ApiClient, str],
) -> None:
    kube, ns = world
    tl = await H.worker_group_run(kube, ns)
    report(tl)
    # The HPA acted on the CPU it saw, both ways, and the group went to its maximum and back to 1.
    assert tl.max_of("utilization") >= 60, tl.samples
    assert any("above target" in d for _, d in tl.decisions), tl.decisions
    assert any("below target" in d or "All metrics below target" in d for _, d in tl.decisions), tl.decisions
    assert tl.max_of("ready_pods") == H.RWG_MAX and tl.max_of("ray_nodes") == H.RWG_MAX
    last = tl.samples[-1]
    assert (last.spec, last.pods, last.ray_nodes) == (1, 1, 1)
    # Safe scale-down: every worker that went was drained in Ray first.
    drained = [n for _, r, n in tl.notes if r == "DrainingWorker"]
    assert len(drained) >= H.RWG_MAX - 1, tl.notes


async def test_hpa_scales_serve_replicas_while_rays_autoscaler_adds_pods(
    world: tuple[ApiClient, str],
) -> None:
    kube, ns = world
    tl = await H.serve_run(kube, ns)
    report(tl)
    assert tl.max_of("utilization") >= 60, tl.samples
    assert any("above target" in d for _, d in tl.decisions), tl.decisions
    # Serve ran a second replica, on a second worker Pod that Ray's autoscaler added for it.
    assert tl.max_of("ready") == H.SERVE_MAX and tl.max_of("ray_nodes") == H.SERVE_MAX
    order = tl.marks
    assert (
        order["HPA scales up"]
        <= order["Serve starts a replica"]
        <= order[f"{H.SERVE_MAX} replicas on {H.SERVE_MAX} Pods"]
    )
    last = tl.samples[-1]
    assert (last.spec, last.replicas, last.pods, last.ray_nodes) == (1, 1, 1, 1)
    assert tl.failed_requests == 0, tl.load
