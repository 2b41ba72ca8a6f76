"""Pod streams through the API server: container logs (`pods/log`) and port-forwarding (`pods/portforward`).

Both go through the API server to the kubelet of the pod's node, so they work on any cluster the client can
reach, with the client's credentials (RBAC: `get pods/log`, `get pods/portforward`).

Port-forwarding speaks the kubelet's WebSocket protocol `v4.channel.k8s.io`
(kubernetes `pkg/kubelet/cri/streaming/portforward/websocket.go`), which the API server proxies as is:
one WebSocket per forwarded TCP connection, `ports=<port>` in the query; every binary message starts with a
channel byte (0: data, 1: error); the kubelet first sends the port (uint16, little endian) on both
channels, then the pod's bytes on channel 0, and a text on channel 1 if it cannot reach the port. The
client writes `0x00 + bytes`. Closing the WebSocket closes the pod-side connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from rayop.runtime.client import PODS, ApiClient, ApiError

log = logging.getLogger("rayop.podio")

WS_PROTOCOL = "v4.channel.k8s.io"
DATA, ERROR = 0, 1
_CHUNK = 64 * 1024
HALF_CLOSE_GRACE = 5.0


def _error_from(status: int, raw: bytes, method: str, url: str) -> ApiError:
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = {"message": raw.decode(errors="replace").strip()}
    return ApiError(status, body if isinstance(body, dict) else {"message": str(body)}, method, url)


async def pod_logs(
    api: ApiClient,
    namespace: str,
    pod: str,
    *,
    container: str | None = None,
    follow: bool = False,
    previous: bool = False,
    tail_lines: int | None = None,
    timestamps: bool = False,
    since_seconds: int | None = None,
) -> AsyncIterator[bytes]:
    """Yield a container's output as the API server streams it; with `follow`, until the container stops."""
    params: dict[str, Any] = {
        "container": container,
        "follow": follow or None,
        "previous": previous or None,
        "tailLines": tail_lines,
        "timestamps": timestamps or None,
        "sinceSeconds": since_seconds,
    }
    url = api.url(PODS.path(namespace, pod, "log"), params)
    headers = await api.auth_headers()
    headers["Accept"] = "*/*"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None if follow else 120)
    async with api.session.get(url, headers=headers, timeout=timeout) as resp:
        if resp.status >= 400:
            raise _error_from(resp.status, await resp.read(), "GET", url)
        async for chunk in resp.content.iter_any():
            yield chunk


class PortForwardError(Exception):
    """The kubelet could not forward the port (nothing listens on it, the pod is gone...)."""


@dataclass
class PortStream:
    """One forwarded TCP connection to a pod's port."""

    ws: aiohttp.ClientWebSocketResponse
    port: int
    _prefix_seen: set[int] = field(default_factory=set)

    async def read(self) -> bytes:
        """The next bytes from the pod; b"" when the pod side closed. Raises PortForwardError."""
        while True:
            msg = await self.ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return b""
            if msg.type == aiohttp.WSMsgType.ERROR:
                raise PortForwardError(f"port-forward to port {self.port}: {self.ws.exception()}")
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            data: bytes = msg.data
            channel, payload = data[0], data[1:]
            # Each channel starts with the port number (2 bytes); everything after is the stream.
            if channel not in self._prefix_seen:
                self._prefix_seen.add(channel)
                payload = payload[2:]
            if channel == ERROR:
                if payload:
                    raise PortForwardError(payload.decode(errors="replace").strip())
                continue
            if channel == DATA and payload:
                return payload

    async def write(self, data: bytes) -> None:
        await self.ws.send_bytes(bytes([DATA]) + data)

    async def close(self) -> None:
        await self.ws.close()


async def open_port(api: ApiClient, namespace: str, pod: str, port: int) -> PortStream:
    """Open one connection to `port` of `pod`. Raises ApiError when the API server refuses (not found,
    forbidden, the kubelet unreachable)."""
    url = api.url(PODS.path(namespace, pod, "portforward"), {"ports": port})
    headers = await api.auth_headers()
    try:
        ws = await api.session.ws_connect(
            url,
            headers=headers,
            protocols=(WS_PROTOCOL,),
            max_msg_size=0,
            autoping=True,
            heartbeat=None,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10),
        )
    except aiohttp.WSServerHandshakeError as e:
        raise ApiError(
            e.status,
            {"message": f"port-forward refused: {e.message}", "reason": "PortForwardRefused"},
            "GET",
            url,
        ) from e
    return PortStream(ws, port)


async def _pump_to_pod(reader: asyncio.StreamReader, stream: PortStream) -> None:
    while data := await reader.read(_CHUNK):
        await stream.write(data)


async def _pump_from_pod(stream: PortStream, writer: asyncio.StreamWriter) -> None:
    while data := await stream.read():
        writer.write(data)
        await writer.drain()


PodResolver = Callable[[], Awaitable[str]]


@dataclass
class Forwarder:
    """A local listener whose every connection becomes a port-forward to `remote_port` of the pod
    `resolve()` names at that moment (so a restarted head pod is followed)."""

    api: ApiClient
    namespace: str
    resolve: PodResolver
    remote_port: int
    local_port: int = 0
    host: str = "127.0.0.1"
    errors: list[str] = field(default_factory=list)
    connections: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the local port (chosen when 0). Raises OSError when the port is taken."""
        self._server = await asyncio.start_server(self._serve, self.host, self.local_port)
        sock = self._server.sockets[0]
        self.local_port = int(sock.getsockname()[1])
        return self.local_port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        stream: PortStream | None = None
        try:
            pod = await self.resolve()
            stream = await open_port(self.api, self.namespace, pod, self.remote_port)
            to_pod = asyncio.ensure_future(_pump_to_pod(reader, stream))
            from_pod = asyncio.ensure_future(_pump_from_pod(stream, writer))
            done, _ = await asyncio.wait({to_pod, from_pod}, return_when=asyncio.FIRST_COMPLETED)
            if from_pod not in done:
                # The local side stopped sending (a half-close); the pod's answer may still be coming.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(from_pod), HALF_CLOSE_GRACE)
            to_pod.cancel()
            from_pod.cancel()
            for result in await asyncio.gather(to_pod, from_pod, return_exceptions=True):
                if isinstance(result, Exception):
                    raise result
        except (PortForwardError, ApiError, aiohttp.ClientError, OSError) as e:
            msg = str(e) if not isinstance(e, ApiError) else f"{e.status} {e.message}"
            self.errors.append(msg)
            log.warning("port-forward %s:%d failed: %s", self.namespace, self.remote_port, msg)
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.close()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
