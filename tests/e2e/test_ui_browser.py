"""The web view in a real browser (Debian's headless Chromium, driven by Playwright) on the local plane, with the
operator, the node agent and real Ray: Ray's autoscaler scales a worker group for a RayJob's tasks, the cluster's
plot shows it within 10 s of the `replicas` change a watch sees, the RayJob's page shows SUCCEEDED and the
driver's output, a deleted cluster disappears, and axe-core finds no serious accessibility violation.
Screenshots of every page go to tests/artifacts/ui/.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rayop import ui
from rayop.controllers.common import POD_SELECTOR
from rayop.node.agent import NodeAgent
from rayop.runtime.client import ApiClient
from rayop.runtime.manager import Manager
from tests.browser import Browser, axe_violations, screenshot
from tests.e2e import test_node_agent as na
from tests.helpers import eventually
from tests.integration.rayjobs import RAYCLUSTERS, RAYJOBS, get_rj, operator, status_of

# The node agent's plane, network and namespace fixtures, shared by re-export.
pytestmark = na.pytestmark
node_net = na.node_net
node_plane = na.node_plane
kube = na.kube
ns = na.ns

ENTRYPOINT = (
    'python -c "import ray, time; ray.init(); '
    "f = ray.remote(num_cpus=1)(lambda i: (time.sleep(3), i)[1]); "
    "print('web view test: tasks done, sum', sum(ray.get([f.remote(i) for i in range(3)])))\""
)


@pytest.fixture(scope="module")
async def node(node_plane: Any, node_net: dict[str, str]) -> AsyncIterator[NodeAgent]:
    state = Path(tempfile.mkdtemp(prefix="rayop-node-", dir="/var/tmp"))
    # Ray 2.60 turns token auth on when ~/.ray/auth_token exists, and pods share this host's home.
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    agent, task = await na.start_agent(node_plane, node_net, state, cpu="16", memory="16Gi", default_env=env)
    try:
        yield agent
    finally:
        leftovers = await na.stop_agent(agent, task)
        assert leftovers == [], f"netns left behind: {leftovers}"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    b = await Browser().start()
    try:
        yield b
    finally:
        await b.stop()


async def first_scale_up(kube: ApiClient, ns: str, name: str) -> float:
    """Watch the RayCluster; the monotonic time at which a watch event first shows replicas above 0."""
    while True:
        rc = await kube.get(RAYCLUSTERS, name, ns)
        if rc["spec"]["workerGroupSpecs"][0].get("replicas", 0) > 0:
            return time.monotonic()
        rv = rc["metadata"]["resourceVersion"]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                async for ev in kube.watch(
                    RAYCLUSTERS,
                    ns,
                    resource_version=rv,
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=50,
                ):
                    groups = (ev.get("object") or {}).get("spec", {}).get("workerGroupSpecs") or [{}]
                    if (groups[0].get("replicas") or 0) > 0:
                        return time.monotonic()


async def check_page(page: Any, name: str) -> None:
    """A screenshot, no serious accessibility violation, no script error."""
    await screenshot(page, name)
    violations = await axe_violations(page)
    assert violations == [], f"{name}: {violations}"
    assert page.errors == [], f"{name}: {page.errors}"


async def test_the_web_view_in_a_browser(node: NodeAgent, kube: ApiClient, ns: str, browser: Browser) -> None:
    rc = yaml.safe_load((na.REPO / "examples" / "raycluster-autoscaler.yaml").read_text())
    name = rc["metadata"]["name"]
    views: list[ui.Ui] = []

    def add_view(mgr: Manager) -> None:
        views.append(ui.setup(mgr, ui.UiOptions(port=0, pod_selector=POD_SELECTOR, namespaces=[ns])))

    async with operator(kube, ns, use_proxy=True, extra=add_view):
        (view,) = views
        await asyncio.wait_for(view.ready.wait(), 60)
        base = view.url
        overview = await browser.page()
        await overview.goto(base)
        await kube.create(RAYCLUSTERS, rc, ns)
        scaled = asyncio.create_task(first_scale_up(kube, ns, name))
        # Live: the new cluster appears without a reload.
        cluster_link = overview.locator(f'#clusters a[href="/clusters/{ns}/{name}"]')
        await cluster_link.wait_for(timeout=30_000)

        cluster = await browser.page()
        await cluster.goto(f"{base}clusters/{ns}/{name}")

        async def ready() -> bool:
            return status_of(await kube.get(RAYCLUSTERS, name, ns)).get("state") == "ready"

        await eventually(ready, 300, 1.0, what="RayCluster ready")
        job = {
            "apiVersion": "ray.io/v1",
            "kind": "RayJob",
            "metadata": {"name": "webview-job", "namespace": ns},
            "spec": {
                "entrypoint": ENTRYPOINT,
                "submissionMode": "HTTPMode",
                "clusterSelector": {"ray.io/cluster": name},
            },
        }
        await kube.create(RAYJOBS, job, ns)
        await overview.locator(f'#jobs a[href="/jobs/{ns}/webview-job"]').wait_for(timeout=30_000)

        # Ray's autoscaler raises replicas for the job's tasks; the plot must show it within 10 s of the watch.
        seen_by_watch = await asyncio.wait_for(scaled, 300)
        plot_id = "scaling-small-plot"
        deadline = seen_by_watch + 30
        shown = 0.0
        while time.monotonic() < deadline:
            last = await cluster.evaluate(
                "id => { const u = window.rayopPlots[id]; return u ? u.data[1][u.data[1].length - 1] : null; }",
                plot_id,
            )
            table = cluster.locator("#scaling-changes-table")
            changes = await table.inner_text() if await table.count() else ""
            if last and last > 0 and "Ray autoscaler" in changes:
                shown = time.monotonic()
                break
            await asyncio.sleep(0.2)
        assert shown, "the scale-up never reached the plot"
        lag = shown - seen_by_watch
        print(f"\nscale-up on the plot {lag:.1f} s after the watch saw replicas change")
        assert lag <= 10.0, lag

        # The job's page: SUCCEEDED and the driver's output, live.
        jobpage = await browser.page()
        await jobpage.goto(f"{base}jobs/{ns}/webview-job")
        await jobpage.locator("#facts .badge", has_text="SUCCEEDED").wait_for(timeout=300_000)
        await jobpage.locator("pre.logs", has_text="web view test: tasks done, sum 3").wait_for(
            timeout=60_000
        )
        st = status_of(await get_rj(kube, ns, "webview-job"))
        assert st["jobStatus"] == "SUCCEEDED" and st["jobId"] in await jobpage.locator("#facts").inner_text()

        await check_page(overview, "overview")
        await check_page(cluster, "raycluster")
        await check_page(jobpage, "rayjob")
        phone = await browser.page(390, 844)
        await phone.goto(base)
        await check_page(phone, "overview-phone")
        # Keyboard: the skip link comes first and lands on the content.
        await overview.keyboard.press("Tab")
        assert await overview.evaluate("document.activeElement.textContent") == "Skip to content"

        # A deleted cluster disappears from the overview, and its page says it is gone, both without a reload.
        await kube.delete(RAYCLUSTERS, name, ns)
        await cluster_link.wait_for(state="detached", timeout=120_000)
        await cluster.get_by_text(f"RayCluster {ns}/{name} is not there.").wait_for(timeout=30_000)
        await check_page(cluster, "raycluster-deleted")
