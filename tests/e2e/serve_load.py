"""A client sending steady traffic to a RayService through its serve Service, and the operator as a process.

Requests go through the API server's service proxy (`/api/v1/namespaces/<ns>/services/<svc>:serve/proxy/`),
which resolves the Service's endpoints on every request, as a cluster client going through the Service's
selector would. A request fails when it gets a non-2xx answer, a connection error, or no answer within 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp

from rayop.runtime.client import ApiClient

REPO = Path(__file__).resolve().parents[2]
# A request is lost when it fails or has no answer within this. The tests assert that the operator's
# switches lose nothing; on a host whose CPU is mostly taken elsewhere (the load generator, the API
# server's proxy and two Ray clusters share 2 cores) an answer can take more than 10 s without anything
# having been dropped.
TIMEOUT_SECONDS = 30.0


@dataclass
class Failure:
    at: float
    what: str


@dataclass
class Load:
    """Counts of one run; `at` times are seconds since the run started."""

    rate: float
    sent: int = 0
    ok: int = 0
    failures: list[Failure] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    last_ok: float = 0.0
    bodies: dict[str, int] = field(default_factory=dict)
    stopped: float | None = None  # when the load ended: a summary made later still covers only the run

    @property
    def failed(self) -> int:
        return len(self.failures)

    def elapsed(self) -> float:
        return (self.stopped if self.stopped is not None else time.monotonic()) - self.started

    def achieved_rate(self) -> float:
        return self.sent / max(self.elapsed(), 1e-9)

    def summary(self) -> str:
        first = ", ".join(f"{f.at:.1f}s {f.what}" for f in self.failures[:5])
        return (
            f"sent {self.sent} in {self.elapsed():.1f}s ({self.achieved_rate():.1f}/s), ok {self.ok}, "
            f"failed {self.failed}" + (f" (first: {first})" if first else "")
        )


def serve_url(api: ApiClient, namespace: str, service: str, path: str = "/") -> str:
    return f"{api.config.server}/api/v1/namespaces/{quote(namespace)}/services/{quote(service)}:serve/proxy{path}"


async def get(api: ApiClient, url: str, timeout: float = TIMEOUT_SECONDS) -> tuple[int, str]:
    headers = {}
    bearer = api.config.bearer()
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    async with api.session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
        return resp.status, await resp.text(errors="replace")


@contextlib.asynccontextmanager
async def steady_load(
    api: ApiClient, namespace: str, service: str, *, rate: float = 25.0, path: str = "/"
) -> AsyncIterator[Load]:
    """Start a request every 1/rate seconds (whatever the latency, up to 200 in flight) until the block ends."""
    load = Load(rate=rate)
    url = serve_url(api, namespace, service, path)
    in_flight: set[asyncio.Task[None]] = set()

    async def one() -> None:
        at = load.elapsed()
        try:
            status, body = await get(api, url)
        except TimeoutError:
            load.failures.append(Failure(at, f"no answer within {TIMEOUT_SECONDS:g}s"))
            return
        except aiohttp.ClientError as e:
            load.failures.append(Failure(at, f"{type(e).__name__}: {e}"))
            return
        if 200 <= status < 300:
            load.ok += 1
            load.last_ok = load.elapsed()
            key = body.strip()[:60]
            load.bodies[key] = load.bodies.get(key, 0) + 1
        else:
            load.failures.append(Failure(at, f"HTTP {status}: {body.strip()[:120]}"))

    async def pace() -> None:
        n = 0
        while True:
            n += 1
            due = load.started + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= 200:
                continue
            load.sent += 1
            t = asyncio.create_task(one())
            in_flight.add(t)
            t.add_done_callback(in_flight.discard)

    task = asyncio.create_task(pace())
    try:
        yield load
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        load.stopped = time.monotonic()
        if in_flight:
            await asyncio.wait(in_flight, timeout=TIMEOUT_SECONDS + 5)


class OperatorProcess:
    """`rayop operator` watching one namespace, reaching Ray through the API server (no cluster DNS here)."""

    def __init__(self, kubeconfig: Path, namespace: str, log: Path) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        env = dict(os.environ, ENABLE_WEBHOOKS="false")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rayop.cli.main",
                "operator",
                f"--kubeconfig={self.kubeconfig}",
                "--metrics-addr=0",
                "--health-probe-bind-address=127.0.0.1:0",
                "--enable-leader-election=false",
                f"--watch-namespace={self.namespace}",
                "--use-kubernetes-proxy=true",
                "--log-stdout-encoder=console",
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        out.close()

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.kill()
