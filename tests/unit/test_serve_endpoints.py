"""Serve proxy health and ongoing requests, read from a pod's own endpoints (against the fake fleet)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rayop.ray.serve import PodEndpoints, ongoing_requests
from rayop.runtime.client import ApiClient, ClientConfig
from tests.fake_dashboard import FakeFleet

# What a Ray 2.60 node's exporter prints for the proxy gauge (labels shortened), next to other series.
RAY_METRICS = """\
# HELP ray_serve_num_ongoing_http_requests The number of ongoing requests in this HTTP proxy.
# TYPE ray_serve_num_ongoing_http_requests gauge
ray_serve_num_ongoing_http_requests{Component="core_worker",NodeAddress="10.213.5.3",SessionName="s",Version="2.60.0",WorkerId="w1",node_id="n1",node_ip_address="10.213.5.3"} 2.0
# HELP ray_serve_num_ongoing_grpc_requests The number of ongoing requests in this gRPC proxy.
# TYPE ray_serve_num_ongoing_grpc_requests gauge
ray_serve_num_ongoing_grpc_requests{Component="core_worker",node_id="n1",node_ip_address="10.213.5.3"} 1.0
# HELP ray_serve_num_http_requests_total The number of HTTP requests processed.
# TYPE ray_serve_num_http_requests_total counter
ray_serve_num_http_requests_total{application="hello",method="GET",route="/",status_code="200"} 1234.0
"""


def test_ongoing_requests_sums_http_and_grpc_proxies_only() -> None:
    assert ongoing_requests(RAY_METRICS) == 3
    assert ongoing_requests("# nothing served yet\n") == 0


@pytest.fixture
async def fleet() -> AsyncIterator[FakeFleet]:
    f = await FakeFleet().start()
    yield f
    await f.stop()


async def test_health_and_metrics_direct(fleet: FakeFleet) -> None:
    pods = PodEndpoints(resolve=fleet.resolve_pod, health_timeout=0.5)
    try:
        assert (await pods.proxy_health("ns", "p1", "10.0.0.1", 8000)).ok is True
        fleet.pod("p1").healthy = False
        h = await pods.proxy_health("ns", "p1", "10.0.0.1", 8000)
        assert h.ok is False and "503" in h.detail
        fleet.pod("p1").healthy, fleet.pod("p1").delay = True, 2.0
        assert (await pods.proxy_health("ns", "p1", "10.0.0.1", 8000)).ok is None  # slow, not "down"
        fleet.pod("p2").ongoing = 4
        assert await pods.ongoing_requests("ns", "p2", "10.0.0.2", 8080) == 4
        fleet.pod("p2").metrics_up = False
        assert await pods.ongoing_requests("ns", "p2", "10.0.0.2", 8080) is None
    finally:
        await pods.close()


async def test_refused_connection_is_not_serving() -> None:
    pods = PodEndpoints(health_timeout=1.0)
    try:
        h = await pods.proxy_health("ns", "p", "127.0.0.1", 9)  # discard port: nothing listens
        assert h.ok is False
    finally:
        await pods.close()


async def test_pod_proxy_url_through_the_api_server() -> None:
    api = ApiClient(ClientConfig(server="https://10.0.0.9:6443", token="tok"))
    try:
        base, headers = PodEndpoints(api, use_proxy=True).base("ns", "rs-abc-head-x", "10.1.1.1", 8000)
        assert base == "https://10.0.0.9:6443/api/v1/namespaces/ns/pods/rs-abc-head-x:8000/proxy"
        assert headers["Authorization"] == "Bearer tok"
        assert PodEndpoints().base("ns", "p", "fd00::1", 8080)[0] == "http://[fd00::1]:8080"
    finally:
        await api.close()
