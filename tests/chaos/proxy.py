"""A fault-injecting proxy between the operator and the API server, on loopback.

It terminates TLS with a serving certificate from the plane's CA (the operator's kubeconfig trusts that CA
already), and talks to the API server as the operator itself: with the operator's client certificate, so
RBAC and audit see the same user as without the proxy. Requests pass through unchanged until a fault is
switched on:

- `fail(status, fraction)`: that share of requests (watches included) is answered with `status` and the
  API server's Status body: 429 `TooManyRequests` with `Retry-After` (what API Priority and Fairness
  sends), or 500 `InternalError` without it (an etcd timeout, a panic in a handler).
- `slow_watches(delay)`: every watch event reaches the operator `delay` seconds after the API server sent
  it (a congested API server or network); events keep their order.
- `cut_watches(gone)`: every open watch connection is cut, and the next `gone` watch requests are answered
  as the API server answers a resourceVersion compacted away: `200` with one `ERROR` event carrying a 410
  `Expired` Status, after which a client must list again.

When the API server itself is down the proxy drops the operator's connection, as a refused connection
would end the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

# Hop-by-hop headers and those aiohttp sets itself are not copied.
_SKIP_REQUEST = {"host", "content-length", "transfer-encoding", "connection", "authorization"}
_COPY_RESPONSE = ("Content-Type", "Retry-After", "Audit-Id", "Warning")


@dataclass
class ProxyStats:
    requests: int = 0
    watches: int = 0
    failed: dict[int, int] = field(default_factory=dict)  # injected status -> count
    cut: int = 0
    gone: int = 0
    delayed_events: int = 0
    upstream_errors: int = 0


def status_body(code: int, reason: str, message: str, retry_after: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if retry_after is not None:
        body["details"] = {"retryAfterSeconds": retry_after}
    return body


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        ca_file: Path,
        client_cert: tuple[Path, Path],
        serving_cert: tuple[Path, Path],
        seed: int = 0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.ca_file = ca_file
        self.client_cert = client_cert
        self.serving_cert = serving_cert
        self.rng = random.Random(seed)
        self.stats = ProxyStats()
        self._fail: tuple[int, float, int | None] | None = None
        self._delay = 0.0
        self._gone_budget = 0
        self._watches: set[tuple[asyncio.Task[Any], asyncio.BaseTransport | None]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # Faults -------------------------------------------------------------------------------------

    def fail(self, status: int, fraction: float, retry_after: int | None = None) -> None:
        self._fail = (status, fraction, retry_after)

    def slow_watches(self, delay: float) -> None:
        self._delay = delay

    def cut_watches(self, gone: int = 0) -> int:
        """Cut every open watch; answer the next `gone` watch requests with 410 Expired. Returns how many
        connections were cut."""
        self._gone_budget = gone
        n = 0
        for task, transport in list(self._watches):
            if transport is not None:
                transport.abort()
            task.cancel()
            n += 1
        self.stats.cut += n
        return n

    def clear(self) -> None:
        self._fail = None
        self._delay = 0.0
        self._gone_budget = 0

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    # Server -------------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> FaultProxy:
        up = ssl.create_default_context(cafile=str(self.ca_file))
        up.load_cert_chain(str(self.client_cert[0]), str(self.client_cert[1]))
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=up, limit=0))
        down = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        down.load_cert_chain(str(self.serving_cert[0]), str(self.serving_cert[1]))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=down)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        self.cut_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        watch = request.query.get("watch") in ("true", "1")
        if self._fail is not None:
            code, fraction, retry_after = self._fail
            if self.rng.random() < fraction:
                self.stats.failed[code] = self.stats.failed.get(code, 0) + 1
                return self._failure(code, retry_after)
        if watch:
            self.stats.watches += 1
            if self._gone_budget > 0:
                self._gone_budget -= 1
                self.stats.gone += 1
                return await self._expired(request)
            return await self._stream(request)
        return await self._forward(request)

    def _failure(self, code: int, retry_after: int | None) -> web.Response:
        if code == 429:
            body = status_body(
                429, "TooManyRequests", "Too many requests, please try again later.", retry_after
            )
        else:
            body = status_body(code, "InternalError", "Internal error occurred: injected by the chaos proxy")
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return web.Response(
            body=orjson.dumps(body), status=code, content_type="application/json", headers=headers
        )

    async def _expired(self, request: web.Request) -> web.StreamResponse:
        rv = request.query.get("resourceVersion", "0")
        ev = {
            "type": "ERROR",
            "object": status_body(410, "Expired", f"too old resource version: {rv} (chaos)"),
        }
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(orjson.dumps(ev) + b"\n")
        await resp.write_eof()
        return resp

    def _upstream_args(self, request: web.Request) -> tuple[str, dict[str, str]]:
        url = self.upstream + request.rel_url.raw_path_qs
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP_REQUEST}
        return url, headers

    def _drop(self, request: web.Request) -> web.StreamResponse:
        """The API server did not answer: end the client's connection without a response."""
        self.stats.upstream_errors += 1
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=502)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        url, headers = self._upstream_args(request)
        data = await request.read() if request.can_read_body else None
        try:
            async with self._session.request(
                request.method,
                url,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=150),
                allow_redirects=False,
            ) as up:
                body = await up.read()
                out = {k: up.headers[k] for k in _COPY_RESPONSE if k in up.headers}
                return web.Response(body=body, status=up.status, headers=out)
        except (aiohttp.ClientError, TimeoutError, ConnectionError):
            return self._drop(request)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        url, headers = self._upstream_args(request)
        me = (asyncio.current_task(), request.transport)
        assert me[0] is not None
        self._watches.add(me)  # type: ignore[arg-type]
        try:
            try:
                up_cm = self._session.get(
                    url,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None),
                )
                up = await up_cm.__aenter__()
            except (aiohttp.ClientError, TimeoutError, ConnectionError):
                return self._drop(request)
            try:
                out = {k: up.headers[k] for k in _COPY_RESPONSE if k in up.headers}
                resp = web.StreamResponse(status=up.status, headers=out)
                await resp.prepare(request)
                queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

                async def pump() -> None:
                    try:
                        while True:
                            chunk = await up.content.readany()
                            await queue.put((time.monotonic(), chunk))
                            if not chunk:
                                return
                    except (aiohttp.ClientError, ConnectionError):
                        await queue.put((time.monotonic(), b""))

                reader = asyncio.create_task(pump())
                try:
                    while True:
                        at, chunk = await queue.get()
                        if not chunk:
                            break
                        if self._delay > 0:
                            self.stats.delayed_events += 1
                            wait = at + self._delay - time.monotonic()
                            if wait > 0:
                                await asyncio.sleep(wait)
                        await resp.write(chunk)
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
                with contextlib.suppress(ConnectionError):
                    await resp.write_eof()
                return resp
            finally:
                await up_cm.__aexit__(None, None, None)
        except ConnectionError:
            return web.Response(status=499)
        finally:
            self._watches.discard(me)  # type: ignore[arg-type]
