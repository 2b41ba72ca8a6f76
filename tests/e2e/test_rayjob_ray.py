"""RayJobs run real Ray: the RayJob + RayCluster controllers on the real plane, the job executed by a real
Ray 2.60 head started by this module as a local process.

The RayCluster's pods are marked Running by a fake kubelet (tests/integration/rayclusters.py); every
RayJob's dashboard URL is resolved to the local head, so several RayJobs share one real head, each with its
own submission id. In K8sJobMode the submitter pod runs KubeRay's real `bash -ce` script (wait for GCS,
`ray job status || ray job submit --no-wait`, `ray job logs --follow`) with the `ray` CLI of Ray 2.60.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from rayop.ray.dashboard import DashboardClient, JobInfo
from rayop.runtime.client import ApiClient
from tests.e2e.local_ray import RAY_BIN, LocalRayHead, start_head
from tests.helpers import eventually
from tests.integration.rayclusters import fake_kubelet
from tests.integration.rayjobs import (
    RAYCLUSTERS,
    RAYJOBS,
    get_rj,
    operator,
    rayjob,
    run_script,
    status_of,
    submitter_kubelet,
)

T = 120.0
HELLO = "python -c \"import ray; ray.init(); print('hello from rayop', int(ray.cluster_resources()['CPU']))\""


@pytest.fixture(scope="module")
def ray_head() -> Iterator[LocalRayHead]:
    head = start_head()
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture
async def dash(ray_head: LocalRayHead) -> AsyncIterator[DashboardClient]:
    c = DashboardClient.direct(ray_head.dashboard_url, timeout=10)
    yield c
    await c.close()


def resolver(head: LocalRayHead) -> Any:
    return lambda _url: head.dashboard_url


def address_map(head: LocalRayHead, st: dict[str, Any]) -> dict[str, str]:
    return {st["dashboardURL"]: f"127.0.0.1:{head.dashboard_port}"}


async def wait_state(kube: ApiClient, ns: str, name: str, dep: str, t: float = T) -> dict[str, Any]:
    async def ok() -> dict[str, Any] | None:
        st = status_of(await get_rj(kube, ns, name))
        return st if st.get("jobDeploymentStatus") == dep else None

    res: dict[str, Any] = await eventually(ok, t, interval=0.2, what=f"{name} {dep}")
    return res


async def jobs_with_prefix(dash: DashboardClient, prefix: str) -> list[JobInfo]:
    return [j for j in await dash.list_jobs() if j.submission_id.startswith(prefix)]


async def test_k8s_job_mode_real_submitter_to_succeeded_with_logs(
    kube: ApiClient, namespace: str, ray_head: LocalRayHead, dash: DashboardClient
) -> None:
    ns = namespace
    logs: list[str] = []
    statuses: list[str] = []

    async def run(pod: dict[str, Any]) -> int:
        st = status_of(await get_rj(kube, ns, "kjob"))
        return await run_script(pod, address_map(ray_head, st), str(RAY_BIN), logs)

    t0 = time.monotonic()
    async with (
        operator(kube, ns, resolver=resolver(ray_head)),
        fake_kubelet(kube, ns),
        submitter_kubelet(kube, ns, run) as ran,
    ):
        await kube.create(RAYJOBS, rayjob("kjob", ns, entrypoint=HELLO, shutdownAfterJobFinishes=True))

        async def seen_running() -> bool:
            st = status_of(await get_rj(kube, ns, "kjob"))
            statuses.append(str(st.get("jobStatus")))
            return st.get("jobDeploymentStatus") in ("Complete", "Failed")

        await eventually(seen_running, T, interval=0.1, what="kjob finished")
        st = status_of(await get_rj(kube, ns, "kjob"))
        assert (st["jobDeploymentStatus"], st["jobStatus"]) == ("Complete", "SUCCEEDED"), st
        assert st["succeeded"] == 1
        assert st["rayJobInfo"]["startTime"] and st["rayJobInfo"]["endTime"]
        # the submitter pod ran once, submitted, and followed the logs to the end
        assert len(ran) == 1
        assert "hello from rayop 2" in logs[0], logs[0]
        assert "submitted successfully" in logs[0]
        ray_logs = await dash.get_job_logs(st["jobId"])
        assert "hello from rayop 2" in ray_logs
        (job,) = await jobs_with_prefix(dash, "kjob-")
        assert job.status == "SUCCEEDED"
        # shutdownAfterJobFinishes with TTL 0: the cluster goes
        await eventually(
            lambda: _gone(kube, RAYCLUSTERS, st["rayClusterName"], ns), T, what="cluster deleted"
        )
    assert "RUNNING" in statuses or "PENDING" in statuses
    print(f"\nK8sJobMode apply->Complete: {time.monotonic() - t0:.1f}s")


async def _gone(kube: ApiClient, res: Any, name: str, ns: str) -> bool:
    return await kube.get_or_none(res, name, ns) is None


async def test_http_mode_to_succeeded_with_logs_and_restart(
    kube: ApiClient, namespace: str, ray_head: LocalRayHead, dash: DashboardClient
) -> None:
    ns = namespace
    entry = "python -c \"import time; print('step 1', flush=True); time.sleep(4); print('step 2')\""
    async with operator(kube, ns, resolver=resolver(ray_head)), fake_kubelet(kube, ns):
        await kube.create(RAYJOBS, rayjob("hjob", ns, entrypoint=entry, submissionMode="HTTPMode"))

        async def running() -> bool:
            st = status_of(await get_rj(kube, ns, "hjob"))
            return st.get("jobStatus") == "RUNNING"

        await eventually(running, T, interval=0.1, what="hjob RUNNING")
    # the operator is gone while the job runs; a new one adopts it
    async with operator(kube, ns, resolver=resolver(ray_head)), fake_kubelet(kube, ns):
        st = await wait_state(kube, ns, "hjob", "Complete")
    assert st["jobStatus"] == "SUCCEEDED"
    logs = await dash.get_job_logs(st["jobId"])
    assert "step 1" in logs and "step 2" in logs
    assert [j.submission_id for j in await jobs_with_prefix(dash, "hjob-")] == [st["jobId"]]


async def test_failing_entrypoint_is_retried_on_new_clusters(
    kube: ApiClient, namespace: str, ray_head: LocalRayHead, dash: DashboardClient
) -> None:
    ns = namespace
    entry = "python -c \"import sys; print('about to fail'); sys.exit(3)\""
    async with operator(kube, ns, resolver=resolver(ray_head)), fake_kubelet(kube, ns):
        await kube.create(
            RAYJOBS, rayjob("fjob", ns, entrypoint=entry, submissionMode="HTTPMode", backoffLimit=1)
        )
        st = await wait_state(kube, ns, "fjob", "Failed")
    assert (st["jobStatus"], st["reason"], st["failed"]) == ("FAILED", "AppFailed", 2)
    assert st["message"]  # Ray's own message
    jobs = await jobs_with_prefix(dash, "fjob-")
    assert len(jobs) == 2
    assert {j.status for j in jobs} == {"FAILED"}
    assert len({j.submission_id for j in jobs}) == 2


async def test_entrypoint_that_cannot_start_fails_clearly(
    kube: ApiClient, namespace: str, ray_head: LocalRayHead, dash: DashboardClient
) -> None:
    ns = namespace
    async with operator(kube, ns, resolver=resolver(ray_head)), fake_kubelet(kube, ns):
        await kube.create(
            RAYJOBS, rayjob("njob", ns, entrypoint="/nonexistent/program --x", submissionMode="HTTPMode")
        )
        st = await wait_state(kube, ns, "njob", "Failed")
    assert (st["jobStatus"], st["reason"]) == ("FAILED", "AppFailed")
    assert st["message"], st
    logs = await dash.get_job_logs(st["jobId"])
    assert "nonexistent" in logs


async def test_active_deadline_stops_a_long_job(
    kube: ApiClient, namespace: str, ray_head: LocalRayHead, dash: DashboardClient
) -> None:
    ns = namespace
    async with operator(kube, ns, resolver=resolver(ray_head)), fake_kubelet(kube, ns):
        await kube.create(
            RAYJOBS,
            rayjob("ljob", ns, entrypoint="sleep 600", submissionMode="HTTPMode", activeDeadlineSeconds=15),
        )
        st = await wait_state(kube, ns, "ljob", "Failed")
        assert st["reason"] == "DeadlineExceeded"

        async def stopped() -> bool:
            return (await dash.get_job(st["jobId"])).status == "STOPPED"

        await eventually(stopped, 30, what="Ray job stopped")


async def test_deleting_a_running_rayjob_stops_the_ray_job(
    kube: ApiClient, namespace: str, ray_head: LocalRayHead, dash: DashboardClient
) -> None:
    ns = namespace
    async with operator(kube, ns, resolver=resolver(ray_head)), fake_kubelet(kube, ns):
        await kube.create(RAYJOBS, rayjob("xjob", ns, entrypoint="sleep 600", submissionMode="HTTPMode"))

        async def running() -> dict[str, Any] | None:
            st = status_of(await get_rj(kube, ns, "xjob"))
            return st if st.get("jobStatus") == "RUNNING" else None

        st = await eventually(running, T, interval=0.2, what="xjob RUNNING")
        await kube.delete(RAYJOBS, "xjob", ns)
        await eventually(lambda: _gone(kube, RAYJOBS, "xjob", ns), T, what="RayJob gone")

    async def stopped() -> bool:
        return (await dash.get_job(st["jobId"])).status == "STOPPED"

    await eventually(stopped, 30, what="Ray job stopped")


async def test_operator_killed_during_initializing_and_running_submits_once(
    kube: ApiClient, namespace: str, ray_head: LocalRayHead, dash: DashboardClient
) -> None:
    ns = namespace
    logs: list[str] = []

    async def run(pod: dict[str, Any]) -> int:
        st = status_of(await get_rj(kube, ns, "ojob"))
        return await run_script(pod, address_map(ray_head, st), str(RAY_BIN), logs)

    entry = "python -c \"import time; time.sleep(6); print('done')\""
    async with operator(kube, ns, resolver=resolver(ray_head)):
        await kube.create(RAYJOBS, rayjob("ojob", ns, entrypoint=entry))
        await wait_state(kube, ns, "ojob", "Initializing")
    async with (
        operator(kube, ns, resolver=resolver(ray_head)),
        fake_kubelet(kube, ns),
        submitter_kubelet(kube, ns, run),
    ):

        async def running() -> bool:
            return status_of(await get_rj(kube, ns, "ojob")).get("jobStatus") == "RUNNING"

        await eventually(running, T, interval=0.1, what="ojob RUNNING")
    async with (
        operator(kube, ns, resolver=resolver(ray_head)),
        fake_kubelet(kube, ns),
        submitter_kubelet(kube, ns, run),
    ):
        st = await wait_state(kube, ns, "ojob", "Complete")
    assert st["jobStatus"] == "SUCCEEDED"
    assert [j.submission_id for j in await jobs_with_prefix(dash, "ojob-")] == [st["jobId"]]
