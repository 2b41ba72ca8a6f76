"""ApiClient.wait_calm: writes that can wait (Events) hold back while a burst of requests is in flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from rayop.runtime.client import CALM_IN_FLIGHT, ApiClient, ClientConfig
from tests.helpers import eventually


@pytest.fixture
async def held_server() -> AsyncIterator[tuple[str, asyncio.Semaphore]]:
    """An HTTP server whose answers wait for a token each, so the test decides when requests finish."""
    gate = asyncio.Semaphore(0)

    async def handler(_: web.Request) -> web.Response:
        await gate.acquire()
        return web.json_response({"kind": "Status"})

    app = web.Application()
    app.router.add_get("/hold", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", gate
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def burst_in_flight(server: tuple[str, asyncio.Semaphore], n: int) -> AsyncIterator[ApiClient]:
    """A client with n requests held open by the server; all are answered (and the client closed) on exit."""
    url, gate = server
    client = ApiClient(ClientConfig(server=url, qps=0))
    calls = [asyncio.create_task(client.request("GET", "/hold")) for _ in range(n)]
    try:
        await eventually(lambda: client.in_flight == n, 5, 0.01)
        yield client
        for _ in range(n):
            gate.release()
        await asyncio.gather(*calls)
    finally:
        for c in calls:
            c.cancel()
        await client.close()


async def test_wait_calm_returns_once_the_burst_drains(held_server: tuple[str, asyncio.Semaphore]) -> None:
    _, gate = held_server
    burst = CALM_IN_FLIGHT + 4
    async with burst_in_flight(held_server, burst) as client:
        waiter = asyncio.create_task(client.wait_calm(30))
        await asyncio.sleep(0.05)
        assert not waiter.done(), "a burst is in flight: the waiter must hold back"
        for _ in range(3):
            gate.release()
        await eventually(lambda: client.in_flight == burst - 3, 5, 0.01)
        await asyncio.sleep(0.05)
        assert not waiter.done(), f"{client.in_flight} in flight is still above {CALM_IN_FLIGHT}"
        gate.release()
        await asyncio.wait_for(waiter, 5)
        assert client.in_flight == CALM_IN_FLIGHT
    assert client.in_flight == 0


async def test_wait_calm_gives_up_after_its_timeout(held_server: tuple[str, asyncio.Semaphore]) -> None:
    burst = CALM_IN_FLIGHT + 1
    async with burst_in_flight(held_server, burst) as client:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await client.wait_calm(0.2)
        assert loop.time() - t0 >= 0.19
        assert client.in_flight == burst, "the burst is still in flight: only the timeout ended the wait"
