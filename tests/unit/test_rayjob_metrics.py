"""kuberay_job_* metrics: computed from the RayJob cache, execution duration recorded per attempt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rayop.controllers.rayjob_metrics import RayJobCollector


class Source:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def list(self) -> list[dict[str, Any]]:
        return self.items


def rj(name: str, dep: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "status": {"jobDeploymentStatus": dep} if dep else {},
    }


def samples(c: RayJobCollector) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in c.collect():
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def test_info_and_deployment_status_follow_the_cache() -> None:
    c = RayJobCollector()
    src = Source([rj("a", "Running"), rj("b", "")])
    c.sources.append(src)
    got = samples(c)
    assert ({"name": "a", "namespace": "ns", "uid": "uid-a"}, 1) in got["kuberay_job_info"]
    deps = {s[0]["name"]: s[0]["deployment_status"] for s in got["kuberay_job_deployment_status"]}
    assert deps == {"a": "Running", "b": "New"}
    src.items = [rj("b", "Initializing")]
    got = samples(c)
    assert [s[0]["name"] for s in got["kuberay_job_info"]] == ["b"]


def test_execution_duration_recorded_on_terminal_or_retrying() -> None:
    c = RayJobCollector()
    src = Source([rj("a", "Failed")])
    c.sources.append(src)
    start = (datetime.now(UTC) - timedelta(seconds=42)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = {"jobDeploymentStatus": "Running", "startTime": start, "failed": 1}
    c.observe_transition(rj("a", "Running"), old, {**old, "jobDeploymentStatus": "Retrying"})
    ((labels, value),) = samples(c)["kuberay_job_execution_duration_seconds"]
    assert labels == {
        "name": "a",
        "namespace": "ns",
        "uid": "uid-a",
        "job_deployment_status": "Retrying",
        "retry_count": "1",
    }
    assert 41 <= value <= 60
    # not recorded for non-terminal transitions, nor again from a terminal state
    c.durations.clear()
    c.observe_transition(
        rj("a", "x"),
        {"jobDeploymentStatus": "Initializing", "startTime": start},
        {"jobDeploymentStatus": "Running", "startTime": start},
    )
    c.observe_transition(
        rj("a", "x"),
        {"jobDeploymentStatus": "Complete", "startTime": start},
        {"jobDeploymentStatus": "Failed", "startTime": start},
    )
    assert c.durations == {}
    # a deleted RayJob's series disappears
    c.observe_transition(
        rj("a", "x"),
        {"jobDeploymentStatus": "Running", "startTime": start},
        {"jobDeploymentStatus": "Complete", "startTime": start},
    )
    src.items = []
    assert samples(c).get("kuberay_job_execution_duration_seconds", []) == []
