"""ApiClient and the server's "later": 429 (and 5xx with Retry-After) are waited out and sent again,
never retried at once and never surfaced to the caller while retries remain. A small aiohttp server
stands in for the API server here; tests/integration/test_runtime.py makes the real API server's
Priority and Fairness answer 429."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from rayop.runtime import client as client_mod
from rayop.runtime import ratelimit
from rayop.runtime.client import ApiClient, ApiError, ClientConfig
from rayop.runtime.ratelimit import retry_delay


@dataclass
class Script:
    """What the server answers, in order: (status, Retry-After header or None); then 200."""

    answers: list[tuple[int, str | None]]
    arrivals: list[float] = field(default_factory=list)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Script]]:
    script = Script([])

    async def handler(request: web.Request) -> web.Response:
        script.arrivals.append(asyncio.get_running_loop().time())
        if script.answers:
            status, retry_after = script.answers.pop(0)
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            body = {"kind": "Status", "code": status, "reason": "TooManyRequests", "message": "later"}
            return web.json_response(body, status=status, headers=headers)
        return web.json_response({"kind": "ConfigMap", "metadata": {"name": "x"}})

    app = web.Application()
    app.router.add_route("*", "/thing", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", script
    finally:
        await runner.cleanup()


async def test_429_with_retry_after_is_waited_out_then_succeeds(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(429, "1")]
    client = ApiClient(ClientConfig(server=url))
    try:
        out = await client.request("POST", "/thing", body={"a": 1})
    finally:
        await client.close()
    assert out["kind"] == "ConfigMap", "the caller sees the answer to the retry, not the 429"
    assert len(script.arrivals) == 2
    assert script.arrivals[1] - script.arrivals[0] >= 1.0, "sent again only after Retry-After"
    assert client.retries == 1


async def test_429_without_retry_after_still_backs_off(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(429, None), (429, None)]
    client = ApiClient(ClientConfig(server=url))
    try:
        await client.request("GET", "/thing")
    finally:
        await client.close()
    gaps = [b - a for a, b in zip(script.arrivals, script.arrivals[1:], strict=False)]
    assert len(gaps) == 2
    assert gaps[0] >= ratelimit.RETRY_BACKOFF_BASE
    assert gaps[1] >= 2 * ratelimit.RETRY_BACKOFF_BASE, "the backoff doubles per retry"


async def test_5xx_is_retried_only_with_retry_after(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(503, "1"), (500, None)]
    client = ApiClient(ClientConfig(server=url))
    try:
        with pytest.raises(ApiError) as err:
            await client.request("GET", "/thing")
    finally:
        await client.close()
    assert err.value.status == 500, "a 5xx without Retry-After is an error for the caller"
    assert len(script.arrivals) == 2 and client.retries == 1


async def test_gives_up_after_max_retries(
    server: tuple[str, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, script = server
    monkeypatch.setattr(client_mod, "MAX_RETRIES", 2)
    monkeypatch.setattr(ratelimit, "RETRY_BACKOFF_BASE", 0.01)
    script.answers = [(429, "0")] * 5
    client = ApiClient(ClientConfig(server=url))
    try:
        with pytest.raises(ApiError) as err:
            await client.request("GET", "/thing")
    finally:
        await client.close()
    assert err.value.status == 429
    assert len(script.arrivals) == 3  # the first try and two retries


async def test_requests_in_flight_are_bounded(server: tuple[str, Script]) -> None:
    url, _ = server
    client = ApiClient(ClientConfig(server=url, max_in_flight=3))
    seen: list[int] = []
    real_started = client._started

    def started() -> None:
        real_started()
        seen.append(client.in_flight)

    client._started = started  # type: ignore[method-assign]
    try:
        await asyncio.gather(*(client.request("GET", "/thing") for _ in range(20)))
    finally:
        await client.close()
    assert len(seen) == 20 and max(seen) <= 3


def test_retry_delay_honours_the_server_and_grows() -> None:
    assert retry_delay(5.0, 0) >= 5.0
    assert retry_delay(5.0, 0) <= 6.0
    assert retry_delay(0.0, 0) >= ratelimit.RETRY_BACKOFF_BASE
    assert retry_delay(0.0, 3) >= 8 * ratelimit.RETRY_BACKOFF_BASE
    assert retry_delay(0.0, 30) <= ratelimit.RETRY_BACKOFF_CAP * 1.2
