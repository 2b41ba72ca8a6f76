"""What the caches do not hold, fetched on a bounded schedule: Ray-reported workers, events, driver logs.

A page never waits for these. It shows the last answer (or "loading") and says it wants the data; the
fetcher's loop fetches what is due, at most `concurrency` calls at a time, each with a timeout:

- Ray-reported workers of a cluster: every `viewed_ray_interval` while someone looks at the cluster, and
  every `sweep_interval` for every cluster whose head is Ready (they feed the scaling history), from Ray's
  state API (`/api/v0/nodes`) through the head's dashboard;
- events of an object: every `events_interval` while someone looks at it (the API server's events, by uid);
- Serve replicas of a RayService's active cluster (target and running, per application/deployment), on the
  same schedule as Ray-reported workers, from Serve's REST API (`/api/serve/applications/`);
- a RayJob's driver logs: every `logs_interval` while someone looks at a running job, and once when a job
  finishes (viewed or not), so the output survives the cluster's deletion; the last `max_logs` jobs' tails
  are kept.

Interest lapses `interest_seconds` after the last view; then only the sweep and finished jobs cause calls.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from rayop.api import constants as C
from rayop.api.spec import auth_enabled
from rayop.base.objects import labels_of, meta, name_of, spec_of, status_of
from rayop.base.types import Obj
from rayop.builders.pod import auth_secret_name
from rayop.ray.dashboard import DashboardClient, DashboardError
from rayop.runtime.client import CORE_EVENTS, SECRETS, ApiClient, ApiError
from rayop.ui.caches import Caches, dashboard_port
from rayop.ui.fieldmanagers import (
    SERVE_AUTOSCALER_MANAGER,
    FieldManager,
    ManagerTable,
    group_names,
    serve_config_manager,
)
from rayop.ui.history import RAY, READY, PodCountStep, ScalingHistory, step_from_event
from rayop.ui.model import EventRow, Fetched, event_row, live_workers

log = logging.getLogger("rayop.ui.fetch")

Key = tuple[str, str, str]  # (what, namespace, name-or-uid)
RAY_NODES = "ray"
SERVE = "serve"
EVENTS = "events"
LOGS = "logs"


@dataclass(frozen=True)
class FetchOptions:
    use_proxy: bool = True
    cluster_domain: str = C.DEFAULT_CLUSTER_DOMAIN
    viewed_ray_interval: float = 5.0
    sweep_interval: float = 60.0
    events_interval: float = 10.0
    logs_interval: float = 5.0
    interest_seconds: float = 60.0
    concurrency: int = 4
    timeout: float = 10.0
    log_tail_bytes: int = 64 * 1024
    log_tail_lines: int = 500
    max_logs: int = 200
    max_events: int = 30
    token_ttl: float = 600.0
    tick: float = 0.5


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def tail(text: str, max_bytes: int, max_lines: int) -> str:
    """The last whole lines of a log, without terminal colour codes (Ray colours some of its lines)."""
    text = _ANSI.sub("", text)
    if len(text) > max_bytes:
        text = text[-max_bytes:]
        text = text.split("\n", 1)[1] if "\n" in text else text
    lines = text.splitlines()
    return "\n".join(lines[-max_lines:])


def ray_worker_counts(nodes: Iterable[Obj], pods: Iterable[Obj]) -> dict[str, int]:
    """ALIVE worker nodes per group: from the node label `ray.io/node-group`, else by matching the node's IP
    to a Pod's (Ray versions that do not label nodes)."""
    by_ip = {
        str((p.get("status") or {}).get("podIP")): str(labels_of(p).get(C.LABEL_GROUP) or "")
        for p in pods
        if labels_of(p).get(C.LABEL_NODE_TYPE) == C.NODE_TYPE_WORKER and (p.get("status") or {}).get("podIP")
    }
    counts: dict[str, int] = {}
    for n in nodes:
        if n.get("is_head_node"):
            continue
        raw = n.get("labels")
        labels: dict[str, Any] = raw if isinstance(raw, dict) else {}
        group = str(labels.get("ray.io/node-group") or "") or by_ip.get(str(n.get("node_ip") or ""), "")
        if group and group != C.HEAD_GROUP_NAME:
            counts[group] = counts.get(group, 0) + 1
    return counts


