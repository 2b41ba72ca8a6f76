"""Render time of the web view's overview with 100 RayClusters x 11 Pods (the size `make test` checks for API calls).

Starts a private control plane, creates the RayClusters and plain Pods (1 head + 10 workers each, as
`tests/integration/test_ui.py` does), runs the view alone (as `rayop ui` does) and measures:

- server: the HTML of the whole overview (`GET /`), of its live fragment (`GET /?fragment=1`) and of a poll
  that finds nothing new (304 by ETag), timed by the client, median of repeated requests;
- browser: Debian's headless Chromium (Playwright) loading the overview until its `load` event and its
  first live poll, median of repeated loads; next to it, the same bytes served as a static file by a
  server that computes nothing: the browser's own floor for that page.

    .venv/bin/python bench/ui_render.py [--clusters 100] [--repeat 20]

Writes bench/results/ui.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from run import machine  # noqa: E402  (bench/run.py, which stitches the sections)

from rayop import ui  # noqa: E402
from rayop.api import constants as C  # noqa: E402
from rayop.api.kinds import RAYCLUSTERS  # noqa: E402
from rayop.controllers.common import POD_SELECTOR  # noqa: E402
from rayop.local.plane import ControlPlane, PlaneOptions  # noqa: E402
from rayop.runtime.client import NAMESPACES, PODS, ApiClient, load_kubeconfig  # noqa: E402
from rayop.runtime.manager import Manager  # noqa: E402
from tests.browser import Browser  # noqa: E402
from tests.helpers import eventually  # noqa: E402
from tests.integration.rayclusters import raycluster, running_ready_status  # noqa: E402

NS = "bench-ui"


def pod(cluster: str, name: str, node_type: str, group: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {C.LABEL_CLUSTER: cluster, C.LABEL_NODE_TYPE: node_type, C.LABEL_GROUP: group},
        },
        "spec": {"containers": [{"name": "ray", "image": "rayproject/ray:2.60.0"}]},
    }


async def populate(kube: ApiClient, clusters: int) -> None:
    await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    sem = asyncio.Semaphore(32)

    async def create(res: Any, obj: dict[str, Any]) -> dict[str, Any]:
        async with sem:
            out: dict[str, Any] = await kube.create(res, obj, NS)
            return out

    names = [f"rc-{i:03d}" for i in range(clusters)]
    await asyncio.gather(*(create(RAYCLUSTERS, raycluster(n, NS, replicas=10)) for n in names))
    pods = [pod(n, f"{n}-head", "head", "headgroup") for n in names]
    pods += [pod(n, f"{n}-workers-worker-{j}", "worker", "workers") for n in names for j in range(10)]
    created = await asyncio.gather(*(create(PODS, p) for p in pods))

    # Most Pods Running and Ready, a few not, so the page has problems to rank first.
    async def ready(i: int, p: dict[str, Any]) -> None:
        if i % 37 == 5:
            return
        async with sem:
            p["status"] = running_ready_status(p, f"10.2.{i // 250}.{i % 250 + 1}")
            await kube.replace_status(PODS, p)

    await asyncio.gather(*(ready(i, p) for i, p in enumerate(created)))


async def timed_get(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[float, int, str, str]:
    t0 = time.perf_counter()
    async with session.get(url, headers=headers or {}) as r:
        body = await r.text()
        return time.perf_counter() - t0, r.status, body, r.headers.get("ETag", "")


async def browser_loads(browser: Browser, url: str, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        page = await browser.page()
        t0 = time.perf_counter()
        await page.goto(url, wait_until="load")
        await page.wait_for_function("() => document.body.dataset.updated !== undefined", timeout=30_000)
        out.append(time.perf_counter() - t0 - 2.0)  # minus the script's fixed 2 s wait before its first poll
        await page.context.close()
    return out


async def static_loads(browser: Browser, html: str, repeat: int, assets: dict[str, bytes]) -> list[float]:
    """The same page served as bytes by a server that computes nothing, until `load`."""

    async def page_handler(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["path"]
        ctype = "text/css" if name.endswith(".css") else "text/javascript"
        return web.Response(body=assets[name], content_type=ctype)

    app = web.Application()
    app.router.add_get("/", page_handler)
    app.router.add_get("/static/{path:.+}", asset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    out = []
    try:
        for _ in range(repeat):
            page = await browser.page()
            t0 = time.perf_counter()
            await page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
            out.append(time.perf_counter() - t0)
            await page.context.close()
    finally:
        await runner.cleanup()
    return out


def ms(xs: list[float]) -> str:
    m = statistics.median(xs) * 1000
    return f"{m:.1f} ms" if m < 10 else f"{m:.0f} ms"


async def run(clusters: int, repeat: int) -> str:
    state = Path(tempfile.mkdtemp(prefix="rayop-bench-ui-"))
    cp = ControlPlane(PlaneOptions(state_dir=state))
    cp.start()
    kube = ApiClient(load_kubeconfig(cp.kubeconfig))
    try:
        t0 = time.monotonic()
        await populate(kube, clusters)
        setup_s = time.monotonic() - t0
        mgr = Manager(
            kube,
            leader_election=False,
            namespaces=[NS],
            metrics_addr=None,
            probe_addr=None,
            handle_signals=False,
        )
        view = ui.setup(mgr, ui.UiOptions(port=0, pod_selector=POD_SELECTOR, namespaces=[NS]))
        task = asyncio.create_task(mgr.run())
        try:
            await asyncio.wait_for(view.ready.wait(), 120)
            await eventually(
                lambda: len(view.view.caches.pods.list(NS)) == clusters * 11, 120, what="pods cached"
            )
            base = view.url
            async with aiohttp.ClientSession() as s:
                await timed_get(s, base)  # warm up
                calls = kube.request_count
                full = [await timed_get(s, base) for _ in range(repeat)]
                frag = [await timed_get(s, base + "?fragment=1") for _ in range(repeat)]
                etag = full[-1][3]
                polls = [
                    await timed_get(s, base + "?fragment=1", {"If-None-Match": etag}) for _ in range(repeat)
                ]
                api_calls = kube.request_count - calls
                assets = {}
                for name in ("app.css", "app.js", "vendor/uPlot.min.css", "vendor/uPlot.iife.min.js"):
                    async with s.get(f"{base}static/{name}") as r:
                        assets[name] = await r.read()
            assert all(st == 200 for _, st, _, _ in full + frag) and all(st == 304 for _, st, _, _ in polls)
            html = full[-1][2]
            browser = await Browser().start()
            try:
                loads = await browser_loads(browser, base, max(3, repeat // 4))
                floor = await static_loads(browser, html, max(3, repeat // 4), assets)
            finally:
                await browser.stop()
            # The same render without HTTP: the pure page function, for the Python share of the time.
            rows = [
                view.view.caches.clusters.list(),
                view.view.caches.jobs.list(),
                view.view.caches.rayservices.list(),
            ]
            pure = []
            for _ in range(repeat):
                t1 = time.perf_counter()
                view.view.overview(*rows)
                pure.append(time.perf_counter() - t1)
        finally:
            mgr.stop()
            await task
    finally:
        await kube.close()
        cp.stop()
    pods = clusters * 11
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    return "\n".join(
        [
            f"## Web view render time ({clusters} RayClusters x 11 Pods)",
            "",
            f"`bench/ui_render.py --clusters {clusters} --repeat {repeat}` ({now}; {machine()}): the view alone (as `rayop ui` runs it) "
            f"over {clusters} RayClusters and {pods} plain Pods on a private control plane (setup {setup_s:.0f} s), one "
            "Pod in 37 not ready so the page ranks problems. Medians; target: the overview under 1 s.",
            "",
            "| what | time | notes |",
            "|---|---|---|",
            f"| overview HTML built in Python (`View.overview`) | {ms(pure)} | no HTTP |",
            f"| `GET /` (whole page) | {ms([t for t, *_ in full])} | {len(html) // 1024} KiB |",
            f"| `GET /?fragment=1` (live update with changes) | {ms([t for t, *_ in frag])} | |",
            f"| poll with nothing new (304 by ETag) | {ms([t for t, *_ in polls])} | no rendering |",
            f"| headless Chromium: overview loaded and live | {ms(loads)} | navigation to `load`, plus the first poll |",
            f"| headless Chromium: same bytes from a static server | {ms(floor)} | the browser's floor for this page |",
            f"| API calls made by {3 * repeat} views | {api_calls} | served from the informer caches |",
            "",
        ]
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    section = asyncio.run(run(args.clusters, args.repeat))
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "ui.md").write_text(section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
