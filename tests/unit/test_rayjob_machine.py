"""Every transition of the RayJob state machine, with a fake world (no processes, no HTTP)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rayop.controllers import rayjob_machine as M
from rayop.ray.dashboard import JobInfo

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
FIN = "ray.io/rayjob-finalizer"


def ts(t: datetime) -> str:
    return M.fmt_time(t)


def rayjob(status: dict[str, Any] | None = None, finalizers: bool = True, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "entrypoint": "python -c 'print(1)'",
        "rayClusterSpec": {
            "headGroupSpec": {
                "rayStartParams": {},
                "template": {"spec": {"containers": [{"name": "ray-head", "image": "ray:2.60.0"}]}},
            },
            "workerGroupSpecs": [
                {
                    "groupName": "w",
                    "replicas": 1,
                    "minReplicas": 0,
                    "maxReplicas": 2,
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [{"name": "ray-worker", "image": "ray:2.60.0"}]}},
                }
            ],
        },
    }
    base.update(spec)
    md: dict[str, Any] = {"name": "rj", "namespace": "ns", "uid": "u1", "generation": 1}
    if finalizers:
        md["finalizers"] = [FIN]
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": md, "spec": base, "status": status or {}}


def running_status(**extra: Any) -> dict[str, Any]:
    st = {
        "jobId": "rj-aaaaa",
        "rayClusterName": "rj-bbbbb",
        "dashboardURL": "rj-bbbbb-head-svc.ns.svc.cluster.local:8265",
        "jobStatus": "",
        "jobDeploymentStatus": "Running",
        "startTime": ts(T0),
        "observedGeneration": 1,
    }
    st.update(extra)
    return st


def cluster(state: str = "ready", name: str = "rj-bbbbb", **extra: Any) -> dict[str, Any]:
    rc = {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"workerGroupSpecs": [{"groupName": "w", "replicas": 1}]},
        "status": {"state": state},
    }
    rc.update(extra)
    return rc


HEAD_SVC = {
    "metadata": {"name": "rj-bbbbb-head-svc", "namespace": "ns"},
    "spec": {"ports": [{"name": "dashboard", "port": 8265}]},
}


def submitter(cond: str | None = None, at: datetime = T0, **kw: Any) -> dict[str, Any]:
    conds = [{"type": cond, "status": "True", "lastTransitionTime": ts(at), **kw}] if cond else []
    return {"metadata": {"name": "rj", "namespace": "ns"}, "status": {"conditions": conds}}


def job(status: str, message: str = "", start: int = 1_767_268_800_000, end: int = 0) -> M.JobLookup:
    return M.JobLookup(info=JobInfo(status=status, message=message or status, start_time=start, end_time=end))


def job_svc(cluster_name: str = "rj-bbbbb") -> dict[str, Any]:
    return {
        "metadata": {"name": "rj-head-svc", "namespace": "ns"},
        "spec": {
            "selector": {"ray.io/cluster": cluster_name, "ray.io/node-type": "head"},
            "clusterIP": "None",
        },
    }


def world(now: datetime = T0, **kw: Any) -> M.World:
    kw.setdefault("job_head_service", job_svc())
    return M.World(now=now, suffixes=("aaaaa", "bbbbb"), **kw)


def kinds(d: M.Decision) -> list[str]:
    return [type(a).__name__ for a in d.actions]


# New ------------------------------------------------------------------------------------------------


def test_new_chooses_ids_before_anything_else() -> None:
    d = M.decide(rayjob(finalizers=False), world())
    assert kinds(d) == ["AddFinalizer"]
    assert d.status["jobDeploymentStatus"] == "Initializing"
    assert d.status["jobId"] == "rj-aaaaa"
    assert d.status["rayClusterName"] == "rj-bbbbb"
    assert d.status["jobStatus"] == ""
    assert d.status["startTime"] == ts(T0)
    assert d.status["observedGeneration"] == 1
    assert d.status_changed


def test_new_uses_spec_job_id_and_selector_name_and_interactive_has_no_id() -> None:
    d = M.decide(rayjob(jobId="mine"), world())
    assert d.status["jobId"] == "mine"
    assert kinds(d) == []
    sel = rayjob(clusterSelector={"ray.io/cluster": "shared"})
    del sel["spec"]["rayClusterSpec"]
    assert M.decide(sel, world()).status["rayClusterName"] == "shared"
    inter = M.decide(rayjob(submissionMode="InteractiveMode"), world())
    assert "jobId" not in inter.status


# Initializing ---------------------------------------------------------------------------------------


def init_status(**extra: Any) -> dict[str, Any]:
    st = {
        "jobId": "rj-aaaaa",
        "rayClusterName": "rj-bbbbb",
        "jobStatus": "",
        "jobDeploymentStatus": "Initializing",
    }
    st["startTime"] = ts(T0)
    st.update(extra)
    return st


def test_initializing_creates_cluster_then_waits_for_ready() -> None:
    d = M.decide(rayjob(init_status()), world())
    assert kinds(d) == ["CreateCluster"]
    rc = d.actions[0].cluster  # type: ignore[union-attr]
    assert rc["metadata"]["name"] == "rj-bbbbb"
    assert rc["metadata"]["labels"]["ray.io/originated-from-crd"] == "RayJob"
    assert d.status["jobDeploymentStatus"] == "Initializing"
    assert d.requeue_after == 3.0

    d = M.decide(rayjob(init_status()), world(cluster=cluster("")))
    assert kinds(d) == []
    assert d.status["jobDeploymentStatus"] == "Initializing"
    assert d.status["rayClusterStatus"] == {"state": ""}

    # ready but the head Service not seen yet: still wait
    d = M.decide(rayjob(init_status()), world(cluster=cluster()))
    assert d.status["jobDeploymentStatus"] == "Initializing"
    assert "dashboardURL" not in d.status


def test_initializing_k8s_job_mode_creates_submitter_and_runs() -> None:
    d = M.decide(rayjob(init_status()), world(cluster=cluster(), head_service=HEAD_SVC))
    assert kinds(d) == ["CreateSubmitter"]
    assert d.status["dashboardURL"] == "rj-bbbbb-head-svc.ns.svc.cluster.local:8265"
    assert d.status["jobDeploymentStatus"] == "Running"
    job_obj = d.actions[0].job  # type: ignore[union-attr]
    args = job_obj["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "--submission-id rj-aaaaa" in args
    assert "http://rj-bbbbb-head-svc.ns.svc.cluster.local:8265" in args
    # already there (restart after creating it): no second create
    d2 = M.decide(
        rayjob(init_status()), world(cluster=cluster(), head_service=HEAD_SVC, submitter=submitter())
    )
    assert kinds(d2) == []
    assert d2.status["jobDeploymentStatus"] == "Running"


@pytest.mark.parametrize("mode", ["HTTPMode", "SidecarMode"])
def test_initializing_http_and_sidecar_go_straight_to_running(mode: str) -> None:
    d = M.decide(rayjob(init_status(), submissionMode=mode), world(cluster=cluster(), head_service=HEAD_SVC))
    assert kinds(d) == []
    assert d.status["jobDeploymentStatus"] == "Running"


def test_initializing_interactive_waits_for_job_id() -> None:
    rj = rayjob(init_status(jobId=None), submissionMode="InteractiveMode")
    d = M.decide(rj, world(cluster=cluster(), head_service=HEAD_SVC))
    assert d.status["jobDeploymentStatus"] == "Waiting"
    w = rayjob({**d.status}, submissionMode="InteractiveMode")
    assert M.decide(w, world()).status["jobDeploymentStatus"] == "Waiting"
    w["spec"]["jobId"] = "user-id"
    d2 = M.decide(w, world())
    assert d2.status["jobDeploymentStatus"] == "Running"
    assert d2.status["jobId"] == "user-id"


def test_waiting_pre_running_deadline() -> None:
    rj = rayjob(
        init_status(jobDeploymentStatus="Waiting"),
        submissionMode="InteractiveMode",
        preRunningDeadlineSeconds=10,
    )
    d = M.decide(rj, world(now=T0 + timedelta(seconds=11)))
    assert (d.status["jobDeploymentStatus"], d.status["reason"]) == ("Failed", "PreRunningDeadlineExceeded")


def test_initializing_selector_missing_cluster_warns_and_waits() -> None:
    rj = rayjob(init_status(rayClusterName="shared"), clusterSelector={"ray.io/cluster": "shared"})
    d = M.decide(rj, world())
    assert kinds(d) == ["Event"]
    assert d.actions[0].reason == "RayClusterNotFound"  # type: ignore[union-attr]
    assert d.status["jobDeploymentStatus"] == "Initializing"


def test_initializing_deadlines() -> None:
    d = M.decide(rayjob(init_status(), activeDeadlineSeconds=5), world(now=T0 + timedelta(seconds=5)))
    assert (d.status["jobDeploymentStatus"], d.status["reason"]) == ("Failed", "DeadlineExceeded")
    assert d.status["failed"] == 1
    assert d.status["endTime"] == ts(T0 + timedelta(seconds=5))
    assert d.requeue_after == 3.0
    d = M.decide(rayjob(init_status(), preRunningDeadlineSeconds=30), world(now=T0 + timedelta(seconds=31)))
    assert (d.status["jobDeploymentStatus"], d.status["reason"]) == ("Failed", "PreRunningDeadlineExceeded")
    assert "preRunningDeadlineSeconds (30s)" in d.status["message"]
    d = M.decide(rayjob(init_status(), preRunningDeadlineSeconds=30), world(now=T0 + timedelta(seconds=29)))
    assert d.status["jobDeploymentStatus"] == "Initializing"


# Running --------------------------------------------------------------------------------------------


def test_running_k8s_job_mode_follows_ray_job() -> None:
    rj = rayjob(running_status())
    d = M.decide(
        rj, world(cluster=cluster(), submitter=submitter(), job=job("RUNNING", "Job is currently running."))
    )
    assert d.status["jobStatus"] == "RUNNING"
    assert d.status["jobDeploymentStatus"] == "Running"
    assert d.status["message"] == "Job is currently running."
    assert d.status["rayJobInfo"] == {"startTime": "2026-01-01T12:00:00Z"}
    assert d.status["rayClusterStatus"] == {"state": "ready"}

    # Ray says SUCCEEDED but the submitter is still tailing logs: stay Running
    d = M.decide(
        rj, world(cluster=cluster(), submitter=submitter(), job=job("SUCCEEDED", end=1_767_268_810_000))
    )
    assert (d.status["jobStatus"], d.status["jobDeploymentStatus"]) == ("SUCCEEDED", "Running")
    # submitter done: Complete
    d = M.decide(
        rj,
        world(
            cluster=cluster(), submitter=submitter("Complete"), job=job("SUCCEEDED", end=1_767_268_810_000)
        ),
    )
    assert (d.status["jobStatus"], d.status["jobDeploymentStatus"]) == ("SUCCEEDED", "Complete")
    assert d.status["succeeded"] == 1
    assert d.status["failed"] == 0
    assert d.status["rayJobInfo"]["endTime"] == "2026-01-01T12:00:10Z"
    assert d.status["endTime"] == ts(T0)
    assert d.status["reason"] == ""


def test_running_app_failed_and_stopped() -> None:
    rj = rayjob(running_status())
    d = M.decide(rj, world(cluster=cluster(), submitter=submitter("Complete"), job=job("FAILED", "exit 1")))
    assert (d.status["jobDeploymentStatus"], d.status["reason"], d.status["message"]) == (
        "Failed",
        "AppFailed",
        "exit 1",
    )
    d = M.decide(rj, world(cluster=cluster(), submitter=submitter("Complete"), job=job("STOPPED")))
    assert d.status["jobDeploymentStatus"] == "Complete"
    assert d.status["succeeded"] == 0


def test_running_submitter_failed() -> None:
    rj = rayjob(running_status())
    sub = submitter(
        "Failed", reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit"
    )
    d = M.decide(rj, world(cluster=cluster(), submitter=sub, job=job("RUNNING")))
    assert (d.status["jobDeploymentStatus"], d.status["reason"]) == ("Failed", "SubmissionFailed")
    assert "BackoffLimitExceeded" in d.status["message"]
    rj2 = rayjob(running_status(jobStatus="FAILED", message="boom"))
    d = M.decide(rj2, world(cluster=cluster(), submitter=sub))
    assert (d.status["reason"], d.status["message"]) == ("AppFailed", "boom")


def test_running_submitter_finished_but_job_never_terminal() -> None:
    rj = rayjob(running_status(jobStatus="RUNNING"))
    sub = submitter("Complete", at=T0)
    d = M.decide(
        rj, world(now=T0 + timedelta(seconds=10), cluster=cluster(), submitter=sub, job=job("RUNNING"))
    )
    assert d.status["jobDeploymentStatus"] == "Running"
    d = M.decide(
        rj, world(now=T0 + timedelta(seconds=31), cluster=cluster(), submitter=sub, job=job("RUNNING"))
    )
    assert (d.status["jobDeploymentStatus"], d.status["jobStatus"]) == ("Failed", "FAILED")
    assert d.status["reason"] == "JobDeploymentStatusTransitionGracePeriodExceeded"


def test_running_job_not_found_after_submitter_finished_is_app_failed() -> None:
    rj = rayjob(running_status())
    d = M.decide(
        rj, world(cluster=cluster(), submitter=submitter("Complete"), job=M.JobLookup(not_found=True))
    )
    assert (d.status["jobDeploymentStatus"], d.status["reason"]) == ("Failed", "AppFailed")
    d = M.decide(rj, world(cluster=cluster(), submitter=submitter(), job=M.JobLookup(not_found=True)))
    assert d.status["jobDeploymentStatus"] == "Running"
    assert kinds(d) == []


def test_running_recreates_a_deleted_submitter() -> None:
    d = M.decide(rayjob(running_status()), world(cluster=cluster(), job=job("RUNNING")))
    assert kinds(d) == ["CreateSubmitter"]
    assert d.status["jobDeploymentStatus"] == "Running"


def test_http_mode_submits_only_after_404_and_adopts_existing() -> None:
    rj = rayjob(running_status(), submissionMode="HTTPMode", runtimeEnvYAML="env_vars:\n  A: '1'\n")
    d = M.decide(rj, world(cluster=cluster(), job=M.JobLookup(not_found=True)))
    assert kinds(d) == ["SubmitJob"]
    req = d.actions[0].request  # type: ignore[union-attr]
    assert req["submission_id"] == "rj-aaaaa"
    assert req["runtime_env"] == {"env_vars": {"A": "1"}}
    assert d.status["jobDeploymentStatus"] == "Running"
    # after a restart the job exists: no second submission, its status is adopted
    d = M.decide(rj, world(cluster=cluster(), job=job("PENDING")))
    assert kinds(d) == []
    assert d.status["jobStatus"] == "PENDING"
    # HTTP mode does not wait for a submitter
    d = M.decide(rj, world(cluster=cluster(), job=job("SUCCEEDED")))
    assert d.status["jobDeploymentStatus"] == "Complete"


def test_interactive_running_waits_for_the_users_submission() -> None:
    rj = rayjob(running_status(jobId="user-id"), submissionMode="InteractiveMode", jobId="user-id")
    d = M.decide(rj, world(cluster=cluster(), job=M.JobLookup(not_found=True)))
    assert kinds(d) == []
    assert d.status["jobDeploymentStatus"] == "Running"
    d = M.decide(rj, world(cluster=cluster(), job=job("SUCCEEDED")))
    assert d.status["jobDeploymentStatus"] == "Complete"


def test_status_check_failures_time_out() -> None:
    rj = rayjob(running_status(), submissionMode="HTTPMode")
    down = M.JobLookup(error="GET http://x/api/jobs/rj-aaaaa: ConnectionRefused")
    d = M.decide(rj, world(cluster=cluster(), job=down))
    assert d.status["jobStatusCheckFailureStartTime"] == ts(T0)
    assert d.status["jobDeploymentStatus"] == "Running"
    assert d.status_changed
    rj2 = rayjob(d.status, submissionMode="HTTPMode")
    d = M.decide(rj2, world(now=T0 + timedelta(seconds=299), cluster=cluster(), job=down))
    assert d.status["jobDeploymentStatus"] == "Running"
    assert not d.status_changed
    d = M.decide(rj2, world(now=T0 + timedelta(seconds=300), cluster=cluster(), job=down))
    assert (d.status["jobDeploymentStatus"], d.status["reason"]) == (
        "Failed",
        "JobStatusCheckTimeoutExceeded",
    )
    assert "ConnectionRefused" in d.status["message"]
    # recovery clears the marker
    d = M.decide(rj2, world(now=T0 + timedelta(seconds=100), cluster=cluster(), job=job("RUNNING")))
    assert "jobStatusCheckFailureStartTime" not in d.status


def test_status_check_timeout_is_not_retried() -> None:
    st = running_status(jobStatusCheckFailureStartTime=ts(T0))
    rj = rayjob(st, submissionMode="HTTPMode", backoffLimit=3)
    d = M.decide(rj, world(now=T0 + timedelta(seconds=301), cluster=cluster(), job=M.JobLookup(error="down")))
    assert d.status["jobDeploymentStatus"] == "Failed"


def test_running_transition_grace_period() -> None:
    st = running_status(jobStatus="SUCCEEDED", rayJobInfo={"endTime": ts(T0)})
    rj = rayjob(st)
    d = M.decide(rj, world(now=T0 + timedelta(seconds=300), cluster=cluster(), submitter=submitter()))
    assert (d.status["jobDeploymentStatus"], d.status["reason"]) == (
        "Complete",
        "JobDeploymentStatusTransitionGracePeriodExceeded",
    )


def test_running_active_deadline() -> None:
    rj = rayjob(running_status(), activeDeadlineSeconds=60, backoffLimit=2)
    d = M.decide(
        rj,
        world(now=T0 + timedelta(seconds=60), cluster=cluster(), submitter=submitter(), job=job("RUNNING")),
    )
    assert (d.status["jobDeploymentStatus"], d.status["reason"]) == ("Failed", "DeadlineExceeded")
    assert "activeDeadlineSeconds" in d.status["message"]
    assert kinds(d) == ["StopJob"]


def test_running_selector_missing_cluster_and_recreate_when_owned() -> None:
    rj = rayjob(running_status(rayClusterName="shared"), clusterSelector={"ray.io/cluster": "shared"})
    d = M.decide(rj, world(submitter=submitter(), job=job("RUNNING")))
    assert kinds(d) == ["Event"]
    d = M.decide(rayjob(running_status()), world(submitter=submitter(), job=job("RUNNING")))
    assert kinds(d) == ["CreateCluster"]


def test_sidecar_mode_checks_the_head_pod() -> None:
    rj = rayjob(running_status(), submissionMode="SidecarMode")
    d = M.decide(rj, world(cluster=cluster(), job=job("RUNNING")))
    assert (d.status["jobDeploymentStatus"], d.status["reason"]) == ("Failed", "AppFailed")

    def pod(term: dict[str, Any] | None) -> dict[str, Any]:
        state = {"terminated": term} if term else {"running": {}}
        return {
            "status": {
                "containerStatuses": [{"name": "ray-job-submitter", "state": state, "restartCount": 0}]
            }
        }

    d = M.decide(rj, world(cluster=cluster(), head_pod=pod(None), job=job("SUCCEEDED")))
    assert d.status["jobDeploymentStatus"] == "Running"
    d = M.decide(
        rj,
        world(cluster=cluster(), head_pod=pod({"exitCode": 0, "finishedAt": ts(T0)}), job=job("SUCCEEDED")),
    )
    assert d.status["jobDeploymentStatus"] == "Complete"
    d = M.decide(
        rj, world(cluster=cluster(), head_pod=pod({"exitCode": 2, "reason": "Error"}), job=job("RUNNING"))
    )
    assert (d.status["jobDeploymentStatus"], d.status["reason"]) == ("Failed", "SubmissionFailed")


# Retries --------------------------------------------------------------------------------------------


def test_failure_with_backoff_limit_retries_on_a_new_cluster() -> None:
    rj = rayjob(running_status(), backoffLimit=2)
    d = M.decide(rj, world(cluster=cluster(), submitter=submitter("Complete"), job=job("FAILED")))
    assert d.status["jobDeploymentStatus"] == "Retrying"
    assert d.status["failed"] == 1
    assert "endTime" not in d.status
    # Retrying: delete the cluster and submitter, wait until gone
    r = rayjob(d.status, backoffLimit=2)
    d = M.decide(r, world(cluster=cluster(), submitter=submitter("Complete")))
    assert kinds(d) == ["DeleteCluster", "DeleteSubmitter"]
    assert d.status["jobDeploymentStatus"] == "Retrying"
    deleting = cluster()
    deleting["metadata"]["deletionTimestamp"] = ts(T0)
    d = M.decide(r, world(cluster=deleting))
    assert kinds(d) == []
    assert d.status["jobDeploymentStatus"] == "Retrying"
    # all gone: back to New with ids cleared, counters kept
    d = M.decide(r, world())
    assert d.status["jobDeploymentStatus"] == ""
    assert (d.status["jobId"], d.status["rayClusterName"], d.status["jobStatus"]) == ("", "", "")
    assert d.status["failed"] == 1
    # New picks fresh ids for the next attempt
    d = M.decide(rayjob(d.status, backoffLimit=2), M.World(now=T0, suffixes=("ccccc", "ddddd")))
    assert (d.status["jobId"], d.status["rayClusterName"]) == ("rj-ccccc", "rj-ddddd")
    assert d.status["jobDeploymentStatus"] == "Initializing"


def test_retries_stop_at_backoff_limit() -> None:
    rj = rayjob(running_status(failed=2), backoffLimit=2)
    d = M.decide(rj, world(cluster=cluster(), submitter=submitter("Complete"), job=job("FAILED")))
    assert d.status["jobDeploymentStatus"] == "Failed"
    assert d.status["failed"] == 3
    assert d.requeue_after == 3.0


def test_deadline_exceeded_is_not_retried() -> None:
    rj = rayjob(running_status(), backoffLimit=5, activeDeadlineSeconds=1)
    d = M.decide(rj, world(now=T0 + timedelta(seconds=2), cluster=cluster(), submitter=submitter()))
    assert d.status["jobDeploymentStatus"] == "Failed"
    assert d.status["failed"] == 1


# Suspend ----------------------------------------------------------------------------------------------


def test_suspend_and_resume() -> None:
    spec = {"suspend": True, "shutdownAfterJobFinishes": True}
    d = M.decide(
        rayjob(running_status(), **spec), world(cluster=cluster(), submitter=submitter(), job=job("RUNNING"))
    )
    assert d.status["jobDeploymentStatus"] == "Suspending"
    assert kinds(d) == []
    s = rayjob(d.status, **spec)
    d = M.decide(s, world(cluster=cluster(), submitter=submitter()))
    assert kinds(d) == ["DeleteCluster", "DeleteSubmitter"]
    # atomic: even if suspend is flipped back meanwhile, Suspending finishes first
    s2 = rayjob(d.status, shutdownAfterJobFinishes=True)
    assert M.decide(s2, world(submitter=submitter())).status["jobDeploymentStatus"] == "Suspending"
    d = M.decide(s, world())
    assert d.status["jobDeploymentStatus"] == "Suspended"
    assert (d.status["jobId"], d.status["rayClusterName"], d.status["dashboardURL"]) == ("", "", "")
    # while suspended: nothing, no requeue
    d2 = M.decide(rayjob(d.status, **spec), world())
    assert d2.status["jobDeploymentStatus"] == "Suspended"
    assert d2.requeue_after is None
    # resume
    d3 = M.decide(rayjob(d.status, shutdownAfterJobFinishes=True), world())
    assert d3.status["jobDeploymentStatus"] == ""
    # created suspended: Initializing goes to Suspending without creating anything
    d4 = M.decide(rayjob(init_status(), **spec), world())
    assert d4.status["jobDeploymentStatus"] == "Suspending"
    assert kinds(d4) == []


# Finished: shutdown, TTL and deletion strategies ------------------------------------------------------------


def done_status(job_status: str = "SUCCEEDED", dep: str = "Complete", end: datetime = T0) -> dict[str, Any]:
    return running_status(jobStatus=job_status, jobDeploymentStatus=dep, endTime=ts(end))


def test_finished_without_shutdown_keeps_everything() -> None:
    d = M.decide(rayjob(done_status()), world(cluster=cluster()))
    assert kinds(d) == []
    assert d.requeue_after is None
    assert not d.status_changed


def test_shutdown_after_ttl_deletes_cluster_only() -> None:
    rj = rayjob(done_status(), shutdownAfterJobFinishes=True, ttlSecondsAfterFinished=10)
    d = M.decide(rj, world(now=T0 + timedelta(seconds=4), cluster=cluster(), submitter=submitter("Complete")))
    assert kinds(d) == []
    assert d.requeue_after == pytest.approx(8.0)
    d = M.decide(
        rj, world(now=T0 + timedelta(seconds=10), cluster=cluster(), submitter=submitter("Complete"))
    )
    assert kinds(d) == ["DeleteCluster"]
    d = M.decide(rj, world(now=T0 + timedelta(seconds=11), submitter=submitter("Complete")))
    assert kinds(d) == []
    d = M.decide(
        rj,
        world(now=T0 + timedelta(seconds=10), cluster=cluster()),
        M.RayJobConfig(delete_rayjob_after_finish=True),
    )
    assert kinds(d) == ["DeleteSelf"]


def test_selector_mode_never_deletes_the_cluster() -> None:
    rj = rayjob(done_status(), clusterSelector={"ray.io/cluster": "rj-bbbbb"})
    del rj["spec"]["rayClusterSpec"]
    d = M.decide(rj, world(now=T0 + timedelta(days=1), cluster=cluster()))
    assert kinds(d) == []


def test_legacy_deletion_strategy() -> None:
    ds = {"onSuccess": {"policy": "DeleteWorkers"}, "onFailure": {"policy": "DeleteNone"}}
    rj = rayjob(done_status(), deletionStrategy=ds)
    d = M.decide(rj, world(now=T0, cluster=cluster()))
    assert kinds(d) == ["SuspendWorkers"]
    suspended = cluster(spec={"workerGroupSpecs": [{"groupName": "w", "suspend": True}]})
    assert kinds(M.decide(rj, world(now=T0 + timedelta(seconds=6), cluster=suspended))) == []
    failed = rayjob(done_status("FAILED", "Failed"), deletionStrategy=ds)
    assert kinds(M.decide(failed, world(now=T0 + timedelta(seconds=60), cluster=cluster()))) == []


def test_deletion_rules_run_most_impactful_first_and_requeue_at_next_ttl() -> None:
    rules = [
        {"policy": "DeleteWorkers", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}},
        {"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 10}},
        {"policy": "DeleteSelf", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 20}},
        {"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED", "ttlSeconds": 0}},
    ]
    rj = rayjob(done_status(), deletionStrategy={"deletionRules": rules})
    d = M.decide(rj, world(now=T0, cluster=cluster()))
    assert kinds(d) == ["SuspendWorkers"]
    suspended = cluster(spec={"workerGroupSpecs": [{"groupName": "w", "suspend": True}]})
    d = M.decide(rj, world(now=T0 + timedelta(seconds=1), cluster=suspended))
    assert kinds(d) == []
    assert d.requeue_after == pytest.approx(11.0)
    d = M.decide(rj, world(now=T0 + timedelta(seconds=12), cluster=suspended))
    assert kinds(d) == ["DeleteCluster"]
    # operator was down for a long time: all overdue -> only the most impactful one runs
    d = M.decide(rj, world(now=T0 + timedelta(seconds=100), cluster=cluster()))
    assert kinds(d) == ["DeleteSelf"]
    # jobDeploymentStatus condition
    rules2 = [{"policy": "DeleteCluster", "condition": {"jobDeploymentStatus": "Failed"}}]
    rf = rayjob(done_status("RUNNING", "Failed"), deletionStrategy={"deletionRules": rules2})
    assert kinds(M.decide(rf, world(cluster=cluster()))) == ["DeleteCluster"]


# Deletion of the RayJob --------------------------------------------------------------------------------


def test_deleting_stops_running_job_and_removes_finalizer() -> None:
    rj = rayjob(running_status(jobStatus="RUNNING"))
    rj["metadata"]["deletionTimestamp"] = ts(T0)
    d = M.decide(rj, world())
    assert kinds(d) == ["StopJob", "RemoveFinalizer"]
    stop = d.actions[0]
    assert isinstance(stop, M.StopJob)
    assert (stop.job_id, stop.cluster_name) == ("rj-aaaaa", "rj-bbbbb")
    assert not d.status_changed
    done = rayjob(done_status())
    done["metadata"]["deletionTimestamp"] = ts(T0)
    assert kinds(M.decide(done, world())) == ["RemoveFinalizer"]
    nofin = rayjob(done_status(), finalizers=False)
    nofin["metadata"]["deletionTimestamp"] = ts(T0)
    assert kinds(M.decide(nofin, world())) == []


def test_external_manager_is_left_alone() -> None:
    d = M.decide(rayjob(managedBy="kueue.x-k8s.io/multikueue"), world())
    assert kinds(d) == []
    assert not d.status_changed
    assert d.requeue_after is None


# Validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ({"runtimeEnvYAML": "pip: [a\n"}, "spec.runtimeEnvYAML: Invalid value"),
        ({"runtimeEnvYAML": "- a\n"}, "mapping"),
        ({"entrypointResources": "{bad"}, "entrypointResources"),
        ({"submissionMode": "Nope"}, "submissionMode"),
        ({"suspend": True}, "spec.suspend: Forbidden"),
        ({"ttlSecondsAfterFinished": 5}, "ttlSecondsAfterFinished"),
        ({"rayClusterSpec": None}, "one of rayClusterSpec or clusterSelector"),
        ({"clusterSelector": {"x": "y"}}, "ray.io/cluster"),
        ({"clusterSelector": {"ray.io/cluster": "c"}, "backoffLimit": 1}, "backoffLimit"),
        ({"entrypoint": ""}, "spec.entrypoint: Required value"),
        ({"activeDeadlineSeconds": 0}, "activeDeadlineSeconds"),
        (
            {"deletionStrategy": {"onSuccess": {"policy": "DeleteCluster"}}},
            "onSuccess and onFailure must both be set",
        ),
        (
            {
                "shutdownAfterJobFinishes": True,
                "deletionStrategy": {
                    "deletionRules": [{"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED"}}]
                },
            },
            "must not be used together with shutdownAfterJobFinishes",
        ),
        (
            {
                "deletionStrategy": {
                    "deletionRules": [
                        {"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED", "ttlSeconds": 5}},
                        {"policy": "DeleteWorkers", "condition": {"jobStatus": "FAILED", "ttlSeconds": 10}},
                    ]
                }
            },
            "must be greater than or equal to the DeleteWorkers ttlSeconds",
        ),
    ],
)
def test_invalid_specs_end_in_validation_failed(spec: dict[str, Any], text: str) -> None:
    d = M.decide(rayjob(**spec), world())
    assert d.status["jobDeploymentStatus"] == "ValidationFailed"
    assert d.status["reason"] == "ValidationFailed"
    assert text in d.status["message"]
    assert kinds(d) == ["Event"]
    assert d.actions[0].reason == "InvalidRayJobSpec"  # type: ignore[union-attr]
    assert d.requeue_after is None
    # stays there, no crash loop, until the spec is fixed
    again = M.decide(rayjob(d.status, **spec), world())
    assert kinds(again) == []
    assert not again.status_changed


def test_validation_failed_recovers_when_fixed_before_anything_ran() -> None:
    bad = rayjob(runtimeEnvYAML="pip: [a\n")
    d = M.decide(bad, world())
    fixed = rayjob(d.status)
    fixed["metadata"]["generation"] = 2
    d2 = M.decide(fixed, world())
    assert d2.status["jobDeploymentStatus"] == "Initializing"
    assert d2.status["reason"] == ""


def test_decide_never_mutates_its_input() -> None:
    rj = rayjob(running_status(), backoffLimit=1)
    before = copy.deepcopy(rj)
    M.decide(rj, world(cluster=cluster(), submitter=submitter("Complete"), job=job("FAILED")))
    assert rj == before


def test_running_keeps_a_stable_head_service_across_attempts() -> None:
    rj = rayjob(running_status())
    d = M.decide(
        rj, world(cluster=cluster(), submitter=submitter(), job=job("RUNNING"), job_head_service=None)
    )
    assert kinds(d) == ["CreateService"]
    svc = d.actions[0].service  # type: ignore[union-attr]
    assert svc["metadata"]["name"] == "rj-head-svc"
    assert svc["metadata"]["labels"] == {
        "ray.io/originated-from-cr-name": "rj",
        "ray.io/originated-from-crd": "RayJob",
        "ray.io/node-type": "head",
        "ray.io/identifier": "rj-head",
    }
    assert svc["metadata"]["ownerReferences"][0]["kind"] == "RayJob"
    assert svc["spec"]["selector"]["ray.io/cluster"] == "rj-bbbbb"
    assert any(p["name"] == "dashboard" for p in svc["spec"]["ports"])
    # a retry's new cluster: the selector moves, the ClusterIP stays
    old = job_svc("rj-old00")
    old["spec"]["clusterIP"] = "10.0.0.7"
    d = M.decide(
        rj, world(cluster=cluster(), submitter=submitter(), job=job("RUNNING"), job_head_service=old)
    )
    assert kinds(d) == ["UpdateServiceSelector"]
    upd = d.actions[0]
    assert isinstance(upd, M.UpdateServiceSelector)
    assert (upd.spec["selector"]["ray.io/cluster"], upd.spec["clusterIP"]) == ("rj-bbbbb", "10.0.0.7")
    # selector mode: the user's cluster, no service of ours
    sel = rayjob(running_status(rayClusterName="shared"), clusterSelector={"ray.io/cluster": "shared"})
    del sel["spec"]["rayClusterSpec"]
    d = M.decide(
        sel,
        world(
            cluster=cluster(name="shared"), submitter=submitter(), job=job("RUNNING"), job_head_service=None
        ),
    )
    assert kinds(d) == []


def test_submitter_finished_timeout_uses_the_fresh_job_status() -> None:
    # The operator was down while the job finished: the submitter ended long ago, the last status still says
    # RUNNING, but the dashboard says SUCCEEDED now. That is Complete, not a grace-period failure.
    rj = rayjob(running_status(jobStatus="RUNNING"))
    later = T0 + timedelta(minutes=10)
    d = M.decide(
        rj, world(now=later, cluster=cluster(), submitter=submitter("Complete", at=T0), job=job("SUCCEEDED"))
    )
    assert (d.status["jobDeploymentStatus"], d.status["jobStatus"]) == ("Complete", "SUCCEEDED")
    d = M.decide(
        rj,
        world(
            now=later, cluster=cluster(), submitter=submitter("Complete", at=T0), job=M.JobLookup(error="x")
        ),
    )
    assert (d.status["jobDeploymentStatus"], d.status["reason"]) == (
        "Failed",
        "JobDeploymentStatusTransitionGracePeriodExceeded",
    )


def test_rejected_http_submission_fails_the_attempt_and_retries() -> None:
    rj = rayjob(running_status(), submissionMode="HTTPMode", backoffLimit=1)
    st = M.reject_submission(rj, T0, "The Ray dashboard rejected the job submission: HTTP 400")
    assert (st["jobDeploymentStatus"], st["reason"], st["failed"]) == ("Retrying", "SubmissionFailed", 1)
    rj2 = rayjob(running_status(failed=1), submissionMode="HTTPMode", backoffLimit=1)
    st = M.reject_submission(rj2, T0, "rejected")
    assert (st["jobDeploymentStatus"], st["failed"], st["endTime"]) == ("Failed", 2, ts(T0))