@dataclass(frozen=True)
class ServeReplicas:
    """One Serve deployment's replicas: what Serve aims for, how many run, whether Serve's autoscaler decides."""

    target: int
    running: int
    autoscaled: bool


def serve_replicas(details: Obj) -> dict[str, ServeReplicas]:
    """Per "application/deployment", from Serve's ServeInstanceDetails (`python/ray/serve/schema.py`)."""
    out: dict[str, ServeReplicas] = {}
    apps = details.get("applications")
    for app_name, app in (apps or {}).items() if isinstance(apps, dict) else []:
        deps = app.get("deployments") if isinstance(app, dict) else None
        for dep_name, dep in (deps or {}).items() if isinstance(deps, dict) else []:
            if not isinstance(dep, dict):
                continue
            raw = dep.get("deployment_config")
            config: Obj = raw if isinstance(raw, dict) else {}
            target = dep.get("target_num_replicas")
            if not isinstance(target, int):
                n = config.get("num_replicas")
                target = n if isinstance(n, int) else 0
            reps = dep.get("replicas")
            replicas: list[Any] = reps if isinstance(reps, list) else []
            running = len([r for r in replicas if isinstance(r, dict) and r.get("state") == "RUNNING"])
            out[f"{app_name}/{dep_name}"] = ServeReplicas(
                target, running, bool(config.get("autoscaling_config"))
            )
    return out


