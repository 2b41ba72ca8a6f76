"""kuberay_cluster_* metrics are computed from the cached RayClusters at scrape time."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from rayop.api import constants as C
from rayop.controllers.raycluster_metrics import RayClusterCollector


class Source:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def list(self) -> list[dict[str, Any]]:
        return self.items


def rc(name: str, provisioned_at: str | None, owner: str | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {
        "name": name,
        "namespace": "ns",
        "uid": f"u-{name}",
        "creationTimestamp": "2026-01-01T00:00:00Z",
    }
    if owner:
        md["labels"] = {C.LABEL_ORIGINATED_FROM_CRD: owner}
    conds = []
    if provisioned_at:
        conds.append({"type": C.COND_PROVISIONED, "status": "True", "lastTransitionTime": provisioned_at})
    return {"metadata": md, "status": {"conditions": conds}}


def test_metrics_names_labels_and_duration() -> None:
    col = RayClusterCollector()
    col.sources.append(Source([rc("a", "2026-01-01T00:01:30Z"), rc("b", None, owner="RayJob")]))
    reg = CollectorRegistry()
    reg.register(col)
    text = generate_latest(reg).decode()
    assert 'kuberay_cluster_info{name="a",namespace="ns",owner_kind="None",uid="u-a"} 1.0' in text
    assert 'kuberay_cluster_info{name="b",namespace="ns",owner_kind="RayJob",uid="u-b"} 1.0' in text
    assert (
        'kuberay_cluster_condition_provisioned{condition="true",name="a",namespace="ns",uid="u-a"} 1.0'
        in text
    )
    assert (
        'kuberay_cluster_condition_provisioned{condition="false",name="b",namespace="ns",uid="u-b"} 1.0'
        in text
    )
    assert 'kuberay_cluster_provisioned_duration_seconds{name="a",namespace="ns",uid="u-a"} 90.0' in text
    assert 'kuberay_cluster_provisioned_duration_seconds{name="b"' not in text
