"""What a Ray pod's own HTTP endpoints say about Ray Serve: its proxy's health and the requests in flight.

- `GET :<serve port>/-/healthz` on the pod: Serve's HTTP proxy answers 200 `success` once its route table is
  populated (and, off the head, once a replica is known); 503 with the reason otherwise, or while it
  drains (`python/ray/serve/_private/proxy.py`, `proxy_router.py`). KubeRay labels the head
  `ray.io/serve=true` from this answer (2 s timeout).
- `GET :<metrics port>/metrics` on the pod: the node's Prometheus exporter (`--metrics-export-port`).
  The proxy sets the gauge `serve_num_ongoing_http_requests` (exported with Ray's `ray_` prefix, and a gRPC
  twin) to the requests it is handling, per node (`python/ray/serve/_private/request_ingress_metrics.py`).
  Ray's agents export application metrics every `metrics_report_interval_ms` (10 s by default), so the
  value lags by up to that much.

A pod is reached straight at its IP, or through the API server's pod proxy
(`/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy/...`, KubeRay's --use-kubernetes-proxy).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from rayop.runtime.client import ApiClient

HEALTHZ_PATH: Final = "/-/healthz"
METRICS_PATH: Final = "/metrics"
HEALTH_TIMEOUT_SECONDS: Final = 2.0
METRICS_TIMEOUT_SECONDS: Final = 5.0
# Both protocols' proxies: a gRPC request in flight is as much in flight as an HTTP one.
ONGOING_METRICS: Final = ("ray_serve_num_ongoing_http_requests", "ray_serve_num_ongoing_grpc_requests")

# (namespace, pod name, pod IP, port) → the base URL that reaches that port of the pod.
PodResolver = Callable[[str, str, str, int], str]


@dataclass(frozen=True)
class ProxyHealth:
    """`ok`: True (200), False (any other answer, or refused), None (no answer in time)."""

    ok: bool | None
    detail: str = ""


def ongoing_requests(metrics_text: str) -> int:
    """Requests in flight at the Serve proxies whose samples are in a Prometheus text page (0 when the
    proxies never set the gauge: they have not served yet)."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name in ONGOING_METRICS:
            total += sum(s.value for s in family.samples)
    return round(total)


class PodEndpoints:
    """Calls a Ray pod's serve and metrics ports, direct or through the API server."""

    def __init__(
        self,
        api: ApiClient | None = None,
        *,
        use_proxy: bool = False,
        resolve: PodResolver | None = None,
        health_timeout: float = HEALTH_TIMEOUT_SECONDS,
    ) -> None:
        self.api = api
        self.use_proxy = use_proxy and api is not None
        self.resolve = resolve
        self.health_timeout = health_timeout
        self._own: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self.use_proxy and self.api is not None:
            return self.api.session
        if self._own is None or self._own.closed:
            self._own = aiohttp.ClientSession()
        return self._own

    async def close(self) -> None:
        if self._own is not None:
            await self._own.close()
            self._own = None

    def base(self, namespace: str, pod: str, ip: str, port: int) -> tuple[str, dict[str, str]]:
        if self.resolve is not None:
            return self.resolve(namespace, pod, ip, port).rstrip("/"), {}
        if self.use_proxy and self.api is not None:
            headers: dict[str, str] = {"User-Agent": self.api.user_agent}
            bearer = self.api.config.bearer()
            if bearer:
                headers["Authorization"] = f"Bearer {bearer}"
            url = f"{self.api.config.server}/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}:{port}/proxy"
            return url, headers
        host = f"[{ip}]" if ":" in ip else ip
        return f"http://{host}:{port}", {}

    async def proxy_health(self, namespace: str, pod: str, ip: str, port: int) -> ProxyHealth:
        base, headers = self.base(namespace, pod, ip, port)
        # Through the API server a pod that does not answer still gets a (503) answer, so allow the hop.
        timeout = self.health_timeout * (5 if self.use_proxy else 1)
        try:
            async with self._session().get(
                base + HEALTHZ_PATH, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                text = await resp.text(errors="replace")
                if resp.status == 200:
                    return ProxyHealth(True)
                return ProxyHealth(False, f"HTTP {resp.status}: {text.strip()[:200]}")
        except TimeoutError:
            return ProxyHealth(None, f"no answer within {timeout:g}s")
        except aiohttp.ClientConnectionError as e:
            if isinstance(e, aiohttp.ServerTimeoutError):
                return ProxyHealth(None, str(e))
            return ProxyHealth(False, f"{type(e).__name__}: {e}")
        except aiohttp.ClientError as e:
            return ProxyHealth(False, f"{type(e).__name__}: {e}")

    async def ongoing_requests(self, namespace: str, pod: str, ip: str, port: int) -> int | None:
        """Requests in flight at the pod's Serve proxy; None when its metrics could not be read."""
        base, headers = self.base(namespace, pod, ip, port)
        try:
            async with self._session().get(
                base + METRICS_PATH,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=METRICS_TIMEOUT_SECONDS),
            ) as resp:
                if resp.status != 200:
                    return None
                text = await resp.text(errors="replace")
        except (TimeoutError, aiohttp.ClientError):
            return None
        try:
            return ongoing_requests(text)
        except ValueError:
            return None


def pod_ip(pod: Mapping[str, object]) -> str:
    st = pod.get("status")
    return str(st.get("podIP") or "") if isinstance(st, Mapping) else ""
