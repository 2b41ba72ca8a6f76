"""`kubectl exec` and port-forwarding into pods, over the kubelet's WebSocket streaming protocols.

Since Kubernetes 1.36 the API server passes WebSocket exec and port-forward requests to a node that
declares `ExtendWebSocketsToKubelet` in `status.declaredFeatures` unchanged (pkg/registry/core/pod/rest/
subresources.go), instead of translating them to SPDY. The node agent declares it and speaks:

- exec: `v5.channel.k8s.io` (what kubectl sends) and `v4.channel.k8s.io`. Each binary message starts with
  a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the final status (a metav1.Status as JSON), 4 terminal
  resize ({"Width": w, "Height": h}); v5 adds 255 + channel, "this stream is closed" (stdin EOF). The
  command runs through the shim's `exec` mode, in the container's namespaces; `tty=true` gives it a pty.
- port-forward: `v4.channel.k8s.io` (what WebSocket clients such as the Python kubernetes client send):
  two channels per requested port, 2i for data and 2i+1 for errors, each opened by the port number as two
  little-endian bytes. Connections are made to localhost inside the pod's network namespace, as a CRI
  runtime does.

SPDY (kubectl's port-forward, tunnelled through a WebSocket or not, and clients older than 1.30) is
answered with a 400 that says so: see docs/local-plane.md for what works instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import socket
import struct
import termios
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from aiohttp import WSMsgType, web

from rayop.node import containers

if TYPE_CHECKING:
    from rayop.node.pod import PodWorker

log = logging.getLogger("rayop.node.streaming")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
PORT_FORWARD_PROTOCOLS = ("v4.channel.k8s.io",)
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255
OUTPUT_DRAIN_SECONDS = 2.0
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
SPDY_UNSUPPORTED = (
    "the rayop node agent streams exec and port-forward over WebSockets only, not SPDY: use kubectl "
    "1.30 or newer for exec; for port-forward use a WebSocket client (v4.channel.k8s.io) or, on the local "
    "plane, the pod IP directly (see docs/local-plane.md)"
)


class StreamHost(Protocol):
    """What exec and port-forward need from the node agent (the kubelet API's host is one)."""

    def pod_worker(self, namespace: str, name: str) -> PodWorker | None: ...


def _offered(request: web.Request) -> list[str]:
    raw = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in raw.split(",") if p.strip()]


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _flag(request: web.Request, *names: str) -> bool:
    return any(request.query.get(n, "").lower() in ("1", "true") for n in names)


def _find(host: StreamHost, request: web.Request) -> PodWorker | web.Response:
    ns, name = request.match_info["namespace"], request.match_info["pod"]
    w = host.pod_worker(ns, name)
    uid = request.match_info.get("uid")
    if w is None or (uid and uid != w.uid):
        return web.Response(status=404, text="pod does not exist")
    return w


