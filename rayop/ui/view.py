"""The view's state and its pages: informer handlers keep the history and timelines, pages read the caches.

Handlers run in the informers' reflector tasks, so they only update small in-memory records and bump
`gen`; a page's ETag is made of `gen` and the history's and fetcher's counters, so a poll that finds
nothing new costs a string comparison and no rendering.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from rayop.api import constants as C
from rayop.base.objects import labels_of, meta, name_of, namespace_of, status_of
from rayop.base.times import parse_timestamp
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders.status import is_running_and_ready
from rayop.ui import model as M
from rayop.ui import render as R
from rayop.ui.caches import Caches
from rayop.ui.fetch import Fetcher
from rayop.ui.fieldmanagers import ManagerTable
from rayop.ui.history import READY, ScalingHistory

# How long after its creation an object counts as new, so its first state is a timeline entry rather
# than "what it was when the view started".
FRESH_SECONDS = 60.0


class Timelines:
    """Per-object status transitions seen by the watch, bounded per object and in number of objects."""

    def __init__(self, per_object: int = 50, objects: int = 5000) -> None:
        self.per_object = per_object
        self.objects = objects
        self._d: OrderedDict[tuple[str, str], deque[M.TimelineEntry]] = OrderedDict()

    def add(self, key: tuple[str, str], entry: M.TimelineEntry) -> None:
        q = self._d.get(key)
        if q is None:
            q = self._d[key] = deque(maxlen=self.per_object)
        q.append(entry)
        self._d.move_to_end(key)
        while len(self._d) > self.objects:
            self._d.popitem(last=False)

    def get(self, key: tuple[str, str]) -> list[M.TimelineEntry]:
        return list(self._d.get(key, ()))

    def forget(self, key: tuple[str, str]) -> None:
        self._d.pop(key, None)


def _key(obj: Obj) -> tuple[str, str]:
    return namespace_of(obj), name_of(obj)


def _ready_worker(pod: Obj | None) -> tuple[str, str, str] | None:
    """(namespace, cluster, group) of a worker Pod that is Running, Ready and not terminating; else None."""
    if pod is None:
        return None
    labels = labels_of(pod)
    cluster, group = labels.get(C.LABEL_CLUSTER), labels.get(C.LABEL_GROUP)
    if not cluster or not group or labels.get(C.LABEL_NODE_TYPE) != C.NODE_TYPE_WORKER:
        return None
    if meta(pod).get("deletionTimestamp") or not is_running_and_ready(pod):
        return None
    return namespace_of(pod), str(cluster), str(group)


def _job_state(rj: Obj | None) -> tuple[str, str]:
    st = status_of(rj)
    return str(st.get("jobDeploymentStatus") or ""), str(st.get("jobStatus") or "")


def _service_state(rs: Obj | None) -> tuple[str, str, str, str]:
    st = status_of(rs)
    active = str(
        (
            (st.get("activeServiceStatus") or {}) if isinstance(st.get("activeServiceStatus"), dict) else {}
        ).get("rayClusterName")
        or ""
    )
    pending = str(
        (
            (st.get("pendingServiceStatus") or {}) if isinstance(st.get("pendingServiceStatus"), dict) else {}
        ).get("rayClusterName")
        or ""
    )
    ready = upgrading = ""
    for c in st.get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Ready":
            ready = f"{c.get('status')}/{c.get('reason') or ''}"
        if isinstance(c, dict) and c.get("type") == "UpgradeInProgress":
            upgrading = str(c.get("status") or "")
    return active, pending, ready, upgrading


@dataclass(frozen=True)
class PageAccess:
    """What the caller may see besides the page's object (all True in the loopback mode)."""

    pods: bool = True
    services: bool = True
    events: bool = True
    proxy: bool = True


