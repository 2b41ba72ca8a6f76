"""The web view's scaling history and its reading of field managers (rayop/ui/history.py, fieldmanagers.py)."""

from __future__ import annotations

from typing import Any

import pytest

from rayop.runtime.cache import strip_managed_fields
from rayop.ui.fieldmanagers import (
    AUTOSCALER,
    HPA,
    OPERATOR,
    USER,
    FieldManager,
    ManagerTable,
    classify,
    replicas_managers,
)
from rayop.ui.history import (
    SOURCE_EVENTS,
    SOURCE_MANAGED_FIELDS,
    PodCountStep,
    ScalingHistory,
    step_from_event,
    worker_pod_group,
)

Obj = dict[str, Any]


def entry(manager: str, time: str, fields: Obj, *, op: str = "Update", sub: str | None = None) -> Obj:
    e: Obj = {"manager": manager, "operation": op, "time": time, "fieldsType": "FieldsV1", "fieldsV1": fields}
    if sub:
        e["subresource"] = sub
    return e


ATOMIC = {"f:spec": {"f:workerGroupSpecs": {}}}


def rc(*managed: Obj, groups: tuple[str, ...] = ("small", "big")) -> Obj:
    return {
        "metadata": {"name": "c", "namespace": "ns", "managedFields": list(managed)},
        "spec": {"workerGroupSpecs": [{"groupName": g, "replicas": 1} for g in groups]},
    }


@pytest.mark.parametrize(
    ("manager", "actor"),
    [
        ("python-requests", AUTOSCALER),  # Ray's autoscaler: Python requests, no fieldManager
        ("kube-controller-manager", HPA),
        ("rayop", OPERATOR),
        ("kubectl-edit", USER),
        ("kubectl-client-side-apply", USER),
        ("my-ci", USER),
    ],
)
def test_field_managers_are_classified(manager: str, actor: str) -> None:
    assert classify(manager) == actor


def test_the_latest_manager_of_an_atomic_list_owns_every_group() -> None:
    obj = rc(
        entry("kubectl-client-side-apply", "2026-01-01T00:00:00Z", ATOMIC),
        entry("python-requests", "2026-01-01T00:05:00Z", ATOMIC),
        # A status write is not a change of replicas, however late.
        entry("rayop", "2026-01-01T00:09:00Z", {"f:status": {}}, sub="status"),
    )
    got = replicas_managers(obj, ["small", "big"])
    assert {g: m.manager for g, m in got.items()} == {"small": "python-requests", "big": "python-requests"}
    assert got["small"].actor == AUTOSCALER


def test_a_keyed_list_is_read_per_group() -> None:
    keyed = {
        "f:spec": {
            "f:workerGroupSpecs": {
                'k:{"groupName":"small"}': {"f:replicas": {}},
                'k:{"groupName":"big"}': {"f:template": {}},
            }
        }
    }
    obj = rc(
        entry(
            "kubectl",
            "2026-01-01T00:00:00Z",
            {"f:spec": {"f:workerGroupSpecs": {'k:{"groupName":"big"}': {"f:replicas": {}}}}},
            op="Apply",
        ),
        entry("kube-controller-manager", "2026-01-01T00:01:00Z", keyed),
    )
    got = replicas_managers(obj, ["small", "big"])
    assert got["small"].manager == "kube-controller-manager"
    assert got["big"].manager == "kubectl"


def test_malformed_managed_fields_read_as_nothing() -> None:
    assert replicas_managers({"metadata": {"managedFields": "x"}}, ["a"]) == {}
    assert replicas_managers({"metadata": {"managedFields": [1, {"fieldsV1": []}]}}, ["a"]) == {}


def test_the_table_notes_managers_then_the_cache_still_strips_them() -> None:
    table = ManagerTable()
    transform = table.wrap(strip_managed_fields)
    out = transform(rc(entry("python-requests", "2026-01-01T00:05:00Z", ATOMIC)))
    assert "managedFields" not in out["metadata"]
    assert table.get("ns", "c")["small"].manager == "python-requests"
    # An event without managedFields (some API paths omit them) keeps what was known.
    transform({"metadata": {"name": "c", "namespace": "ns"}, "spec": {}})
    assert table.get("ns", "c")["small"].manager == "python-requests"
    table.forget("ns", "c")
    assert table.get("ns", "c") == {}