class Fetcher:
    """See the module docstring."""

    def __init__(
        self,
        api: ApiClient,
        caches: Caches,
        history: ScalingHistory,
        options: FetchOptions | None = None,
        *,
        serve_history: ScalingHistory | None = None,
        serve_managers: ManagerTable | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.caches = caches
        self.history = history
        self.serve_history = serve_history or ScalingHistory()
        self.serve_managers = serve_managers or ManagerTable(serve_config_manager)
        self.o = options or FetchOptions()
        self.clock = clock
        self.wall = wall
        self.gen = 0
        self.calls = 0
        self.rounds = 0  # loop passes, for tests that must know the schedule was looked at
        self._data: dict[Key, Fetched] = {}
        self._logs: OrderedDict[Key, Fetched] = OrderedDict()
        self._interest: dict[Key, float] = {}
        self._due: dict[Key, float] = {}
        self._running: set[Key] = set()
        self._sweep_due: dict[Key, float] = {}
        self._tokens: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._wake = asyncio.Event()
        self._sem: asyncio.Semaphore | None = None
        self._session: aiohttp.ClientSession | None = None
        self.api_error = ""
        self.api_error_since = 0.0

    # -- what pages read -----------------------------------------------------------------------------

    def _want(self, key: Key) -> None:
        now = self.clock()
        first = key not in self._interest or self._interest[key] < now
        self._interest[key] = now + self.o.interest_seconds
        if first and key not in self._running:
            self._due[key] = now
            self._wake.set()

    def ray_counts(self, namespace: str, name: str, *, viewed: bool = False) -> Fetched:
        key = (RAY_NODES, namespace, name)
        if viewed:
            self._want(key)
        return self._data.get(key, Fetched())

    def serve(self, namespace: str, name: str, *, viewed: bool = False) -> Fetched:
        key = (SERVE, namespace, name)
        if viewed:
            self._want(key)
        return self._data.get(key, Fetched())

    def forget_service(self, namespace: str, name: str) -> None:
        key = (SERVE, namespace, name)
        self._data.pop(key, None)
        self._due.pop(key, None)
        self._sweep_due.pop((SERVE, namespace, name), None)
        self.serve_history.forget(namespace, name)
        self.serve_managers.forget(namespace, name)

    def events(self, namespace: str, uid: str) -> Fetched:
        key = (EVENTS, namespace, uid)
        self._want(key)
        return self._data.get(key, Fetched())

    def logs(self, namespace: str, job: str) -> Fetched:
        key = (LOGS, namespace, job)
        self._want(key)
        return self._logs.get(key, Fetched())

    def job_finished(self, namespace: str, job: str) -> None:
        """A RayJob reached a terminal status: keep its driver output before its cluster goes."""
        key = (LOGS, namespace, job)
        if key not in self._running:
            self._due[key] = self.clock()
            self._wake.set()

    def forget_cluster(self, namespace: str, name: str) -> None:
        key = (RAY_NODES, namespace, name)
        self._data.pop(key, None)
        self._due.pop(key, None)
        self._sweep_due.pop(key, None)
        self._tokens.pop((namespace, name), None)

    def forget_job(self, namespace: str, name: str) -> None:
        key = (LOGS, namespace, name)
        self._logs.pop(key, None)
        self._due.pop(key, None)

    # -- the loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        self._sem = asyncio.Semaphore(self.o.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                now = self.clock()
                self._schedule_sweep(now)
                for key in [k for k, t in self._due.items() if t <= now and k not in self._running]:
                    del self._due[key]
                    self._running.add(key)
                    t = asyncio.create_task(self._fetch(key), name=f"ui-fetch-{key[0]}")
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                self._expire(now)
                self.rounds += 1
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.o.tick)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._session is not None:
                await self._session.close()

    def _schedule_sweep(self, now: float) -> None:
        for rc in self.caches.clusters.list():
            ns, name = str(meta(rc).get("namespace") or ""), name_of(rc)
            self._sweep((RAY_NODES, ns, name), now, ns, name)
        for rs in self.caches.rayservices.list():
            ns, name = str(meta(rs).get("namespace") or ""), name_of(rs)
            self._sweep((SERVE, ns, name), now, ns, _active_cluster(rs))

    def _sweep(self, key: Key, now: float, namespace: str, cluster: str) -> None:
        """Schedule `key` once per sweep interval, when the cluster it asks has a Ready head."""
        due = self._sweep_due.get(key)
        if due is None:
            # Spread the first sweep over the interval so a start with many objects is not a burst.
            due = now + (hash(key) % 1000) / 1000 * self.o.sweep_interval
            self._sweep_due[key] = due
        if due <= now:
            self._sweep_due[key] = now + self.o.sweep_interval
            if key not in self._running and cluster and self.caches.head_ready(namespace, cluster):
                self._due.setdefault(key, now)

    def _expire(self, now: float) -> None:
        for key in [k for k, t in self._interest.items() if t < now - 600]:
            del self._interest[key]
            if key[0] == EVENTS:
                self._data.pop(key, None)

    def _interested(self, key: Key) -> bool:
        return self._interest.get(key, 0.0) >= self.clock()

    async def _fetch(self, key: Key) -> None:
        assert self._sem is not None
        what, ns, name = key
        again: float | None = None
        try:
            async with self._sem:
                if what == RAY_NODES:
                    await self._fetch_ray(ns, name)
                    again = self.o.viewed_ray_interval
                elif what == SERVE:
                    await self._fetch_serve(ns, name)
                    again = self.o.viewed_ray_interval
                elif what == EVENTS:
                    await self._fetch_events(ns, name)
                    again = self.o.events_interval
                elif what == LOGS:
                    done = await self._fetch_logs(ns, name)
                    again = None if done else self.o.logs_interval
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("fetching %s of %s/%s failed", what, ns, name)
            again = max(self.o.events_interval, 5.0)
        finally:
            self._running.discard(key)
            self.gen += 1
        if again is not None and self._interested(key):
            self._due[key] = self.clock() + again

    # -- Kubernetes API ------------------------------------------------------------------------------

    def _api_ok(self) -> None:
        self.api_error, self.api_error_since = "", 0.0

    def _api_failed(self, e: BaseException) -> None:
        if not self.api_error:
            self.api_error_since = self.wall()
        self.api_error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__

    async def _fetch_events(self, namespace: str, uid: str) -> None:
        key = (EVENTS, namespace, uid)
        prev = self._data.get(key, Fetched())
        self.calls += 1
        try:
            answer = await self.api.request(
                "GET", CORE_EVENTS.path(namespace), params={"fieldSelector": f"involvedObject.uid={uid}"}
            )
        except ApiError as e:
            self._data[key] = Fetched(prev.value, prev.at, f"{e.status} {e.reason}: {e.message}")
            return
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self._api_failed(e)
            self._data[key] = Fetched(prev.value, prev.at, "the Kubernetes API server did not answer")
            return
        self._api_ok()
        rows: list[EventRow] = [event_row(ev) for ev in answer.get("items") or [] if isinstance(ev, dict)]
        rows.sort(key=lambda r: r.t, reverse=True)
        self._data[key] = Fetched(rows[: self.o.max_events], self.wall())

    async def _token(self, rc: Obj) -> str | None:
        if not auth_enabled(spec_of(rc)):
            return None
        key = (str(meta(rc).get("namespace") or ""), name_of(rc))
        hit = self._tokens.get(key)
        if hit and hit[0] > self.clock():
            return hit[1]
        self.calls += 1
        secret = await self.api.get_or_none(SECRETS, auth_secret_name(rc), key[0])
        raw = ((secret or {}).get("data") or {}).get(C.AUTH_TOKEN_SECRET_KEY)
        token = base64.b64decode(raw).decode() if raw else None
        self._tokens[key] = (self.clock() + self.o.token_ttl, token)
        return token

    # -- Ray -----------------------------------------------------------------------------------------

    def _client(self, namespace: str, service: Obj, token: str | None) -> DashboardClient:
        svc = name_of(service)
        if self.o.use_proxy:
            return DashboardClient.via_proxy(self.api, namespace, svc, token=token, timeout=self.o.timeout)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        url = f"http://{svc}.{namespace}.svc.{self.o.cluster_domain}:{dashboard_port(service)}"
        return DashboardClient.direct(url, session=self._session, token=token, timeout=self.o.timeout)

    async def _dashboard(self, namespace: str, cluster: str) -> DashboardClient | str:
        """A client for the cluster's dashboard, or why there is none."""
        rc = self.caches.clusters.get(namespace, cluster)
        if rc is None:
            return "the RayCluster is gone"
        svc = self.caches.head_service(namespace, cluster)
        if svc is None:
            return "no head Service yet"
        try:
            token = await self._token(rc)
        except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as e:
            return f"cannot read the Ray auth token: {e}"
        return self._client(namespace, svc, token)

    async def _fetch_ray(self, namespace: str, name: str) -> None:
        key = (RAY_NODES, namespace, name)
        prev = self._data.get(key, Fetched())
        rc = self.caches.clusters.get(namespace, name)
        if rc is None:
            self._data.pop(key, None)
            return
        groups = group_names(rc)
        if not self.caches.head_ready(namespace, name):
            self._data[key] = Fetched(None, prev.at, "the head Pod is not ready")
            self._record_ray(namespace, name, groups, None)
            return
        client = await self._dashboard(namespace, name)
        if isinstance(client, str):
            self._data[key] = Fetched(None, prev.at, client)
            return
        self.calls += 1
        try:
            nodes = await client.list_alive_nodes()
        except DashboardError as e:
            self._data[key] = Fetched(prev.value, prev.at, _short(e))
            self._record_ray(namespace, name, groups, None)
            return
        finally:
            await client.close()
        counts = ray_worker_counts(nodes, self.caches.cluster_pods(namespace, name))
        self._data[key] = Fetched(counts, self.wall())
        self._record_ray(namespace, name, groups, counts)

    def _record_ray(
        self, namespace: str, name: str, groups: list[str], counts: dict[str, int] | None
    ) -> None:
        now = self.wall()
        for g in groups:
            self.history.observe(namespace, name, g, RAY, None if counts is None else counts.get(g, 0), now)

    async def _fetch_serve(self, namespace: str, name: str) -> None:
        key = (SERVE, namespace, name)
        prev = self._data.get(key, Fetched())
        rs = self.caches.rayservices.get(namespace, name)
        if rs is None:
            self._data.pop(key, None)
            return
        cluster = _active_cluster(rs)
        if not cluster or not self.caches.head_ready(namespace, cluster):
            self._data[key] = Fetched(prev.value, prev.at, "no active cluster with a ready head")
            return
        client = await self._dashboard(namespace, cluster)
        if isinstance(client, str):
            self._data[key] = Fetched(prev.value, prev.at, client)
            return
        self.calls += 1
        try:
            details = await client.get_serve_applications()
        except DashboardError as e:
            self._data[key] = Fetched(prev.value, prev.at, _short(e))
            return
        finally:
            await client.close()
        rows = serve_replicas(details)
        now = self.wall()
        config_by = self.serve_managers.get(namespace, name).get("serveConfigV2")
        for dep, r in rows.items():
            by = FieldManager(SERVE_AUTOSCALER_MANAGER) if r.autoscaled else config_by
            self.serve_history.desired(namespace, name, dep, r.target, now, by)
            self.serve_history.observe(namespace, name, dep, READY, r.running, now)
        self.serve_history.drop_groups(namespace, name, rows)
        self._data[key] = Fetched(rows, now)

    async def _fetch_logs(self, namespace: str, job: str) -> bool:
        """Returns True when there is nothing more to fetch (the job finished and its tail is kept)."""
        key = (LOGS, namespace, job)
        prev = self._logs.get(key, Fetched())
        rj = self.caches.jobs.get(namespace, job)
        if rj is None:
            return True
        st = status_of(rj)
        job_id, cluster = str(st.get("jobId") or ""), str(st.get("rayClusterName") or "")
        terminal = st.get("jobStatus") in ("SUCCEEDED", "FAILED", "STOPPED")
        if not job_id or not cluster:
            return False
        client = await self._dashboard(namespace, cluster)
        if isinstance(client, str):
            self._keep_logs(key, Fetched(prev.value, prev.at, client if not prev.value else ""))
            return prev.loaded and terminal
        self.calls += 1
        try:
            text = await client.get_job_logs(job_id)
        except DashboardError as e:
            self._keep_logs(key, Fetched(prev.value, prev.at, _short(e)))
            return False
        finally:
            await client.close()
        self._keep_logs(key, Fetched(tail(text, self.o.log_tail_bytes, self.o.log_tail_lines), self.wall()))
        return terminal

    def _keep_logs(self, key: Key, value: Fetched) -> None:
        self._logs[key] = value
        self._logs.move_to_end(key)
        while len(self._logs) > self.o.max_logs:
            self._logs.popitem(last=False)