class View:
    """See the module docstring."""

    def __init__(
        self,
        caches: Caches,
        history: ScalingHistory,
        managers: ManagerTable,
        fetcher: Fetcher,
        *,
        api_server: str = "",
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.caches = caches
        self.history = history
        self.managers = managers
        self.fetcher = fetcher
        self.api_server = api_server.rstrip("/")
        self.wall = wall
        self.gen = 0
        # Ready worker Pods per (namespace, cluster, group), kept by the Pod handler.
        self.ready: dict[tuple[str, str, str], int] = {}
        self.jobs_tl = Timelines()
        self.services_tl = Timelines()

    # -- informer handlers ---------------------------------------------------------------------------

    def on_cluster(self, event: str, obj: Obj, old: Obj | None) -> None:
        self.gen += 1
        ns, name = _key(obj)
        if event == "DELETED":
            self.history.forget(ns, name)
            self.managers.forget(ns, name)
            self.fetcher.forget_cluster(ns, name)
            return
        now = self.wall()
        who = self.managers.get(ns, name)
        suspended = (
            (obj.get("spec") or {}).get("suspend") is True if isinstance(obj.get("spec"), dict) else False
        )
        names = []
        for g in (
            (obj.get("spec") or {}).get("workerGroupSpecs") or [] if isinstance(obj.get("spec"), dict) else []
        ):
            if not isinstance(g, dict) or not g.get("groupName"):
                continue
            gname = str(g["groupName"])
            names.append(gname)
            desired = 0 if suspended else cl.desired_worker_replicas(g)
            self.history.desired(ns, name, gname, desired, now, who.get(gname))
            self.history.observe(ns, name, gname, READY, self.ready.get((ns, name, gname), 0), now)
        self.history.drop_groups(ns, name, names)

    def on_pod(self, event: str, obj: Obj, old: Obj | None) -> None:
        self.gen += 1
        # Counted by difference (this event's Pod in, its previous state out), so a Pod event costs the
        # same in a cluster of 3 workers as in one of 3,000.
        gone = _ready_worker(old) if event == "MODIFIED" else None
        came = _ready_worker(obj) if event != "DELETED" else None
        if event == "DELETED":
            gone = _ready_worker(obj)
        if gone == came:
            return
        now = self.wall()
        for key, delta in ((gone, -1), (came, 1)):
            if key is None:
                continue
            n = self.ready.get(key, 0) + delta
            if n > 0:
                self.ready[key] = n
            else:
                self.ready.pop(key, None)
            if self.caches.clusters.get(key[0], key[1]) is not None:
                self.history.observe(key[0], key[1], key[2], READY, max(n, 0), now)

    def on_job(self, event: str, obj: Obj, old: Obj | None) -> None:
        self.gen += 1
        key = _key(obj)
        if event == "DELETED":
            self.jobs_tl.forget(key)
            self.fetcher.forget_job(*key)
            return
        now = self.wall()
        state, before = _job_state(obj), _job_state(old) if old is not None else None
        fresh = now - (parse_timestamp(meta(obj).get("creationTimestamp")) or 0) < FRESH_SECONDS
        if state != before and (old is not None or fresh):
            dep, js = state
            what = f"Deployment {dep or 'New'}"
            self.jobs_tl.add(key, M.TimelineEntry(now, what, f"job {js}" if js else "", "status"))
        terminal = state[1] in M.JOB_TERMINAL_STATUS
        if terminal and (before is None or before[1] not in M.JOB_TERMINAL_STATUS):
            self.fetcher.job_finished(*key)

    def on_rayservice(self, event: str, obj: Obj, old: Obj | None) -> None:
        self.gen += 1
        key = _key(obj)
        if event == "DELETED":
            self.services_tl.forget(key)
            self.fetcher.forget_service(*key)
            return
        now = self.wall()
        fresh = now - (parse_timestamp(meta(obj).get("creationTimestamp")) or 0) < FRESH_SECONDS
        state = _service_state(obj)
        before = _service_state(old) if old is not None else None
        if before is None and not fresh:
            return
        b = before or ("", "", "", "")
        if state[0] != b[0] and state[0]:
            self.services_tl.add(
                key, M.TimelineEntry(now, "Active cluster", state[0] + (f" (was {b[0]})" if b[0] else ""))
            )
        if state[1] != b[1]:
            what = f"{state[1]} created" if state[1] else f"{b[1]} no longer pending"
            self.services_tl.add(key, M.TimelineEntry(now, "Pending cluster", what))
        if state[2] != b[2] and state[2]:
            self.services_tl.add(key, M.TimelineEntry(now, "Ready", state[2].replace("/", " · ")))
        if state[3] != b[3] and state[3]:
            self.services_tl.add(key, M.TimelineEntry(now, "Upgrade in progress", state[3]))

    def on_other(self, event: str, obj: Obj, old: Obj | None) -> None:
        self.gen += 1

    # -- page state ----------------------------------------------------------------------------------

    def etag(self, page: str, user: str = "") -> str:
        who = hashlib.sha256(user.encode()).hexdigest()[:8] if user else "-"
        return f'W/"{page}-{self.gen}-{self.history.gen}-{self.fetcher.gen}-{who}"'

    def banner(self) -> R.Banner:
        waiting = self.caches.not_synced()
        if waiting:
            return R.Banner("info", f"Loading: waiting for the first list of {', '.join(waiting)}.")
        if self.fetcher.api_error:
            since = time.strftime("%H:%M:%S UTC", time.gmtime(self.fetcher.api_error_since))
            return R.Banner(
                "error",
                f"The Kubernetes API server has not answered since {since} ({self.fetcher.api_error}). "
                "Showing the last state the caches hold.",
            )
        return R.Banner()

    def touch(self, page: str, namespace: str = "", name: str = "") -> None:
        """Keep the fetches of a page that someone is looking at going (also when a poll finds no change)."""
        if page == "cluster":
            rc = self.caches.clusters.get(namespace, name)
            self.fetcher.ray_counts(namespace, name, viewed=True)
            if rc is not None:
                self.fetcher.events(namespace, str(meta(rc).get("uid") or ""))
        elif page == "job":
            rj = self.caches.jobs.get(namespace, name)
            if rj is not None:
                self.fetcher.events(namespace, str(meta(rj).get("uid") or ""))
                self.fetcher.logs(namespace, name)
        elif page == "service":
            rs = self.caches.rayservices.get(namespace, name)
            self.fetcher.serve(namespace, name, viewed=True)
            if rs is not None:
                self.fetcher.events(namespace, str(meta(rs).get("uid") or ""))

    def _ray_counts(self, namespace: str, name: str) -> Mapping[str, int] | None:
        f = self.fetcher.ray_counts(namespace, name)
        return f.value if f.value is not None and not f.error else None

    def cluster_row(self, rc: Obj) -> M.ClusterRow:
        ns, name = _key(rc)
        return M.cluster_row(
            rc, self.caches.cluster_pods(ns, name), self._ray_counts(ns, name), self.managers.get(ns, name)
        )

    # -- pages ---------------------------------------------------------------------------------------

    def overview(
        self, clusters: Sequence[Obj], jobs: Sequence[Obj], services: Sequence[Obj], hidden: int = 0
    ) -> R.Markup:
        crow = M.problems_first(self.cluster_row(rc) for rc in clusters)
        jrow = M.problems_first(M.job_row(rj) for rj in jobs)
        srow = M.problems_first(M.rayservice_row(rs) for rs in services)
        return R.overview_main(M.totals(crow, jrow, srow), crow, jrow, srow, self.banner(), hidden)

    def dashboard_link(self, namespace: str, name: str) -> str:
        svc = self.caches.head_service(namespace, name)
        if svc is None or not self.api_server:
            return ""
        return (
            f"{self.api_server}/api/v1/namespaces/{quote(namespace, safe='')}/services/"
            f"{quote(name_of(svc), safe='')}:dashboard/proxy/"
        )

    def cluster_page(self, rc: Obj, access: PageAccess) -> R.Markup:
        ns, name = _key(rc)
        row = self.cluster_row(rc)
        pods = self.caches.cluster_pods(ns, name)
        pod_rows = sorted(
            (M.pod_row(p) for p in pods), key=lambda p: (p.node_type != C.NODE_TYPE_HEAD, p.group, p.name)
        )
        svc_rows = sorted(
            (M.service_row(s) for s in self.caches.cluster_services(ns, name)), key=lambda s: s.name
        )
        uid = str(meta(rc).get("uid") or "")
        events = self.fetcher.events(ns, uid) if access.events else M.Fetched()
        return R.cluster_main(
            row,
            pods=pod_rows if access.pods else None,
            services=svc_rows if access.services else None,
            conditions=M.condition_rows(rc),
            events=events,
            events_allowed=access.events,
            plots=self.history.plot_data(ns, name, self.wall()),
            changes=self.history.changes(ns, name),
            dashboard=self.dashboard_link(ns, name) if access.proxy else "",
            ray_nodes=self.fetcher.ray_counts(ns, name, viewed=True),
            b=self.banner(),
        )

    def job_entries(self, rj: Obj, events: Sequence[M.EventRow]) -> list[M.TimelineEntry]:
        st = status_of(rj)
        raw = st.get("rayJobInfo")
        info: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
        out = [M.TimelineEntry(M.ts(str(meta(rj).get("creationTimestamp") or "")), "Created", "", "status")]
        for text, what in (
            (st.get("startTime"), "Deployment started"),
            (info.get("startTime"), "Ray job started"),
            (info.get("endTime"), "Ray job ended"),
            (st.get("endTime"), "Finished"),
        ):
            t = parse_timestamp(text)
            if t:
                out.append(M.TimelineEntry(t, what, "", "status"))
        out.extend(self.jobs_tl.get(_key(rj)))
        out.extend(
            M.TimelineEntry(e.t, e.reason, e.message, "warning" if e.type == "Warning" else "event")
            for e in events
        )
        return sorted((e for e in out if e.t), key=lambda e: e.t)

    def job_page(self, rj: Obj, access: PageAccess) -> R.Markup:
        ns, name = _key(rj)
        row = M.job_row(rj)
        events = self.fetcher.events(ns, str(meta(rj).get("uid") or "")) if access.events else M.Fetched()
        logs = self.fetcher.logs(ns, name) if access.proxy else M.Fetched()
        return R.job_main(
            row,
            entries=self.job_entries(rj, list(events.value or [])),
            logs=logs,
            logs_allowed=access.proxy,
            cluster_exists=bool(row.cluster) and self.caches.clusters.get(ns, row.cluster) is not None,
            b=self.banner(),
        )

    def service_entries(self, rs: Obj, events: Sequence[M.EventRow]) -> list[M.TimelineEntry]:
        out = [M.TimelineEntry(M.ts(str(meta(rs).get("creationTimestamp") or "")), "Created", "", "status")]
        for c in M.condition_rows(rs):
            if c.since:
                out.append(M.TimelineEntry(M.ts(c.since), f"{c.type} → {c.status}", c.reason, "status"))
        migrated = M.rayservice_row(rs).active.migrated
        if migrated:
            out.append(M.TimelineEntry(M.ts(migrated), "Traffic migrated", "", "status"))
        out.extend(self.services_tl.get(_key(rs)))
        out.extend(
            M.TimelineEntry(e.t, e.reason, e.message, "warning" if e.type == "Warning" else "event")
            for e in events
        )
        return sorted((e for e in out if e.t), key=lambda e: e.t)

    def service_page(self, rs: Obj, access: PageAccess) -> R.Markup:
        ns, name = _key(rs)
        row = M.rayservice_row(rs)
        events = self.fetcher.events(ns, str(meta(rs).get("uid") or "")) if access.events else M.Fetched()
        serve_svc = next(
            (M.service_row(s) for s in self.caches.services.list(ns) if name_of(s) == f"{name}-serve-svc"),
            None,
        )
        return R.service_main(
            row,
            entries=self.service_entries(rs, list(events.value or [])),
            conditions=M.condition_rows(rs),
            serve_service=serve_svc if access.services else None,
            active_exists=bool(row.active.cluster)
            and self.caches.clusters.get(ns, row.active.cluster) is not None,
            pending_exists=bool(row.pending.cluster)
            and self.caches.clusters.get(ns, row.pending.cluster) is not None,
            serve=M.ServePlot(
                self.fetcher.serve_history.plot_data(ns, name, self.wall()),
                self.fetcher.serve_history.changes(ns, name),
                self.fetcher.serve(ns, name, viewed=True),
            ),
            events=events,
            events_allowed=access.events,
            b=self.banner(),
        )
