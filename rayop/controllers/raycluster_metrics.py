"""KubeRay's `kuberay_cluster_*` Prometheus metrics
(`ray-operator/controllers/ray/metrics/ray_cluster_metrics.go`; docs/compatibility.md#metrics).

Computed at scrape time from the RayCluster cache, as KubeRay's metrics manager does: nothing to clean up
when a RayCluster is deleted, and the provisioned duration survives an operator restart because it is
derived from the object (creationTimestamp → RayClusterProvisioned's lastTransitionTime), not from memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rayop.api import constants as C
from rayop.base.times import parse_timestamp


class _Lister(Protocol):
    def list(self) -> list[dict[str, Any]]: ...


_ts = parse_timestamp


class RayClusterCollector(Collector):
    def __init__(self) -> None:
        self.sources: list[_Lister] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "kuberay_cluster_info",
            "Metadata information about RayCluster custom resources",
            labels=["name", "namespace", "uid", "owner_kind"],
        )
        provisioned = GaugeMetricFamily(
            "kuberay_cluster_condition_provisioned",
            "Indicates whether the RayCluster is provisioned",
            labels=["name", "namespace", "uid", "condition"],
        )
        duration = GaugeMetricFamily(
            "kuberay_cluster_provisioned_duration_seconds",
            "The time, in seconds, when a RayCluster's `RayClusterProvisioned` status transitions from false "
            "(or unset) to true",
            labels=["name", "namespace", "uid"],
        )
        for src in self.sources:
            for rc in src.list():
                md = rc.get("metadata") or {}
                name, ns, uid = str(md.get("name", "")), str(md.get("namespace", "")), str(md.get("uid", ""))
                owner = (md.get("labels") or {}).get(C.LABEL_ORIGINATED_FROM_CRD) or "None"
                info.add_metric([name, ns, uid, str(owner)], 1)
                cond = next(
                    (
                        c
                        for c in (rc.get("status") or {}).get("conditions") or []
                        if isinstance(c, dict) and c.get("type") == C.COND_PROVISIONED
                    ),
                    None,
                )
                is_true = bool(cond and cond.get("status") == "True")
                provisioned.add_metric([name, ns, uid, "true" if is_true else "false"], 1)
                if is_true and cond is not None:
                    start, end = _ts(md.get("creationTimestamp")), _ts(cond.get("lastTransitionTime"))
                    if start is not None and end is not None:
                        duration.add_metric([name, ns, uid], max(0.0, end - start))
        yield info
        yield provisioned
        yield duration


_collector: RayClusterCollector | None = None


def register(source: _Lister) -> RayClusterCollector:
    """Expose the metrics of the RayClusters in `source` (an informer) on the default registry."""
    global _collector
    if _collector is None:
        _collector = RayClusterCollector()
        REGISTRY.register(_collector)
    _collector.sources.append(source)
    return _collector


def unregister(source: _Lister) -> None:
    if _collector is not None and source in _collector.sources:
        _collector.sources.remove(source)
