"""With `--use-kubernetes-proxy` the operator reaches Ray only through the API server's proxies, so what it
may do there is decided by the chart's roles: each call the controllers make through a proxy, made with
the operator's own clients as the operator (tests/rbac.py), must get past authorization.

The Service has no endpoints and the Pod does not exist: a call the roles allow comes back 404 or 503 from
the API server, one they refuse comes back 403 before that. A 403
here is what a RayService on a cluster the operator cannot reach directly would meet: its Serve config
PUT refused, its RayServeDeployments never made (the HPA e2e test found it on real Ray).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

import pytest

from rayop.ray.dashboard import DashboardClient, DashboardError
from rayop.ray.serve import PodEndpoints
from rayop.runtime.client import SERVICES, ApiClient
from tests import rbac

HEAD_SERVICE = "c-head-svc"
POD = "c-head-abcde"
# What the API server answers once authorization let the call through: the Service has no endpoints
# (404 or 503, depending on whether it found an Endpoints object), the Pod does not exist (404).
PAST_AUTHORIZATION = (404, 503)


@pytest.fixture
async def op(kube: ApiClient) -> AsyncIterator[ApiClient]:
    client = rbac.operator_client(kube)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def head_service(kube: ApiClient, namespace: str) -> str:
    """A head Service with the dashboard port and no Pods behind it."""
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": HEAD_SERVICE, "namespace": namespace},
        "spec": {"ports": [{"name": "dashboard", "port": 8265}]},
    }
    await kube.create(SERVICES, svc, namespace)
    return HEAD_SERVICE


async def _status(call: Awaitable[object]) -> int | None:
    """The HTTP status a dashboard call got (200 when it raised nothing)."""
    try:
        await call
    except DashboardError as e:
        return e.status
    return 200


async def test_the_rayservice_controller_may_read_and_apply_serve_config_through_the_service_proxy(
    op: ApiClient, namespace: str, head_service: str
) -> None:
    dash = DashboardClient.via_proxy(op, namespace, head_service)
    try:
        # GET is `get` on services/proxy, PUT (the Serve config) is `update`.
        assert await _status(dash.get_serve_applications()) in PAST_AUTHORIZATION
        assert await _status(dash.put_serve_applications({"applications": []})) in PAST_AUTHORIZATION
    finally:
        await dash.close()


async def test_the_rayjob_and_workergroup_controllers_may_submit_and_list_through_the_service_proxy(
    op: ApiClient, namespace: str, head_service: str
) -> None:
    dash = DashboardClient.via_proxy(op, namespace, head_service)
    try:
        # POST (a job submission) is `create` on services/proxy, reading Ray's nodes `get`.
        assert (
            await _status(dash.submit_job({"entrypoint": "true", "submission_id": "x"})) in PAST_AUTHORIZATION
        )
        assert await _status(dash.list_alive_nodes()) in PAST_AUTHORIZATION
    finally:
        await dash.close()


async def test_the_rayservice_controller_may_ask_serve_proxies_through_the_pod_proxy(
    op: ApiClient, namespace: str
) -> None:
    pods = PodEndpoints(op, use_proxy=True)
    try:
        # Serve's /-/healthz and the metrics page: `get` on pods/proxy.
        health = await pods.proxy_health(namespace, POD, "10.0.0.1", 8000)
        assert health.ok is False and health.detail.startswith("HTTP 404"), health
        url, headers = pods.base(namespace, POD, "10.0.0.1", 8080)
        async with op.session.get(url + "/metrics", headers=headers) as resp:
            assert resp.status == 404, await resp.text()
    finally:
        await pods.close()