def status_message(code: int | None, error: str = "") -> bytes:
    """The final status on the error channel (the JSON of a metav1.Status)."""
    if error:
        body: dict[str, object] = {
            "metadata": {},
            "status": "Failure",
            "message": error,
            "reason": "InternalError",
        }
    elif code:
        body = {
            "metadata": {},
            "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    else:
        body = {"metadata": {}, "status": "Success"}
    return json.dumps(body, separators=(",", ":")).encode()


# --- exec ----------------------------------------------------------------------------------------------


def exec_handler(host: StreamHost) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if not _is_websocket(request):
            return web.Response(status=400, text=SPDY_UNSUPPORTED)
        proto = next((p for p in _offered(request) if p in EXEC_PROTOCOLS), None)
        if proto is None:
            return web.Response(status=400, text=f"{SPDY_UNSUPPORTED}; offered: {_offered(request)}")
        command = request.query.getall("command", [])
        # The API server names them input/output/error (pkg/apis/core ExecStdinParam...); clients that
        # call the kubelet directly may use the PodExecOptions names.
        stdin, stdout, stderr = (
            _flag(request, "input", "stdin"),
            _flag(request, "output", "stdout"),
            _flag(request, "error", "stderr"),
        )
        tty = _flag(request, "tty")
        if not command:
            return web.Response(status=400, text="you must specify a command (query parameter command)")
        if not (stdin or stdout or stderr):
            return web.Response(status=400, text="you must specify at least 1 of stdin, stdout, stderr")
        found = _find(host, request)
        if isinstance(found, web.Response):
            return found
        container = request.match_info["container"]
        run = found.state.containers.get(container)
        if run is None or not run.running:
            return web.Response(
                status=400, text=f'container "{container}" in pod "{found.key[1]}" is not running'
            )
        spec_path = found.dir / "containers" / container / str(run.attempt) / "spec.json"
        argv = containers.exec_argv(run.pid, spec_path, command, tty=tty)
        ws = web.WebSocketResponse(protocols=(proto,), max_msg_size=0, autoping=True)
        await ws.prepare(request)
        session = ExecSession(ws, proto, stdin, stdout, stderr and not tty, tty)
        await session.run(argv)
        return ws

    return handle


class ExecSession:
    def __init__(
        self, ws: web.WebSocketResponse, proto: str, stdin: bool, stdout: bool, stderr: bool, tty: bool
    ) -> None:
        self.ws, self.v5 = ws, proto.startswith("v5.")
        self.stdin, self.stdout, self.stderr, self.tty = stdin, stdout, stderr, tty
        self.pty: int | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self._send_lock = asyncio.Lock()

    async def send(self, channel: int, data: bytes) -> None:
        async with self._send_lock:
            await self.ws.send_bytes(bytes([channel]) + data)

    async def run(self, argv: list[str]) -> None:
        # Tell the client the streams are up: an empty message on the lowest channel it reads.
        await self.send(STDOUT if self.stdout else STDERR if self.stderr else ERROR, b"")
        pumps: list[asyncio.Task[None]] = []
        try:
            pumps = await self._start(argv)
        except OSError as e:
            await self.send(ERROR, status_message(None, f"cannot start the command: {e}"))
            await self.ws.close()
            return
        assert self.proc is not None
        reader = asyncio.get_running_loop().create_task(self._read_client())
        code = await self.proc.wait()
        # Output written just before the exit is still in the pipes: let it out, but do not wait for
        # background processes of the command that keep them open.
        await asyncio.wait(pumps, timeout=OUTPUT_DRAIN_SECONDS)
        for t in pumps:
            t.cancel()
        reader.cancel()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.send(ERROR, status_message(code))
        await self.ws.close()
        if self.pty is not None:
            os.close(self.pty)

    async def _start(self, argv: list[str]) -> list[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        env = dict(os.environ, TERM=os.environ.get("TERM", "xterm")) if self.tty else None
        if self.tty:
            master, slave = os.openpty()
            self.pty = master
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
                )
            finally:
                os.close(slave)
            return [loop.create_task(self._pump_fd(master, STDOUT))]
        pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=pipe if self.stdin else null,
            stdout=pipe if self.stdout else null,
            stderr=pipe if self.stderr else null,
            start_new_session=True,
        )
        pumps = []
        if self.proc.stdout is not None:
            pumps.append(loop.create_task(self._pump_stream(self.proc.stdout, STDOUT)))
        if self.proc.stderr is not None:
            pumps.append(loop.create_task(self._pump_stream(self.proc.stderr, STDERR)))
        return pumps

    async def _pump_stream(self, stream: asyncio.StreamReader, channel: int) -> None:
        while chunk := await stream.read(32768):
            await self.send(channel, chunk)

    async def _pump_fd(self, fd: int, channel: int) -> None:
        loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        ready = asyncio.Event()
        loop.add_reader(fd, ready.set)
        try:
            while True:
                await ready.wait()
                ready.clear()
                try:
                    chunk = os.read(fd, 32768)
                except BlockingIOError:
                    continue
                except OSError:
                    return  # EIO: every holder of the terminal's other end is gone
                if not chunk:
                    return
                await self.send(channel, chunk)
        finally:
            loop.remove_reader(fd)

    async def _write_stdin(self, data: bytes) -> None:
        if self.pty is not None:
            await asyncio.to_thread(os.write, self.pty, data)
        elif self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()

    def _close_stdin(self) -> None:
        if self.pty is None and self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()

    def _resize(self, data: bytes) -> None:
        if self.pty is None:
            return
        with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
            size = json.loads(data)
            fcntl.ioctl(
                self.pty,
                termios.TIOCSWINSZ,
                struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0),
            )

    async def _read_client(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY or not msg.data:
                    continue
                data: bytes = msg.data
                channel, payload = data[0], data[1:]
                if self.v5 and channel == CLOSE_SIGNAL:
                    if payload[:1] == bytes([STDIN]):
                        self._close_stdin()
                elif channel == STDIN and self.stdin:
                    await self._write_stdin(payload)
                elif channel == RESIZE:
                    self._resize(payload)
        except (ConnectionError, BrokenPipeError, OSError):
            pass
        finally:
            # The client went away: stop the command (its shim's child dies with the shim).
            if self.proc is not None and self.proc.returncode is None and self.ws.closed:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()


# --- port-forward --------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def connect_in_netns(netns: Path, port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP connection to localhost:port inside a network namespace. setns() moves only the calling
    thread, so a thread of its own makes the socket and ends; the socket stays in that namespace."""
    result: dict[str, socket.socket | OSError] = {}

    def work() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result["sock"] = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError as e:
            result["error"] = e

    t = threading.Thread(target=work, name=f"netns-connect-{port}", daemon=True)
    t.start()
    t.join()
    if "sock" in result:
        s = result["sock"]
        assert isinstance(s, socket.socket)
        s.setblocking(False)
        return s
    err = result.get("error")
    raise err if isinstance(err, OSError) else OSError("connect failed")


def port_forward_handler(host: StreamHost) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if not _is_websocket(request):
            return web.Response(status=400, text=SPDY_UNSUPPORTED)
        offered = _offered(request)
        proto = next((p for p in offered if p in PORT_FORWARD_PROTOCOLS), None)
        if offered and proto is None:
            return web.Response(status=400, text=f"{SPDY_UNSUPPORTED}; offered: {offered}")
        try:
            # One `port` parameter with a comma-separated list from the API server, or one per port.
            ports = [int(p) for v in request.query.getall("port", []) for p in v.split(",") if p.strip()]
        except ValueError:
            return web.Response(status=400, text="port: must be an integer")
        if not ports:
            return web.Response(status=400, text='query parameter "port" is required')
        if any(not 0 < p < 65536 for p in ports):
            return web.Response(status=400, text="port: must be between 1 and 65535")
        found = _find(host, request)
        if isinstance(found, web.Response):
            return found
        if not found.state.netns:
            return web.Response(status=400, text=f'pod "{found.key[1]}" has no running sandbox')
        ws = web.WebSocketResponse(protocols=(proto,) if proto else (), max_msg_size=0, autoping=True)
        await ws.prepare(request)
        await PortForwardSession(ws, NETNS_DIR / found.state.netns, ports, found.key).run()
        return ws

    return handle


class PortForwardSession:
    def __init__(
        self, ws: web.WebSocketResponse, netns: Path, ports: list[int], pod: tuple[str, str]
    ) -> None:
        self.ws, self.netns, self.ports, self.pod = ws, netns, ports, pod
        self.writers: dict[int, asyncio.StreamWriter] = {}
        self.pending: dict[int, list[bytes]] = {i: [] for i in range(len(ports))}
        self._send_lock = asyncio.Lock()

    async def send(self, channel: int, data: bytes) -> None:
        async with self._send_lock:
            await self.ws.send_bytes(bytes([channel]) + data)

    async def run(self) -> None:
        for i, port in enumerate(self.ports):
            await self.send(2 * i, struct.pack("<H", port))
            await self.send(2 * i + 1, struct.pack("<H", port))
        loop = asyncio.get_running_loop()
        conns = [loop.create_task(self._forward(i, port)) for i, port in enumerate(self.ports)]
        client = loop.create_task(self._read_client())

        async def all_done() -> None:
            await asyncio.gather(*conns, return_exceptions=True)

        done = loop.create_task(all_done())
        await asyncio.wait([client, done], return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        client.cancel()
        for t in conns:
            t.cancel()
        for w in self.writers.values():
            with contextlib.suppress(OSError):
                w.close()
        await self.ws.close()

    async def _forward(self, i: int, port: int) -> None:
        try:
            sock = await asyncio.to_thread(connect_in_netns, self.netns, port)
            reader, writer = await asyncio.open_connection(sock=sock)
        except OSError as e:
            msg = f"error forwarding port {port} to pod {self.pod[0]}/{self.pod[1]}: {e}"
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send(2 * i + 1, msg.encode())
            return
        self.writers[i] = writer
        for chunk in self.pending.pop(i, []):
            writer.write(chunk)
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
            while chunk := await reader.read(65536):
                await self.send(2 * i, chunk)

    async def _read_client(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY or not msg.data:
                    continue
                data: bytes = msg.data
                channel, payload = data[0], data[1:]
                if channel % 2 or channel // 2 >= len(self.ports):
                    continue
                i = channel // 2
                w = self.writers.get(i)
                if w is None:
                    if i in self.pending:
                        self.pending[i].append(payload)
                    continue
                w.write(payload)
                await w.drain()
