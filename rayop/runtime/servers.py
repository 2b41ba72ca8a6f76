"""`/metrics`, `/healthz` and `/readyz` over aiohttp.

Readiness means "caches synced and every registered check passes"; it never depends on holding the
leader lease, otherwise standby replicas would never be Ready (as controller-runtime's probes). Liveness answers
from the event loop itself, so a blocked loop fails it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from rayop.runtime.protocols import Check

log = logging.getLogger("rayop.runtime.servers")


def parse_addr(addr: str) -> tuple[str, int] | None:
    """Go-style bind address (":8080", "127.0.0.1:0", "[::1]:8080"); "0" or "" disables the server."""
    addr = addr.strip()
    if addr in ("", "0"):
        return None
    host, sep, port = addr.rpartition(":")
    if not sep:
        raise ValueError(f"bind address {addr!r}: want host:port or :port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class Checks:
    """Named health or readiness checks."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def run(self) -> dict[str, bool]:
        out: dict[str, bool] = {}
        for name, check in self._checks.items():
            try:
                res = check()
                if inspect.isawaitable(res):
                    async with asyncio.timeout(5):
                        res = await res
                out[name] = bool(res)
            except Exception as e:
                log.warning("check %s failed: %s", name, e)
                out[name] = False
        return out


async def _check_response(checks: Checks, request: web.Request) -> web.Response:
    results = await checks.run()
    ok = all(results.values())
    if "verbose" in request.query:
        lines = [f"[{'+' if v else '-'}]{k} {'ok' if v else 'failed'}" for k, v in results.items()]
        lines.append("check passed" if ok else "check failed")
        text = "\n".join(lines) + "\n"
    else:
        text = "ok" if ok else "failed: " + ",".join(k for k, v in results.items() if not v)
    return web.Response(status=200 if ok else 500, text=text)


class Servers:
    """The metrics server and the probe server (one server when both use the same address)."""

    def __init__(self, metrics_addr: str | None = ":8080", probe_addr: str | None = ":8082") -> None:
        self.metrics_bind = parse_addr(metrics_addr or "")
        self.probe_bind = parse_addr(probe_addr or "")
        self.health = Checks()
        self.ready = Checks()
        self.health.add("ping", lambda: True)
        self._runners: list[web.AppRunner] = []
        self.metrics_port: int | None = None
        self.probe_port: int | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        data = await asyncio.get_running_loop().run_in_executor(None, generate_latest, REGISTRY)
        return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return await _check_response(self.health, request)

    async def _readyz(self, request: web.Request) -> web.Response:
        return await _check_response(self.ready, request)

    def _app(self, metrics: bool, probes: bool) -> web.Application:
        app = web.Application()
        if metrics:
            app.router.add_get("/metrics", self._metrics)
        if probes:
            app.router.add_get("/healthz", self._healthz)
            app.router.add_get("/readyz", self._readyz)
        return app

    async def _serve(self, app: web.Application, bind: tuple[str, int]) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, bind[0], bind[1])
        await site.start()
        self._runners.append(runner)
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else bind[1]

    async def start(self) -> None:
        if self.metrics_bind and self.metrics_bind == self.probe_bind and self.metrics_bind[1] != 0:
            port = await self._serve(self._app(True, True), self.metrics_bind)
            self.metrics_port = self.probe_port = port
        else:
            if self.metrics_bind:
                self.metrics_port = await self._serve(self._app(True, False), self.metrics_bind)
            if self.probe_bind:
                self.probe_port = await self._serve(self._app(False, True), self.probe_bind)
        log.info("servers started", extra={"metrics_port": self.metrics_port, "probe_port": self.probe_port})

    async def stop(self) -> None:
        runners, self._runners = self._runners, []
        for r in runners:
            await r.cleanup()
