"""The `kuberay_service_*` metrics, read from the RayService cache at scrape time
(`ray-operator/controllers/ray/metrics/ray_service_metrics.go`)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rayop.api import constants as C
from rayop.base.objects import condition_true, meta
from rayop.runtime.protocols import Cache


class RayServiceCollector(Collector):
    """kuberay_service_info, kuberay_service_condition_ready and kuberay_service_condition_upgrade_in_progress:
    one sample (value 1) per RayService, the condition label "true" or "false"."""

    def __init__(self) -> None:
        self.sources: list[Cache] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["name", "namespace", "uid"]
        info = GaugeMetricFamily(
            "kuberay_service_info", "Metadata information about RayService custom resources", labels=labels
        )
        ready = GaugeMetricFamily(
            "kuberay_service_condition_ready",
            "Describes whether the RayService is ready. Ready means users can send requests to the underlying "
            "cluster and the number of serve endpoints is greater than 0.",
            labels=[*labels, "condition"],
        )
        upgrading = GaugeMetricFamily(
            "kuberay_service_condition_upgrade_in_progress",
            "Describes whether the RayService is performing a zero-downtime upgrade.",
            labels=[*labels, "condition"],
        )
        for src in self.sources:
            for rs in src.list():
                md = meta(rs)
                key = [str(md.get("name", "")), str(md.get("namespace", "")), str(md.get("uid", ""))]
                info.add_metric(key, 1)
                ready.add_metric([*key, _word(condition_true(rs, C.COND_RS_READY))], 1)
                upgrading.add_metric([*key, _word(condition_true(rs, C.COND_RS_UPGRADE_IN_PROGRESS))], 1)
        yield info
        yield ready
        yield upgrading


def _word(value: bool) -> str:
    return "true" if value else "false"


_collector: RayServiceCollector | None = None


def register(source: Cache) -> RayServiceCollector:
    global _collector
    if _collector is None:
        _collector = RayServiceCollector()
        REGISTRY.register(_collector)
    _collector.sources.append(source)
    return _collector


def unregister(source: Cache) -> None:
    if _collector is not None and source in _collector.sources:
        _collector.sources.remove(source)
