"""The Ray dashboard client against an in-process fake dashboard."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from rayop.ray.dashboard import (
    DashboardClient,
    DashboardError,
    DashboardUnavailable,
    DuplicateSubmission,
    JobNotFound,
)
from rayop.runtime.client import ApiClient, ClientConfig
from tests.fake_dashboard import FakeDashboard


@pytest.fixture
async def fake() -> AsyncIterator[FakeDashboard]:
    d = await FakeDashboard().start()
    yield d
    await d.stop()


@pytest.fixture
async def client(fake: FakeDashboard) -> AsyncIterator[DashboardClient]:
    c = DashboardClient.direct(f"127.0.0.1:{fake.port}")
    yield c
    await c.close()


async def test_version_and_health(fake: FakeDashboard, client: DashboardClient) -> None:
    assert (await client.version())["version"] == "4"
    assert await client.gcs_healthy()
    fake.healthy = False
    assert not await client.gcs_healthy()
    with pytest.raises(DashboardError) as e:
        await client.gcs_healthz()
    assert e.value.status == 503
    assert "/api/gcs_healthz" in str(e.value)
    assert "GCS is not healthy" in str(e.value)


async def test_job_lifecycle(fake: FakeDashboard, client: DashboardClient) -> None:
    sid = await client.submit_job(
        {
            "entrypoint": "echo hi",
            "submission_id": "job-abcde",
            "metadata": {"a": "b"},
            "runtime_env": {"x": 1},
        }
    )
    assert sid == "job-abcde"
    info = await client.get_job("job-abcde")
    assert info.status == "PENDING"
    assert not info.terminal
    assert info.metadata == {"a": "b"}
    fake.set_status("job-abcde", "RUNNING")
    fake.jobs["job-abcde"].logs = "hello\n"
    assert (await client.get_job("job-abcde")).start_time > 0
    assert await client.get_job_logs("job-abcde") == "hello\n"
    assert [j.submission_id for j in await client.list_jobs()] == ["job-abcde"]
    assert await client.stop_job("job-abcde") is True
    info = await client.get_job("job-abcde")
    assert info.status == "STOPPED"
    assert info.terminal
    assert info.end_time > 0
    # stopping a finished job again is fine (KubeRay semantics)
    assert await client.stop_job("job-abcde") is False
    assert await client.delete_job("job-abcde") is True
    assert await client.list_jobs() == []


async def test_duplicate_submission_is_its_own_error(fake: FakeDashboard, client: DashboardClient) -> None:
    await client.submit_job({"entrypoint": "true", "submission_id": "dup-1"})
    with pytest.raises(DuplicateSubmission) as e:
        await client.submit_job({"entrypoint": "true", "submission_id": "dup-1"})
    assert e.value.submission_id == "dup-1"
    assert e.value.status == 500
    assert "already exists" in e.value.body
    assert e.value.url.endswith("/api/jobs/")
    assert len(fake.submissions) == 2
    assert len(fake.jobs) == 1


async def test_not_found_and_bad_request(client: DashboardClient) -> None:
    with pytest.raises(JobNotFound) as e:
        await client.get_job("nope")
    assert e.value.status == 404
    assert "does not exist" in e.value.body
    assert "/api/jobs/nope" in str(e.value)
    with pytest.raises(JobNotFound):
        await client.stop_job("nope")
    with pytest.raises(JobNotFound):
        await client.get_job_logs("nope")
    with pytest.raises(DashboardError) as e2:
        await client.submit_job({"submission_id": "x"})
    assert not isinstance(e2.value, DuplicateSubmission)
    assert e2.value.status == 400
    assert "missing entrypoint" in str(e2.value)


async def test_serve_applications(fake: FakeDashboard, client: DashboardClient) -> None:
    assert (await client.get_serve_applications())["applications"] == {}
    await client.put_serve_applications({"applications": [{"name": "app1", "import_path": "m:a"}]})
    assert fake.serve_config is not None
    got = await client.get_serve_applications()
    assert got["applications"]["app1"]["status"] == "DEPLOYING"
    assert any(p == "/api/serve/applications/?api_type=declarative" for _, p, _ in fake.requests)
    with pytest.raises(DashboardError) as e:
        await client.put_serve_applications({"nope": 1})
    assert e.value.status == 400
    assert "validation error" in str(e.value)


async def test_token_header() -> None:
    fake = await FakeDashboard(token="s3cret").start()
    try:
        async with DashboardClient.direct(fake.url) as anon:
            with pytest.raises(DashboardError) as e:
                await anon.version()
            assert e.value.status == 401
        async with DashboardClient.direct(fake.url, token="s3cret") as c:
            assert (await c.version())["ray_version"] == "2.60.0"
        assert fake.requests[-1][2].get("x-ray-authorization") == "Bearer s3cret"
    finally:
        await fake.stop()


async def test_unreachable_and_timeout(fake: FakeDashboard) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    async with DashboardClient.direct(f"127.0.0.1:{free}") as c:
        with pytest.raises(DashboardUnavailable) as e:
            await c.get_job("a")
        assert e.value.status is None
        assert f"127.0.0.1:{free}/api/jobs/a" in str(e.value)
    fake.delay = 1.0
    async with DashboardClient.direct(fake.url, timeout=0.2) as c:
        with pytest.raises(DashboardUnavailable) as e:
            await c.version()
        assert "timed out" in str(e.value)


async def test_via_proxy_builds_service_proxy_url(fake: FakeDashboard) -> None:
    api = ApiClient(ClientConfig(server=fake.url, token="kube-token"))
    try:
        c = DashboardClient.via_proxy(api, "ns1", "rc-head-svc", token="ray-token")
        assert c.base_url == f"{fake.url}/api/v1/namespaces/ns1/services/rc-head-svc:dashboard/proxy"
        assert c.timeout == 10.0
        with pytest.raises(DashboardError) as e:
            await c.version()  # the fake has no proxy route: the 404 must name the proxy URL
        assert e.value.status == 404
        assert "/services/rc-head-svc:dashboard/proxy/api/version" in e.value.url
        _, _, headers = fake.requests[-1]
        assert headers["Authorization"] == "Bearer kube-token"
        assert headers["x-ray-authorization"] == "Bearer ray-token"
        await c.close()  # borrowed session stays open
        assert not api.session.closed
    finally:
        await api.close()


async def test_proxy_404_for_a_missing_service_is_not_job_not_found(fake: FakeDashboard) -> None:
    api = ApiClient(ClientConfig(server=fake.url))
    try:
        c = DashboardClient.via_proxy(api, "ns1", "gone-head-svc")
        # the fake answers any unknown path with aiohttp's plain 404; emulate the API server's Status body
        status_body = (
            '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
            '"message":"services \\"gone-head-svc\\" not found","reason":"NotFound","code":404}'
        )
        from aiohttp import web

        async def status404(_: web.Request) -> web.Response:
            return web.Response(status=404, text=status_body, content_type="application/json")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", status404)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        c.base_url = f"http://127.0.0.1:{port}/api/v1/namespaces/ns1/services/gone-head-svc:dashboard/proxy"
        try:
            with pytest.raises(DashboardError) as e:
                await c.get_job("x")
            assert not isinstance(e.value, JobNotFound)
            assert "gone-head-svc" in str(e.value)
        finally:
            await runner.cleanup()
        await c.close()
    finally:
        await api.close()