def test_a_broken_object_never_breaks_the_cache_transform() -> None:
    table = ManagerTable()
    transform = table.wrap(strip_managed_fields)
    weird: Obj = {
        "metadata": {
            "name": 3,
            "managedFields": [{"fieldsV1": {"f:spec": {"f:workerGroupSpecs": {}}}, "time": 5}],
        },
        "spec": {"workerGroupSpecs": "x"},
    }
    assert "managedFields" not in transform(weird)["metadata"]


# --- history -------------------------------------------------------------------------------------------


def test_desired_changes_are_kept_with_who_made_them() -> None:
    h = ScalingHistory()
    auto = FieldManager("python-requests", "Update", 99.0)
    assert h.desired("ns", "c", "small", 0, 100.0) is None  # first sight, nothing dates a change
    change = h.desired("ns", "c", "small", 2, 110.0, auto)
    assert change is not None and (change.before, change.after, change.by, change.actor) == (
        0,
        2,
        AUTOSCALER,
        AUTOSCALER,
    )
    assert h.desired("ns", "c", "small", 2, 120.0, auto) is None  # same value: no change, no point
    assert [p for p in h.groups("ns", "c")["small"].desired.points] == [(100.0, 0), (110.0, 2)]


def test_first_sight_dates_the_last_change_from_managed_fields() -> None:
    h = ScalingHistory(window=3600)
    h.desired("ns", "c", "small", 3, 1000.0, FieldManager("kubectl-edit", "Update", 900.0))
    (c,) = h.changes("ns", "c")
    assert (c.t, c.before, c.after, c.by, c.source) == (
        900.0,
        None,
        3,
        "user (kubectl-edit)",
        SOURCE_MANAGED_FIELDS,
    )
    # Too old for the window: not a change worth showing.
    h.desired("ns", "d", "small", 3, 10_000.0, FieldManager("kubectl-edit", "Update", 900.0))
    assert h.changes("ns", "d") == []


def test_the_window_bounds_memory() -> None:
    h = ScalingHistory(window=100.0)
    for i in range(50):
        h.desired("ns", "c", "g", i % 2, float(i * 10))
    pts = list(h.groups("ns", "c")["g"].desired.points)
    # The last point before the window stays, so the line starts at the window's edge.
    assert pts[0][0] <= 490.0 - 100.0 < pts[1][0]
    assert len(pts) == 11
    assert all(c.t >= 390.0 for c in h.changes("ns", "c"))


def test_the_point_limit_bounds_memory() -> None:
    h = ScalingHistory(window=1e9, max_points=10, max_changes=5)
    for i in range(50):
        h.desired("ns", "c", "g", i % 2, float(i))
    assert len(h.groups("ns", "c")["g"].desired.points) == 10
    assert [c.t for c in h.changes("ns", "c")] == [45.0, 46.0, 47.0, 48.0, 49.0]


def test_plot_data_aligns_the_series_as_steps() -> None:
    h = ScalingHistory()
    h.desired("ns", "c", "g", 1, 10.0)
    h.observe("ns", "c", "g", "ready", 0, 11.0)
    h.observe("ns", "c", "g", "ready", 1, 15.0)
    h.observe("ns", "c", "g", "ray", 1, 16.0)
    h.desired("ns", "c", "g", 3, 20.0, FieldManager("python-requests"))
    d = h.plot_data("ns", "c", now=30.0)["g"]
    assert d["x"] == [10.0, 11.0, 15.0, 16.0, 20.0, 30.0]
    assert d["desired"] == [1, 1, 1, 1, 3, 3]
    assert d["ready"] == [None, 0, 1, 1, 1, 1]
    assert d["ray"] == [None, None, None, 1, 1, 1]
    assert d["changes"] == [{"t": 20.0, "before": 1, "after": 3, "by": AUTOSCALER, "actor": AUTOSCALER}]


def test_groups_that_are_gone_are_forgotten() -> None:
    h = ScalingHistory()
    h.desired("ns", "c", "a", 1, 1.0)
    h.desired("ns", "c", "b", 1, 1.0)
    h.drop_groups("ns", "c", ["b"])
    assert list(h.groups("ns", "c")) == ["b"]
    h.forget("ns", "c")
    assert h.groups("ns", "c") == {}


