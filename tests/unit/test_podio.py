"""Pod logs and port-forwarding against a fake API server that answers `pods/log` and `pods/portforward`
the way the kubelet does behind a real one (the WebSocket protocol v4.channel.k8s.io)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from rayop.runtime.client import ApiClient, ApiError, ClientConfig
from rayop.runtime.podio import Forwarder, PortForwardError, open_port, pod_logs


class FakeKubelet:
    def __init__(self) -> None:
        self.pod_ports: dict[int, int] = {}  # pod port -> local TCP port
        self.logs: list[bytes] = [b"line 1\n", b"line 2\n", b"line 3\n"]
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.protocols: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def log(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.query)))
        if request.match_info["pod"] == "gone":
            body = {"kind": "Status", "apiVersion": "v1", "reason": "NotFound", "message": 'pods "gone" not found',
                    "details": {"name": "gone", "kind": "pods"}, "code": 404}  # fmt: skip
            return web.json_response(body, status=404)
        resp = web.StreamResponse()
        resp.content_type = "text/plain"
        await resp.prepare(request)
        for chunk in self.logs:
            await resp.write(chunk)
            if request.query.get("follow") == "true":
                await asyncio.sleep(0.05)
        await resp.write_eof()
        return resp

    async def portforward(self, request: web.Request) -> web.StreamResponse:
        port = int(request.query["ports"])
        ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io",))
        await ws.prepare(request)
        self.protocols.append(ws.ws_protocol or "")
        prefix = port.to_bytes(2, "little")
        await ws.send_bytes(b"\x00" + prefix)
        await ws.send_bytes(b"\x01" + prefix)
        if port not in self.pod_ports:
            await ws.send_bytes(b"\x01" + f"error forwarding port {port}: connection refused".encode())
            await ws.close()
            return ws
        reader, writer = await asyncio.open_connection("127.0.0.1", self.pod_ports[port])

        async def from_pod() -> None:
            while data := await reader.read(65536):
                await ws.send_bytes(b"\x00" + data)
            await ws.close()

        task = asyncio.create_task(from_pod())
        async for msg in ws:
            if msg.type == WSMsgType.BINARY and msg.data[:1] == b"\x00":
                writer.write(msg.data[1:])
                await writer.drain()
        writer.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return ws

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/log", self.log)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/portforward", self.portforward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


@pytest.fixture
async def kubelet() -> AsyncIterator[FakeKubelet]:
    k = FakeKubelet()
    await k.start()
    yield k
    await k.stop()


@pytest.fixture
async def api(kubelet: FakeKubelet) -> AsyncIterator[ApiClient]:
    c = ApiClient(ClientConfig(server=kubelet.url, token="tok", qps=0))
    yield c
    await c.close()


async def echo_server() -> tuple[asyncio.Server, int]:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            w.write(b"echo:" + data)
            await w.drain()
        w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_logs_stream_with_options(kubelet: FakeKubelet, api: ApiClient) -> None:
    chunks = [c async for c in pod_logs(api, "ns", "p", container="ray-head", follow=True, tail_lines=10)]
    assert b"".join(chunks) == b"line 1\nline 2\nline 3\n"
    path, query = kubelet.requests[0]
    assert path == "/api/v1/namespaces/ns/pods/p/log"
    assert query == {"container": "ray-head", "follow": "true", "tailLines": "10"}


async def test_logs_of_missing_pod_is_an_api_error(api: ApiClient) -> None:
    with pytest.raises(ApiError) as err:
        async for _ in pod_logs(api, "ns", "gone"):
            pass
    assert err.value.status == 404
    assert err.value.body["details"]["name"] == "gone"


async def test_port_stream_round_trip(kubelet: FakeKubelet, api: ApiClient) -> None:
    server, port = await echo_server()
    kubelet.pod_ports[8265] = port
    try:
        stream = await open_port(api, "ns", "head", 8265)
        await stream.write(b"hello")
        got = b""
        while len(got) < len(b"echo:hello"):
            got += await stream.read()
        assert got == b"echo:hello"
        await stream.close()
        assert kubelet.protocols == ["v4.channel.k8s.io"]
    finally:
        server.close()


async def test_port_stream_error_channel(kubelet: FakeKubelet, api: ApiClient) -> None:
    stream = await open_port(api, "ns", "head", 9999)
    with pytest.raises(PortForwardError, match="connection refused"):
        await stream.read()
    await stream.close()


async def test_forwarder_serves_many_connections(kubelet: FakeKubelet, api: ApiClient) -> None:
    server, port = await echo_server()
    kubelet.pod_ports[10001] = port
    resolved: list[str] = []

    async def resolve() -> str:
        resolved.append("head")
        return "head"

    fwd = Forwarder(api, "ns", resolve, 10001)
    local = await fwd.start()
    try:

        async def one(i: int) -> bytes:
            r, w = await asyncio.open_connection("127.0.0.1", local)
            w.write(f"msg{i}".encode())
            await w.drain()
            want = f"echo:msg{i}".encode()
            got = b""
            while len(got) < len(want):
                got += await asyncio.wait_for(r.read(100), 10)
            w.close()
            return got

        results: list[Any] = await asyncio.gather(*(one(i) for i in range(5)))
        assert results == [f"echo:msg{i}".encode() for i in range(5)]
        assert fwd.connections == 5 and len(resolved) == 5
        assert fwd.errors == []
    finally:
        await fwd.close()
        server.close()


async def test_forwarder_reports_refused_ports(kubelet: FakeKubelet, api: ApiClient) -> None:
    async def resolve() -> str:
        return "head"

    fwd = Forwarder(api, "ns", resolve, 8000)
    local = await fwd.start()
    try:
        r, w = await asyncio.open_connection("127.0.0.1", local)
        assert await asyncio.wait_for(r.read(), 10) == b""  # closed: nothing listens in the pod
        w.close()
        assert any("connection refused" in e for e in fwd.errors)
    finally:
        await fwd.close()
