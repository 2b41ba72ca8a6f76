"""Helpers for RayJob integration/e2e tests: manifests, an in-process operator (RayCluster + RayJob
controllers), and a stand-in kubelet for submitter pods.

The plane has no kubelet. Ray pods are made Running/Ready by `fake_kubelet` (tests/integration/rayclusters.py);
submitter pods, created by kube-controller-manager's Job controller from our batch Job, are "run" by
`submitter_kubelet`: a callable executes the pod (against a fake dashboard, or the real `bash -ce` script
against a local Ray head) and the pod's status becomes Succeeded/Failed with the exit code, so the real Job
controller drives the Job's conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS, RAYJOBS
from rayop.controllers import raycluster as rcmod
from rayop.controllers import raycluster_metrics, rayjob_metrics
from rayop.controllers import rayjob as rjmod
from rayop.controllers import rayjob_machine as M
from rayop.controllers.settings import ControllerSettings
from rayop.runtime.client import PODS, ApiClient, ApiError
from rayop.runtime.manager import Manager
from tests import rbac
from tests.integration.rayclusters import raycluster

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def rayjob(name: str, namespace: str, *, workers: int = 0, **spec: Any) -> dict[str, Any]:
    rc = raycluster("x", namespace, replicas=workers)["spec"]
    s: dict[str, Any] = {"entrypoint": "python -c 'print(42)'", "rayClusterSpec": rc}
    s.update(spec)
    if s.get("rayClusterSpec") is None:
        s.pop("rayClusterSpec")
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND_RAYJOB,
        "metadata": {"name": name, "namespace": namespace},
        "spec": s,
    }


async def get_rj(kube: ApiClient, ns: str, name: str) -> dict[str, Any]:
    return await kube.get(RAYJOBS, name, ns)


def status_of(rj: dict[str, Any]) -> dict[str, Any]:
    return dict(rj.get("status") or {})


@contextlib.asynccontextmanager
async def operator(
    client: ApiClient,
    namespace: str,
    *,
    resolver: Callable[[str], str] | None = None,
    config: M.RayJobConfig | None = None,
    environ: dict[str, str] | None = None,
    use_proxy: bool = False,
    extra: Callable[[Manager], object] | None = None,
) -> AsyncIterator[Manager]:
    """RayCluster + RayJob controllers in this process, watching one namespace (`extra` adds more to the
    manager before it runs, e.g. the web view)."""
    # The operator runs as itself, under the chart's ClusterRole (tests/rbac.py).
    client = rbac.operator_client(client)
    mgr = Manager(
        client,
        leader_election=False,
        namespaces=[namespace],
        metrics_addr=None,
        probe_addr=None,
        handle_signals=False,
        concurrency=4,
    )
    env = {C.OPENV_RAYCLUSTER_DEFAULT_REQUEUE_SECONDS: "10", **(environ or {})}
    settings = ControllerSettings.from_env(env)
    settings = replace(
        settings,
        rayjob=replace(
            settings.rayjob,
            machine=config or M.RayJobConfig(requeue_seconds=0.5),
            dashboard_resolver=resolver,
            use_kubernetes_proxy=use_proxy,
        ),
        reconcile_concurrency=4,
        enable_metrics=True,
    )
    rcmod.setup(mgr, settings)
    rjmod.setup(mgr, settings)
    if extra is not None:
        extra(mgr)
    task = asyncio.create_task(mgr.run())
    try:
        yield mgr
    finally:
        mgr.stop()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await client.close()
            raycluster_metrics.unregister(mgr.informer(RAYCLUSTERS))
            rayjob_metrics.unregister_metrics(mgr.informer(RAYJOBS))


def reconciler_of(mgr: Manager) -> rjmod.RayJobReconciler:
    for c in mgr.controllers:
        if c.name == "rayjob":
            r: rjmod.RayJobReconciler = c.reconcile.__self__  # type: ignore[attr-defined]
            return r
    raise AssertionError("no rayjob controller")


def terminated_status(pod: dict[str, Any], code: int) -> dict[str, Any]:
    now = M.fmt_time(M.datetime.now(M.UTC))
    containers = (pod.get("spec") or {}).get("containers") or []
    return {
        "phase": "Succeeded" if code == 0 else "Failed",
        "startTime": now,
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Completed" if code == 0 else "Error",
                        "startedAt": now,
                        "finishedAt": now,
                    }
                },
            }
            for c in containers
        ],
    }


Runner = Callable[[dict[str, Any]], Awaitable[int]]


@contextlib.asynccontextmanager
async def submitter_kubelet(
    kube: ApiClient, namespace: str, run: Runner, interval: float = 0.2
) -> AsyncIterator[list[str]]:
    """Run every new submitter pod once with `run(pod) -> exit code`, then record it as terminated.

    Yields the list of pod names run so far (one entry per pod, so Job retries show up)."""
    seen: set[str] = set()
    started: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(pod: dict[str, Any]) -> None:
        try:
            code = await run(pod)
        except asyncio.CancelledError:
            raise
        except Exception:
            code = 1
        fresh = await kube.get_or_none(PODS, pod["metadata"]["name"], namespace)
        if fresh is None:
            return
        body = copy.deepcopy(fresh)
        body["status"] = terminated_status(fresh, code)
        with contextlib.suppress(ApiError):
            await kube.replace_status(PODS, body)

    async def loop() -> None:
        while True:
            with contextlib.suppress(ApiError):
                items = (await kube.list(PODS, namespace, label_selector=JOB_NAME_LABEL))["items"]
                for p in items:
                    name = p["metadata"]["name"]
                    if name in seen or p["metadata"].get("deletionTimestamp"):
                        continue
                    seen.add(name)
                    started.append(name)
                    tasks.append(asyncio.create_task(one(p)))
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop())
    try:
        yield started
    finally:
        task.cancel()
        for t in tasks:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(task, *tasks, return_exceptions=True)


def pod_env(pod: dict[str, Any]) -> dict[str, str]:
    c = pod["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in c.get("env") or [] if "value" in e}


async def run_script(pod: dict[str, Any], address_map: dict[str, str], ray_bin: str, log: list[str]) -> int:
    """Run the submitter container's real `bash -ce` script locally, the cluster DNS name mapped to a
    local head (there is no cluster DNS on the test machine)."""
    c = pod["spec"]["containers"][0]
    argv = list(c["command"]) + list(c.get("args") or [])
    for dns, local in address_map.items():
        argv = [a.replace(dns, local) for a in argv]
    env = dict(os.environ)
    env.update({k: v for k, v in pod_env(pod).items()})
    env["PATH"] = f"{ray_bin}:{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.setdefault("RAY_AUTH_MODE", "disabled")
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        raise
    log.append(out.decode(errors="replace"))
    return int(proc.returncode or 0)
