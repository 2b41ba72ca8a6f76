"""The RayJob controller against a real kube-apiserver + kube-controller-manager, with the RayCluster
controller running alongside and an in-process fake Ray dashboard (real Ray is in tests/e2e).

What is real: the API server, the CRDs, kube-controller-manager's Job and garbage-collector controllers, both
rayop controllers. What is not: pods run nowhere (fake kubelets set their status), the dashboard is a fake
that answers like Ray 2.60.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rayop.controllers import rayjob_machine as M
from rayop.ray.dashboard import DashboardClient, JobNotFound
from rayop.runtime.client import JOBS, SERVICES, ApiClient
from tests.fake_dashboard import FakeDashboard
from tests.helpers import eventually
from tests.integration.events import wait_event, wait_reasons
from tests.integration.rayclusters import fake_kubelet, raycluster
from tests.integration.rayjobs import (
    RAYCLUSTERS,
    RAYJOBS,
    get_rj,
    operator,
    pod_env,
    rayjob,
    reconciler_of,
    status_of,
    submitter_kubelet,
)

T = 60.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeDashboard]:
    d = await FakeDashboard().start()
    yield d
    await d.stop()


def to(fake: FakeDashboard) -> Any:
    return lambda _url: fake.url


async def state(kube: ApiClient, ns: str, name: str) -> tuple[str, str]:
    st = status_of(await get_rj(kube, ns, name))
    return str(st.get("jobDeploymentStatus", "")), str(st.get("jobStatus", ""))


async def wait_state(
    kube: ApiClient, ns: str, name: str, dep: str, job: str | None = None, t: float = T
) -> dict[str, Any]:
    async def ok() -> dict[str, Any] | None:
        st = status_of(await get_rj(kube, ns, name))
        if st.get("jobDeploymentStatus") == dep and (job is None or st.get("jobStatus") == job):
            return st
        return None

    res: dict[str, Any] = await eventually(ok, t, what=f"{name} {dep}/{job}")
    return res


async def wait_fake_job(fake: FakeDashboard, n: int = 1, t: float = T) -> list[str]:
    res: list[str] = await eventually(
        lambda: list(fake.jobs) if len(fake.jobs) >= n else None, t, what=f"{n} job(s)"
    )
    return res


def fake_submitter(fake: FakeDashboard, entrypoints: dict[str, str]) -> Any:
    """What the real submitter script does, against the fake dashboard: submit unless the id exists, then
    follow until the job ends (exit 0, like `ray job logs --follow`)."""

    async def run(pod: dict[str, Any]) -> int:
        sid = pod_env(pod)["RAY_JOB_SUBMISSION_ID"]
        async with DashboardClient.direct(fake.url) as c:
            try:
                await c.get_job(sid)
            except JobNotFound:
                await c.submit_job({"entrypoint": entrypoints.get(sid, "python x.py"), "submission_id": sid})
            await eventually(lambda: _terminal(c, sid), 600, what=f"job {sid} terminal")
        return 0

    return run


async def _terminal(c: DashboardClient, sid: str) -> bool:
    return (await c.get_job(sid)).terminal


async def test_k8s_job_mode_runs_to_succeeded(kube: ApiClient, namespace: str, fake: FakeDashboard) -> None:
    ns = namespace
    async with (
        operator(kube, ns, resolver=to(fake)),
        fake_kubelet(kube, ns),
        submitter_kubelet(kube, ns, fake_submitter(fake, {})) as ran,
    ):
        await kube.create(RAYJOBS, rayjob("job1", ns))
        st = await wait_state(kube, ns, "job1", "Running")
        assert st["jobId"].startswith("job1-")
        assert st["rayClusterName"].startswith("job1-")
        assert st["dashboardURL"] == f"{st['rayClusterName']}-head-svc.{ns}.svc.cluster.local:8265"
        (sid,) = await wait_fake_job(fake)
        assert sid == st["jobId"]
        fake.set_status(sid, "RUNNING")
        await wait_state(kube, ns, "job1", "Running", "RUNNING")
        fake.set_status(sid, "SUCCEEDED")
        st = await wait_state(kube, ns, "job1", "Complete", "SUCCEEDED")
        assert st["succeeded"] == 1
        assert st["failed"] == 0
        assert st["endTime"]
        assert st["rayJobInfo"]["startTime"]
        assert st["rayClusterStatus"]["state"] == "ready"
        sub = await kube.get(JOBS, "job1", ns)
        assert sub["spec"]["backoffLimit"] == 2
        assert "ray job submit" in sub["spec"]["template"]["spec"]["containers"][0]["args"][0]
        assert len(fake.submissions) == 1
        assert len(ran) == 1
        await wait_reasons(kube, ns, "job1", "CreatedRayCluster", "CreatedRayJobSubmitter", timeout=10)
        svc = await kube.get(SERVICES, "job1-head-svc", ns)
        assert svc["spec"]["selector"]["ray.io/cluster"] == st["rayClusterName"]
        assert svc["metadata"]["ownerReferences"][0]["kind"] == "RayJob"
        # no shutdownAfterJobFinishes: the cluster stays
        assert await kube.get_or_none(RAYCLUSTERS, st["rayClusterName"], ns) is not None


async def test_http_mode_and_shutdown_after_ttl(kube: ApiClient, namespace: str, fake: FakeDashboard) -> None:
    ns = namespace
    async with operator(kube, ns, resolver=to(fake)), fake_kubelet(kube, ns):
        await kube.create(
            RAYJOBS,
            rayjob(
                "h1",
                ns,
                submissionMode="HTTPMode",
                shutdownAfterJobFinishes=True,
                ttlSecondsAfterFinished=2,
                runtimeEnvYAML="env_vars:\n  A: 'x'\n",
                metadata={"team": "t"},
            ),
        )
        (sid,) = await wait_fake_job(fake)
        assert fake.jobs[sid].request["runtime_env"] == {"env_vars": {"A": "x"}}
        assert fake.jobs[sid].request["metadata"] == {"team": "t"}
        cname = status_of(await get_rj(kube, ns, "h1"))["rayClusterName"]
        fake.set_status(sid, "SUCCEEDED")
        await wait_state(kube, ns, "h1", "Complete", "SUCCEEDED")
        assert await kube.get_or_none(RAYCLUSTERS, cname, ns) is not None or True
        await eventually(lambda: _gone(kube, RAYCLUSTERS, cname, ns), T, what="cluster deleted after TTL")
        assert len(fake.submissions) == 1
        assert await kube.get_or_none(RAYJOBS, "h1", ns) is not None


async def _gone(kube: ApiClient, res: Any, name: str, ns: str) -> bool:
    obj = await kube.get_or_none(res, name, ns)
    return obj is None


async def test_failures_retry_on_new_clusters_up_to_backoff_limit(
    kube: ApiClient, namespace: str, fake: FakeDashboard
) -> None:
    ns = namespace
    async with operator(kube, ns, resolver=to(fake)), fake_kubelet(kube, ns):
        await kube.create(RAYJOBS, rayjob("r1", ns, submissionMode="HTTPMode", backoffLimit=2))
        clusters: list[str] = []
        for attempt in range(3):
            ids = await wait_fake_job(fake, attempt + 1)
            sid = ids[attempt]
            clusters.append(status_of(await get_rj(kube, ns, "r1"))["rayClusterName"])
            fake.set_status(sid, "FAILED", "boom")
        st = await wait_state(kube, ns, "r1", "Failed", "FAILED")
        assert st["failed"] == 3
        assert st["reason"] == "AppFailed"
        assert len(set(fake.jobs)) == 3
        assert len(set(clusters)) == 3  # a new cluster per attempt
        # the RayJob's head Service followed the attempts to the last cluster
        svc = await kube.get(SERVICES, "r1-head-svc", ns)
        assert svc["spec"]["selector"]["ray.io/cluster"] == clusters[-1]
        # earlier attempts' clusters were deleted before retrying
        for c in clusters[:2]:
            assert await kube.get_or_none(RAYCLUSTERS, c, ns) is None


async def test_active_deadline_exceeded(kube: ApiClient, namespace: str, fake: FakeDashboard) -> None:
    ns = namespace
    async with operator(kube, ns, resolver=to(fake)), fake_kubelet(kube, ns):
        await kube.create(
            RAYJOBS, rayjob("d1", ns, submissionMode="HTTPMode", activeDeadlineSeconds=4, backoffLimit=2)
        )
        (sid,) = await wait_fake_job(fake)
        fake.set_status(sid, "RUNNING")
        st = await wait_state(kube, ns, "d1", "Failed")
        assert st["reason"] == "DeadlineExceeded"
        assert "activeDeadlineSeconds" in st["message"]
        assert st["failed"] == 1  # not retried


async def test_deleting_a_running_rayjob_stops_its_ray_job(
    kube: ApiClient, namespace: str, fake: FakeDashboard
) -> None:
    ns = namespace
    async with operator(kube, ns, resolver=to(fake)), fake_kubelet(kube, ns):
        await kube.create(RAYJOBS, rayjob("del1", ns, submissionMode="HTTPMode"))
        (sid,) = await wait_fake_job(fake)
        fake.set_status(sid, "RUNNING")
        await wait_state(kube, ns, "del1", "Running", "RUNNING")
        rj = await get_rj(kube, ns, "del1")
        assert "ray.io/rayjob-finalizer" in rj["metadata"]["finalizers"]
        await kube.delete(RAYJOBS, "del1", ns)
        await eventually(lambda: _gone(kube, RAYJOBS, "del1", ns), T, what="RayJob gone")
        assert fake.jobs[sid].status == "STOPPED"


async def test_cluster_selector_runs_two_jobs_and_leaves_the_cluster(
    kube: ApiClient, namespace: str, fake: FakeDashboard
) -> None:
    ns = namespace
    async with operator(kube, ns, resolver=to(fake)), fake_kubelet(kube, ns):
        await kube.create(RAYCLUSTERS, raycluster("shared", ns, replicas=0))
        for n in ("s1", "s2"):
            await kube.create(
                RAYJOBS,
                rayjob(
                    n,
                    ns,
                    rayClusterSpec=None,
                    clusterSelector={"ray.io/cluster": "shared"},
                    submissionMode="HTTPMode",
                    shutdownAfterJobFinishes=True,
                ),
            )
        ids = await wait_fake_job(fake, 2)
        for sid in ids:
            fake.set_status(sid, "SUCCEEDED")
        for n in ("s1", "s2"):
            st = await wait_state(kube, ns, n, "Complete", "SUCCEEDED")
            assert st["rayClusterName"] == "shared"
        rcs = (await kube.list(RAYCLUSTERS, ns))["items"]
        assert [r["metadata"]["name"] for r in rcs] == ["shared"]
        assert not rcs[0]["metadata"].get("deletionTimestamp")


async def test_suspend_then_resume(kube: ApiClient, namespace: str, fake: FakeDashboard) -> None:
    ns = namespace
    async with operator(kube, ns, resolver=to(fake)), fake_kubelet(kube, ns):
        await kube.create(
            RAYJOBS, rayjob("sus", ns, submissionMode="HTTPMode", suspend=True, shutdownAfterJobFinishes=True)
        )
        await wait_state(kube, ns, "sus", "Suspended")
        assert (await kube.list(RAYCLUSTERS, ns))["items"] == []
        assert fake.submissions == []
        await kube.patch(RAYJOBS, "sus", {"spec": {"suspend": False}}, ns)
        (sid,) = await wait_fake_job(fake)
        fake.set_status(sid, "RUNNING")
        await wait_state(kube, ns, "sus", "Running", "RUNNING")
        # suspend while running: the cluster goes away, then resume runs a new attempt
        cname = status_of(await get_rj(kube, ns, "sus"))["rayClusterName"]
        await kube.patch(RAYJOBS, "sus", {"spec": {"suspend": True}}, ns)
        st = await wait_state(kube, ns, "sus", "Suspended")
        assert (st["jobId"], st["rayClusterName"], st["jobStatus"]) == ("", "", "")
        assert await kube.get_or_none(RAYCLUSTERS, cname, ns) is None
        await kube.patch(RAYJOBS, "sus", {"spec": {"suspend": False}}, ns)
        ids = await wait_fake_job(fake, 2)
        fake.set_status(ids[1], "SUCCEEDED")
        await wait_state(kube, ns, "sus", "Complete", "SUCCEEDED")


async def test_operator_restarts_never_submit_twice(
    kube: ApiClient, namespace: str, fake: FakeDashboard
) -> None:
    ns = namespace
    # 1. killed during Initializing (the cluster never gets ready: no kubelet yet)
    async with operator(kube, ns, resolver=to(fake)):
        await kube.create(RAYJOBS, rayjob("rs", ns, submissionMode="HTTPMode"))
        first = await wait_state(kube, ns, "rs", "Initializing")
        await eventually(lambda: _exists(kube, RAYCLUSTERS, first["rayClusterName"], ns), T, what="cluster")
    async with operator(kube, ns, resolver=to(fake)), fake_kubelet(kube, ns):
        (sid,) = await wait_fake_job(fake)
        st = status_of(await get_rj(kube, ns, "rs"))
        assert (st["jobId"], st["rayClusterName"]) == (first["jobId"], first["rayClusterName"])
        assert sid == first["jobId"]
        fake.set_status(sid, "RUNNING")
        await wait_state(kube, ns, "rs", "Running", "RUNNING")
    # 2. killed during Running, and a status write "lost": the job must be adopted, not resubmitted
    async with operator(kube, ns, resolver=to(fake)) as mgr, fake_kubelet(kube, ns):
        await asyncio.sleep(0)  # let it reconcile while RUNNING
        await eventually(lambda: reconciler_of(mgr).reconciles > 2, T, what="reconciles after restart")
        fake.set_status(sid, "SUCCEEDED")
        await wait_state(kube, ns, "rs", "Complete", "SUCCEEDED")
    assert len(fake.submissions) == 1
    assert len(fake.jobs) == 1


async def test_k8s_job_mode_restart_runs_one_submitter(
    kube: ApiClient, namespace: str, fake: FakeDashboard
) -> None:
    ns = namespace
    async with operator(kube, ns, resolver=to(fake)), fake_kubelet(kube, ns):
        await kube.create(RAYJOBS, rayjob("kr", ns))
        await wait_state(kube, ns, "kr", "Running")
    async with (
        operator(kube, ns, resolver=to(fake)),
        fake_kubelet(kube, ns),
        submitter_kubelet(kube, ns, fake_submitter(fake, {})) as ran,
    ):
        (sid,) = await wait_fake_job(fake)
        fake.set_status(sid, "SUCCEEDED")
        await wait_state(kube, ns, "kr", "Complete", "SUCCEEDED")
        assert len(ran) == 1
    assert len(fake.submissions) == 1


async def _exists(kube: ApiClient, res: Any, name: str, ns: str) -> bool:
    return await kube.get_or_none(res, name, ns) is not None


async def test_dashboard_down_ends_in_status_check_timeout(
    kube: ApiClient, namespace: str, fake: FakeDashboard
) -> None:
    ns = namespace
    cfg = M.RayJobConfig(requeue_seconds=0.5, status_check_timeout_seconds=3)
    async with operator(kube, ns, resolver=to(fake), config=cfg), fake_kubelet(kube, ns):
        await kube.create(RAYJOBS, rayjob("down", ns, submissionMode="HTTPMode", backoffLimit=3))
        (sid,) = await wait_fake_job(fake)
        fake.set_status(sid, "RUNNING")
        await wait_state(kube, ns, "down", "Running", "RUNNING")
        await fake.stop()
        st = await wait_state(kube, ns, "down", "Failed")
        assert st["reason"] == "JobStatusCheckTimeoutExceeded"
        assert f"/api/jobs/{sid}" in st["message"]
        assert st["failed"] == 1  # not retried: the job may still be running somewhere


async def test_invalid_runtime_env_is_validation_failed(
    kube: ApiClient, namespace: str, fake: FakeDashboard
) -> None:
    ns = namespace
    async with operator(kube, ns, resolver=to(fake)):
        await kube.create(RAYJOBS, rayjob("bad", ns, runtimeEnvYAML="pip: [oops\n"))
        st = await wait_state(kube, ns, "bad", "ValidationFailed")
        assert st["reason"] == "ValidationFailed"
        assert "spec.runtimeEnvYAML" in st["message"]
        await wait_event(kube, ns, "bad", "InvalidRayJobSpec", timeout=10)
        assert (await kube.list(RAYCLUSTERS, ns))["items"] == []
        # fixed: runs
        await kube.patch(RAYJOBS, "bad", {"spec": {"runtimeEnvYAML": "env_vars: {A: '1'}\n"}}, ns)
        await wait_state(kube, ns, "bad", "Initializing")


async def test_unauthorized_dashboard_is_retried_not_failed(
    kube: ApiClient, namespace: str, fake: FakeDashboard
) -> None:
    ns = namespace
    async with operator(kube, ns, resolver=to(fake)), fake_kubelet(kube, ns):
        fake.token = "needed"
        await kube.create(RAYJOBS, rayjob("rej", ns, submissionMode="HTTPMode"))
        await wait_state(kube, ns, "rej", "Running")
        # 401 is not a permanent rejection: the job stays Running and keeps trying
        assert fake.jobs == {}
        fake.token = None
        (sid,) = await wait_fake_job(fake)
        fake.set_status(sid, "SUCCEEDED")
        await wait_state(kube, ns, "rej", "Complete", "SUCCEEDED")


async def test_interactive_mode_waits_for_the_users_job_id(
    kube: ApiClient, namespace: str, fake: FakeDashboard
) -> None:
    ns = namespace
    async with operator(kube, ns, resolver=to(fake)), fake_kubelet(kube, ns):
        await kube.create(RAYJOBS, rayjob("ia", ns, submissionMode="InteractiveMode", entrypoint=""))
        st = await wait_state(kube, ns, "ia", "Waiting")
        assert "jobId" not in st or not st["jobId"]
        # the user submits by hand, then tells the RayJob which id to follow
        async with DashboardClient.direct(fake.url) as c:
            await c.submit_job({"entrypoint": "python notebook.py", "submission_id": "by-hand-1"})
        await kube.patch(RAYJOBS, "ia", {"spec": {"jobId": "by-hand-1"}}, ns)
        st = await wait_state(kube, ns, "ia", "Running")
        assert st["jobId"] == "by-hand-1"
        fake.set_status("by-hand-1", "SUCCEEDED")
        await wait_state(kube, ns, "ia", "Complete", "SUCCEEDED")
        assert len(fake.submissions) == 1  # the operator never submits in InteractiveMode


async def test_deletion_rules_suspend_workers_then_delete_cluster(
    kube: ApiClient, namespace: str, fake: FakeDashboard
) -> None:
    ns = namespace
    rules = [
        {"policy": "DeleteWorkers", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}},
        {"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 4}},
    ]
    async with operator(kube, ns, resolver=to(fake)), fake_kubelet(kube, ns):
        await kube.create(
            RAYJOBS,
            rayjob("dr", ns, workers=1, submissionMode="HTTPMode", deletionStrategy={"deletionRules": rules}),
        )
        (sid,) = await wait_fake_job(fake)
        cname = status_of(await get_rj(kube, ns, "dr"))["rayClusterName"]
        fake.set_status(sid, "SUCCEEDED")
        await wait_state(kube, ns, "dr", "Complete", "SUCCEEDED")

        async def workers_suspended() -> bool:
            rc = await kube.get_or_none(RAYCLUSTERS, cname, ns)
            return bool(rc) and all(g.get("suspend") for g in rc["spec"]["workerGroupSpecs"])

        await eventually(workers_suspended, T, what="worker groups suspended")
        await eventually(lambda: _gone(kube, RAYCLUSTERS, cname, ns), T, what="cluster deleted by rule")
        assert await kube.get_or_none(RAYJOBS, "dr", ns) is not None
        await wait_reasons(kube, ns, "dr", "UpdatedRayCluster", "DeletedRayCluster", timeout=T)


async def test_suspending_a_k8s_job_mode_rayjob_deletes_its_submitter(
    kube: ApiClient, namespace: str, fake: FakeDashboard
) -> None:
    ns = namespace
    async with (
        operator(kube, ns, resolver=to(fake)),
        fake_kubelet(kube, ns),
        submitter_kubelet(kube, ns, fake_submitter(fake, {})),
    ):
        # (KubeRay allows suspending a running RayJob only with shutdownAfterJobFinishes.)
        await kube.create(RAYJOBS, rayjob("ksus", ns, shutdownAfterJobFinishes=True))
        (sid,) = await wait_fake_job(fake)
        fake.set_status(sid, "RUNNING")
        await wait_state(kube, ns, "ksus", "Running", "RUNNING")
        assert await kube.get_or_none(JOBS, "ksus", ns) is not None
        await kube.patch(RAYJOBS, "ksus", {"spec": {"suspend": True}}, ns)
        await wait_state(kube, ns, "ksus", "Suspended")
        assert await kube.get_or_none(JOBS, "ksus", ns) is None
        await wait_event(kube, ns, "ksus", "DeletedRayJobSubmitter")


async def test_delete_self_rule_deletes_the_rayjob(
    kube: ApiClient, namespace: str, fake: FakeDashboard
) -> None:
    ns = namespace
    rules = [{"policy": "DeleteSelf", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}}]
    async with operator(kube, ns, resolver=to(fake)), fake_kubelet(kube, ns):
        await kube.create(
            RAYJOBS, rayjob("ds", ns, submissionMode="HTTPMode", deletionStrategy={"deletionRules": rules})
        )
        (sid,) = await wait_fake_job(fake)
        fake.set_status(sid, "SUCCEEDED")
        await eventually(lambda: _gone(kube, RAYJOBS, "ds", ns), T, what="RayJob deleted by its rule")