# --- after a restart -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod", "expect"),
    [
        ("c-small-worker-x2x9z", "small"),
        ("c-small-gpu-worker-abcde", "small-gpu"),  # the longer group name wins
        ("other-small-worker-abcde", None),
        # KubeRay cuts `<cluster>-<group>` to 50 characters before `-worker-`.
        (("c-" + "g" * 60)[:50] + "-worker-abcde", "g" * 60),
    ],
)
def test_worker_pod_names_map_to_their_group(pod: str, expect: str | None) -> None:
    assert worker_pod_group(pod, "c", ["small", "small-gpu", "g" * 60]) == expect


def test_controller_events_become_pod_count_steps() -> None:
    groups = ["small"]
    assert step_from_event(
        "CreatedWorkerPod", "Created worker Pod in group small: ns/c-small-worker-a", 1.0, "c", groups
    ) == PodCountStep(1.0, "small", "add", 1)
    assert step_from_event(
        "CreatedWorkerPod", "Created 3 worker Pods in group small: ns/a, ns/b, ns/c", 2.0, "c", groups
    ) == PodCountStep(2.0, "small", "add", 3)
    assert step_from_event(
        "DeletedWorkerPod", "Deleted worker Pod ns/c-small-worker-abcde; idle", 3.0, "c", groups
    ) == PodCountStep(3.0, "small", "remove", 1)
    assert step_from_event(
        "DeletedWorkerPod",
        "Deleted Pods for RayCluster ns/c of suspended worker group small",
        4.0,
        "c",
        groups,
    ) == PodCountStep(4.0, "small", "zero")
    assert step_from_event("CreatedHeadPod", "Created head Pod ns/c-head-x", 5.0, "c", groups) is None


def test_rebuild_walks_back_from_the_pods_there_are_now() -> None:
    h = ScalingHistory(window=3600)
    steps = [
        PodCountStep(100.0, "small", "add", 2),
        PodCountStep(200.0, "small", "add", 1),
        PodCountStep(300.0, "small", "remove"),
    ]
    # Live observation after the restart, then the rebuild from events.
    h.desired("ns", "c", "small", 2, 1000.0)
    n = h.rebuild("ns", "c", steps, {"small": 2}, now=1000.0)
    assert n == 3
    assert list(h.groups("ns", "c")["small"].desired.points) == [
        (99.0, 0),
        (100.0, 2),
        (200.0, 3),
        (300.0, 2),
        (1000.0, 2),
    ]
    changes = h.changes("ns", "c")
    assert [(c.t, c.before, c.after, c.source) for c in changes] == [
        (100.0, 0, 2, SOURCE_EVENTS),
        (200.0, 2, 3, SOURCE_EVENTS),
        (300.0, 3, 2, SOURCE_EVENTS),
    ]


def test_rebuild_stops_where_an_event_cannot_be_anchored() -> None:
    h = ScalingHistory(window=3600)
    steps = [
        PodCountStep(100.0, "g", "add", 1),
        PodCountStep(200.0, "g", "zero"),
        PodCountStep(300.0, "g", "add", 2),
    ]
    h.rebuild("ns", "c", steps, {"g": 2}, now=1000.0)
    pts = list(h.groups("ns", "c")["g"].desired.points)
    assert pts[-1] == (300.0, 2)
    assert all(t >= 199.0 for t, _ in pts)  # nothing before the suspension: its count is unknown


def test_rebuild_merges_the_last_change_that_managed_fields_dated() -> None:
    h = ScalingHistory(window=3600)
    # After a restart: managedFields say kubectl set 2 at t=300 (to the second); the events say how.
    h.desired("ns", "c", "g", 2, 1000.0, FieldManager("kubectl-patch", "Update", 300.0))
    steps = [PodCountStep(100.4, "g", "add", 3), PodCountStep(300.6, "g", "remove")]
    h.rebuild("ns", "c", steps, {"g": 2}, now=1000.0)
    assert [(c.t, c.before, c.after, c.by, c.source) for c in h.changes("ns", "c")] == [
        (100.4, 0, 3, "unknown", SOURCE_EVENTS),
        (300.6, 3, 2, "user (kubectl-patch)", SOURCE_EVENTS),
    ]
