"""What the web view's pages show, as pure functions of objects (rayop/ui/model.py) and as HTML (render.py)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from rayop.ui import model as M
from rayop.ui import render as R
from rayop.ui.fetch import ray_worker_counts, tail
from rayop.ui.fieldmanagers import FieldManager

Obj = dict[str, Any]


def group(name: str = "small", replicas: int | None = 2, **kw: Any) -> Obj:
    g: Obj = {
        "groupName": name,
        "minReplicas": 0,
        "maxReplicas": 5,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "w",
                        "resources": {"requests": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"}},
                    }
                ]
            }
        },
        **kw,
    }
    if replicas is not None:
        g["replicas"] = replicas
    return g


READY_STATUS: Obj = {"state": "ready", "desiredCPU": "2500m", "desiredMemory": "5Gi", "desiredGPU": "2"}


def cluster(*groups: Obj, status: Obj | None = None, **spec: Any) -> Obj:
    return {
        "metadata": {
            "name": "c",
            "namespace": "ns",
            "uid": "u1",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"rayVersion": "2.60.0", "workerGroupSpecs": list(groups), **spec},
        "status": READY_STATUS if status is None else status,
    }


def pod(
    name: str, node_type: str = "worker", group_name: str = "small", *, ready: bool = True, **status: Any
) -> Obj:
    st: Obj = {"phase": "Running", "podIP": f"10.0.0.{len(name)}"}
    st["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    st.update(status)
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {"ray.io/cluster": "c", "ray.io/node-type": node_type, "ray.io/group": group_name},
        },
        "spec": {"nodeName": "n1"},
        "status": st,
    }


HEAD = pod("c-head-x", "head", "headgroup")


def test_a_healthy_cluster_has_no_problems() -> None:
    row = M.cluster_row(cluster(group()), [HEAD, pod("w1"), pod("w2")], {"small": 2})
    assert (row.state, row.desired, row.ready, row.ray, row.severity) == ("ready", 2, 2, 2, 0)
    (g,) = row.groups
    # 2 Pods of 500m CPU, 1Gi and one GPU each.
    assert g.resources == M.Resources("1", "2", "2Gi")
    assert (row.resources.cpu, row.resources.memory, row.resources.gpu) == ("2500m", "5Gi", "2")


def test_cluster_problems_are_named_and_ranked() -> None:
    failed = cluster(group(), status={"state": "failed", "reason": "head Pod could not be created"})
    row = M.cluster_row(failed, [pod("w1"), pod("w2", ready=False)])
    texts = [p.text for p in row.all_problems]
    assert row.severity == M.ERROR
    assert texts[0] == "failed: head Pod could not be created"
    assert "no head Pod" in texts
    assert "group small: 1 of 2 workers ready" in texts
    crash = pod(
        "w3",
        containerStatuses=[{"restartCount": 7, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
    )
    row = M.cluster_row(cluster(group(replicas=1)), [HEAD, crash])
    assert [p.text for p in row.problems] == ["Pod w3: CrashLoopBackOff (7 restarts)"]
    assert row.severity == M.WARNING


def test_a_suspended_cluster_wants_no_workers_and_is_not_a_problem() -> None:
    row = M.cluster_row(cluster(group(), suspend=True, status={}), [])
    assert (row.state, row.desired, row.severity) == ("suspended", 0, 0)


def test_desired_is_clamped_and_multiplied_by_hosts() -> None:
    row = M.cluster_row(cluster(group(replicas=9, numOfHosts=2)), [HEAD])
    assert row.groups[0].desired == 10  # clamp(9, 0, 5) x 2


def test_malformed_objects_render_without_raising() -> None:
    weird: Obj = {
        "metadata": {"name": "x"},
        "spec": {"workerGroupSpecs": ["nope", {"groupName": "g", "replicas": "2"}]},
        "status": "bad",
    }
    row = M.cluster_row(weird, [{"metadata": {}}])
    assert row.name == "x" and [g.name for g in row.groups] == ["g"]
    M.job_row({"spec": "x", "status": {"failed": "y"}})
    M.rayservice_row(
        {"status": {"activeServiceStatus": {"applicationStatuses": {"a": "b"}}, "conditions": [1]}}
    )
    R.overview_main(M.totals([row], [], []), [row], [], [], R.Banner())


def test_who_last_set_replicas_is_shown_per_group() -> None:
    row = M.cluster_row(cluster(group()), [HEAD], managers={"small": FieldManager("python-requests")})
    assert row.groups[0].last_set_by == "Ray autoscaler"


def test_job_rows() -> None:
    rj: Obj = {
        "metadata": {"name": "j", "namespace": "ns"},
        "spec": {"entrypoint": "python x.py", "backoffLimit": 2},
        "status": {
            "jobDeploymentStatus": "Failed",
            "jobStatus": "FAILED",
            "reason": "AppFailed",
            "jobId": "j-abc",
            "failed": 3,
        },
    }
    row = M.job_row(rj)
    assert (row.submission_id, row.failed, row.severity, row.terminal) == ("j-abc", 3, M.ERROR, True)
    assert row.problems[0].text == "Failed: AppFailed"
    ok = M.job_row(
        {"metadata": {"name": "k"}, "status": {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}}
    )
    assert ok.severity == 0 and ok.terminal


def test_rayservice_rows_read_kuberays_status() -> None:
    rs: Obj = {
        "metadata": {"name": "s", "namespace": "ns"},
        "spec": {"upgradeStrategy": {"type": "NewCluster"}},
        "status": {
            "numServeEndpoints": 2,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "NonZeroServeEndpoints"},
                {"type": "UpgradeInProgress", "status": "True", "reason": "BothActivePendingClustersExist"},
            ],
            "activeServiceStatus": {
                "rayClusterName": "s-abcde",
                "applicationStatuses": {
                    "fruit": {
                        "status": "RUNNING",
                        "serveDeploymentStatuses": {
                            "MangoStand": {"status": "HEALTHY"},
                            "Router": {"status": "UNHEALTHY", "message": "x"},
                        },
                    }
                },
            },
            "pendingServiceStatus": {
                "rayClusterName": "s-fghij",
                "applicationStatuses": {"fruit": {"status": "DEPLOY_FAILED", "message": "bad import"}},
            },
        },
    }
    row = M.rayservice_row(rs)
    assert (row.status, row.upgrading, row.endpoints, row.active.cluster, row.pending.cluster) == (
        "Ready",
        True,
        2,
        "s-abcde",
        "s-fghij",
    )
    assert [d.name for d in row.active.apps[0].deployments] == ["MangoStand", "Router"]
    assert row.severity == M.ERROR
    assert "pending app fruit: DEPLOY_FAILED bad import" in [p.text for p in row.problems]


def test_problems_first_then_by_name() -> None:
    rows = [
        M.cluster_row({**cluster(group()), "metadata": {"name": n, "namespace": "ns"}}, pods)
        for n, pods in (("b", [HEAD, pod("w1"), pod("w2")]), ("a", [HEAD, pod("w1"), pod("w2")]), ("z", []))
    ]
    assert [r.name for r in M.problems_first(rows)] == ["z", "a", "b"]


def test_event_rows_take_the_latest_time_and_the_series_count() -> None:
    e = M.event_row(
        {
            "type": "Warning",
            "reason": "X",
            "message": "m",
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "series": {"count": 4, "lastObservedTime": "2026-01-01T00:01:00.000000Z"},
        }
    )
    assert (e.count, e.t, e.type) == (4, 1767225660.0, "Warning")


def test_ray_worker_counts_by_label_else_by_pod_ip() -> None:
    nodes = [
        {"is_head_node": True, "labels": {"ray.io/node-group": "headgroup"}},
        {"node_ip": "1.1.1.1", "labels": {"ray.io/node-group": "small"}},
        {"node_ip": "1.1.1.2", "labels": {}},
        {"node_ip": "9.9.9.9", "labels": {}},
    ]
    pods = [
        {
            "metadata": {"labels": {"ray.io/node-type": "worker", "ray.io/group": "big"}},
            "status": {"podIP": "1.1.1.2"},
        }
    ]
    assert ray_worker_counts(nodes, pods) == {"small": 1, "big": 1}


def test_log_tail_keeps_whole_last_lines() -> None:
    text = "\n".join(f"line {i}" for i in range(1000))
    out = tail(text, 100, 500)
    assert out.endswith("line 999") and len(out) <= 100 and out.startswith("line ")
    assert tail(text, 10**6, 3) == "line 997\nline 998\nline 999"


# --- HTML ----------------------------------------------------------------------------------------------


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def parse(html: str) -> _Collect:
    p = _Collect()
    p.feed(html)
    return p


EVIL = '<img src=x onerror="alert(1)"></script><script>alert(2)</script>'


def test_names_and_messages_from_the_cluster_never_become_markup() -> None:
    rc = cluster(group(name="g"), status={"state": "failed", "reason": EVIL})
    rc["metadata"]["name"] = EVIL
    row = M.cluster_row(rc, [])
    html = R.overview_main(M.totals([row], [], []), [row], [], [], R.Banner("error", EVIL))
    tags = parse(html).tags
    assert not [t for t, a in tags if t in ("img", "script")]
    assert "&lt;img" in html


def test_json_islands_cannot_be_closed_by_their_data() -> None:
    island = R.json_island("d", {"x": "</script><script>alert(1)</script>"})
    p = parse(island)
    assert [t for t, _ in p.tags] == ["script"]
    assert json.loads("".join(p.scripts)) == {"x": "</script><script>alert(1)</script>"}


def test_pages_use_labelled_tables_and_regions() -> None:
    row = M.cluster_row(cluster(group()), [HEAD, pod("w1"), pod("w2")])
    html = R.page(
        "Overview",
        R.overview_main(M.totals([row], [], []), [row], [], [], R.Banner()),
        R.Assets("a", "b", "c", "d"),
    )
    tags = parse(html).tags
    ids = {a.get("id") for _, a in tags if a.get("id")}
    # Every aria-labelledby points at an element that exists.
    for _, a in tags:
        ref = a.get("aria-labelledby")
        assert ref is None or ref in ids, ref
    assert ("html", {"lang": "en"}) in tags
    assert all(a.get("scope") in ("col", "row") for t, a in tags if t == "th")
    assert any(t == "a" and a.get("href") == "/clusters/ns/c" for t, a in tags)
    # Scrollable regions can be reached by keyboard.
    assert all(a.get("tabindex") == "0" for t, a in tags if t == "div" and a.get("class") == "scroll")
    assert not re.search(r"\sstyle=", html), "no inline styles (the CSP forbids them)"


@pytest.mark.parametrize(
    ("pods", "replicas", "state"),
    [
        (["w1", "w2"], 2, "ready"),
        (["w1"], 2, "scaling up"),
        (["w1", "w2", "w3"], 2, "scaling down"),
    ],
)
def test_group_states(pods: list[str], replicas: int, state: str) -> None:
    row = M.cluster_row(cluster(group(replicas=replicas)), [HEAD, *(pod(n) for n in pods)])
    assert row.groups[0].state == state


def test_a_group_whose_pods_are_not_ready_yet_is_starting() -> None:
    row = M.cluster_row(cluster(group(replicas=1)), [HEAD, pod("w1", ready=False)])
    assert row.groups[0].state == "starting"