def _active_cluster(rs: Obj) -> str:
    active = status_of(rs).get("activeServiceStatus")
    return str(active.get("rayClusterName") or "") if isinstance(active, dict) else ""


def _short(e: DashboardError) -> str:
    if e.status is None:
        return f"Ray's dashboard did not answer ({e.detail})"
    return f"Ray's dashboard answered HTTP {e.status}"


# After a restart ------------------------------------------------------------------------------------


async def rebuild_history(
    api: ApiClient,
    caches: Caches,
    history: ScalingHistory,
    namespaces: list[str] | None,
    *,
    now: float | None = None,
    max_events: int = 20_000,
) -> int:
    """Recover each cluster's recent worker counts from the RayCluster controller's pod events (two paged
    lists per namespace scope); returns the number of changes rebuilt."""
    now = time.time() if now is None else now
    by_uid: dict[str, list[tuple[float, str, str]]] = {}
    seen = 0
    for reason in (C.EV_CREATED_WORKER_POD, C.EV_DELETED_WORKER_POD):
        scopes: list[str | None] = [*namespaces] if namespaces else [None]
        for ns in scopes:
            async for page in api.list_pages(
                CORE_EVENTS,
                ns,
                field_selector=f"reason={reason},involvedObject.kind={C.KIND_RAYCLUSTER}",
                limit=500,
            ):
                for ev in page.get("items") or []:
                    row = event_row(ev)
                    uid = str((ev.get("involvedObject") or {}).get("uid") or "")
                    if uid:
                        by_uid.setdefault(uid, []).append((row.t, row.reason, row.message))
                    seen += 1
                if seen >= max_events:
                    break
    rebuilt = 0
    for rc in caches.clusters.list():
        md = meta(rc)
        evs = by_uid.get(str(md.get("uid") or ""))
        if not evs:
            continue
        ns, name = str(md.get("namespace") or ""), str(md.get("name") or "")
        groups = group_names(rc)
        steps: list[PodCountStep] = [
            s for t, reason, note in evs if (s := step_from_event(reason, note, t, name, groups)) is not None
        ]
        pods = caches.cluster_pods(ns, name)
        rebuilt += history.rebuild(ns, name, steps, {g: live_workers(pods, g) for g in groups}, now)
    return rebuilt
