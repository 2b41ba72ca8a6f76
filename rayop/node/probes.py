"""Container probes (exec, httpGet, tcpSocket) with the kubelet's timing rules."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

ExecFn = Callable[[list[str], float], Awaitable[int]]


@dataclass(frozen=True)
class ProbeTiming:
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def of(cls, probe: Mapping[str, Any]) -> ProbeTiming:
        return cls(
            initial_delay=float(probe.get("initialDelaySeconds", 0)),
            period=float(probe.get("periodSeconds", 10)),
            timeout=float(probe.get("timeoutSeconds", 1)),
            success_threshold=int(probe.get("successThreshold", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)),
        )


def _port(port: Any, container: Mapping[str, Any]) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"unknown named port {port!r}")


_NO_VERIFY = ssl.create_default_context()
_NO_VERIFY.check_hostname = False
_NO_VERIFY.verify_mode = ssl.CERT_NONE


async def run_probe(
    probe: Mapping[str, Any],
    pod_ip: str,
    container: Mapping[str, Any],
    exec_fn: ExecFn,
    session: aiohttp.ClientSession,
) -> tuple[bool, str]:
    """One probe attempt: (success, message)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "exec" in probe:
            code = await exec_fn(list(probe["exec"].get("command") or []), timeout)
            return code == 0, f"exit code {code}"
        if "httpGet" in probe:
            h = probe["httpGet"]
            host = h.get("host") or pod_ip
            scheme = (h.get("scheme") or "HTTP").lower()
            path = h.get("path") or "/"
            if not path.startswith("/"):
                path = "/" + path
            url = f"{scheme}://{host}:{_port(h.get('port'), container)}{path}"
            headers = {x["name"]: x["value"] for x in h.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.36")
            async with session.get(
                url,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                ssl=_NO_VERIFY if scheme == "https" else False,
                allow_redirects=False,
            ) as resp:
                await resp.read()
                return 200 <= resp.status < 400, f"HTTP probe {url}: {resp.status}"
        if "tcpSocket" in probe:
            t = probe["tcpSocket"]
            host = t.get("host") or pod_ip
            port = _port(t.get("port"), container)
            _, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            w.close()
            return True, ""
        # grpc probes need a gRPC client the agent does not carry; count them as passing.
        return True, "unsupported probe type treated as success"
    except TimeoutError:
        return False, f"probe timed out after {timeout}s"
    except (OSError, aiohttp.ClientError, ValueError) as e:
        return False, f"probe failed: {e}"


class ProbeWorker:
    """Runs one probe forever; reports state changes through `on_change(result)`."""

    def __init__(
        self,
        kind: str,
        probe: Mapping[str, Any],
        attempt: Callable[[], Awaitable[tuple[bool, str]]],
        on_change: Callable[[str, bool, str], None],
    ) -> None:
        self.kind = kind
        self.timing = ProbeTiming.of(probe)
        self.attempt = attempt
        self.on_change = on_change
        # Readiness starts failing; liveness and startup start passing until proven otherwise.
        self.result = kind != "readiness"
        self.successes = 0
        self.failures = 0

    async def run(self) -> None:
        await asyncio.sleep(self.timing.initial_delay)
        while True:
            ok, msg = await self.attempt()
            if ok:
                self.successes += 1
                self.failures = 0
                threshold = 1 if self.kind != "readiness" else self.timing.success_threshold
                if not self.result and self.successes >= threshold:
                    self.result = True
                    self.on_change(self.kind, True, msg)
                elif self.kind == "startup" and self.successes == 1:
                    self.on_change(self.kind, True, msg)
                    return
            else:
                self.failures += 1
                self.successes = 0
                if self.failures >= self.timing.failure_threshold and (
                    self.result or self.kind != "readiness"
                ):
                    self.result = False
                    self.on_change(self.kind, False, msg)
                    if self.kind != "readiness":
                        return
            await asyncio.sleep(self.timing.period)
