"""The `kuberay_job_*` metrics: gauges read from the RayJob cache at scrape time, and each attempt's
duration recorded by the reconciler when it ends (`ray-operator/controllers/ray/metrics/ray_job_metrics.go`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rayop.base.objects import meta
from rayop.base.times import parse_time
from rayop.controllers import rayjob_machine as M
from rayop.runtime.protocols import Cache


class RayJobCollector(Collector):
    """kuberay_job_info and kuberay_job_deployment_status from the RayJob cache at scrape time, plus
    kuberay_job_execution_duration_seconds recorded at each attempt's end (docs/compatibility.md#metrics)."""

    def __init__(self) -> None:
        self.sources: list[Cache] = []
        # (namespace, name) -> (uid, deployment status, retry count, seconds)
        self.durations: dict[tuple[str, str], tuple[str, str, int, float]] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "kuberay_job_info",
            "Metadata information about RayJob custom resources",
            labels=["name", "namespace", "uid"],
        )
        status = GaugeMetricFamily(
            "kuberay_job_deployment_status",
            "The RayJob's current deployment status",
            labels=["name", "namespace", "uid", "deployment_status"],
        )
        duration = GaugeMetricFamily(
            "kuberay_job_execution_duration_seconds",
            "Duration of the RayJob CR's JobDeploymentStatus transition from `Initializing` to either the "
            "`Retrying` state or a terminal state, such as `Complete` or `Failed`.",
            labels=["name", "namespace", "uid", "job_deployment_status", "retry_count"],
        )
        live: set[tuple[str, str]] = set()
        for src in self.sources:
            for rj in src.list():
                md = meta(rj)
                name, ns, uid = str(md.get("name", "")), str(md.get("namespace", "")), str(md.get("uid", ""))
                live.add((ns, name))
                info.add_metric([name, ns, uid], 1)
                dep = str((rj.get("status") or {}).get("jobDeploymentStatus") or "New")
                status.add_metric([name, ns, uid, dep], 1)
        for (ns, name), (uid, dep, retries, secs) in list(self.durations.items()):
            if (ns, name) not in live and self.sources:
                continue
            duration.add_metric([name, ns, uid, dep, str(retries)], secs)
        yield info
        yield status
        yield duration

    def observe_transition(
        self, rj: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any]
    ) -> None:
        old_dep, new_dep = (
            str(old.get("jobDeploymentStatus") or ""),
            str(new.get("jobDeploymentStatus") or ""),
        )
        if old_dep in M.DEPLOYMENT_TERMINAL or not (
            new_dep in M.DEPLOYMENT_TERMINAL or new_dep == M.RETRYING
        ):
            return
        start = parse_time(new.get("startTime") or old.get("startTime"))
        if start is None:
            return
        md = meta(rj)
        secs = max(0.0, (datetime.now(UTC) - start).total_seconds())
        self.durations[(str(md.get("namespace")), str(md.get("name")))] = (
            str(md.get("uid", "")),
            new_dep,
            int(old.get("failed") or 0),
            secs,
        )

    def forget(self, namespace: str, name: str) -> None:
        self.durations.pop((namespace, name), None)


_collector: RayJobCollector | None = None


def register_metrics(source: Cache) -> RayJobCollector:
    global _collector
    if _collector is None:
        _collector = RayJobCollector()
        REGISTRY.register(_collector)
    _collector.sources.append(source)
    return _collector


def unregister_metrics(source: Cache) -> None:
    if _collector is not None and source in _collector.sources:
        _collector.sources.remove(source)
