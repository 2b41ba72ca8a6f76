"""The RayService state machine, decision by decision, with a fake world (no processes, no HTTP).

Cases follow the reconcile's steps: hash rules, in place vs a new cluster, Serve config, the head's serve
label, promotion and the Services, deletion deadlines and drain, the initializing timeout, suspend,
validation and deletion.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rayop.builders import rayservice as B
from rayop.controllers import rayservice_machine as M

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
FIN = "ray.io/rayservice-finalizer"
SERVE_V1 = """\
applications:
  - name: hello
    route_prefix: /
    import_path: hello:build
"""
SERVE_V2 = SERVE_V1 + "    args:\n      greeting: hi\n"


def ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def cluster_config(image: str = "rayproject/ray:2.60.0", groups: int = 1) -> dict[str, Any]:
    return {
        "rayVersion": "2.60.0",
        "headGroupSpec": {
            "rayStartParams": {},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "ray-head",
                            "image": image,
                            "ports": [
                                {"name": "gcs-server", "containerPort": 6379},
                                {"name": "dashboard", "containerPort": 8265},
                                {"name": "serve", "containerPort": 8000},
                            ],
                        }
                    ]
                }
            },
        },
        "workerGroupSpecs": [
            {
                "groupName": f"g{i}",
                "replicas": 1,
                "minReplicas": 1,
                "maxReplicas": 3,
                "rayStartParams": {},
                "template": {"spec": {"containers": [{"name": "ray-worker", "image": image}]}},
            }
            for i in range(groups)
        ],
    }


def rayservice(
    status: dict[str, Any] | None = None,
    *,
    finalizers: bool = True,
    annotations: dict[str, str] | None = None,
    generation: int = 1,
    **spec: Any,
) -> dict[str, Any]:
    s: dict[str, Any] = {"serveConfigV2": SERVE_V1, "rayClusterConfig": cluster_config()}
    s.update(spec)
    md: dict[str, Any] = {"name": "rs", "namespace": "ns", "uid": "u1", "generation": generation}
    if finalizers:
        md["finalizers"] = [FIN]
    if annotations:
        md["annotations"] = annotations
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": md,
        "spec": s,
        "status": status or {},
    }


def cluster(
    rs: dict[str, Any],
    name: str,
    *,
    head_ready: bool = True,
    applied: str | None = None,
    annotations: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """The RayCluster the RayService `rs` (its spec at that time) would have made, as the cache holds it."""
    c = B.build_cluster(rs, name)
    c["metadata"]["resourceVersion"] = "7"
    ann = c["metadata"]["annotations"]
    if applied is not None:
        ann["rayop.io/serve-config-hash"] = B.serve_config_hash(applied)
    for k, v in (annotations or {}).items():
        if v is None:
            ann.pop(k, None)
        else:
            ann[k] = v
    c["status"] = {
        "state": "ready",
        "conditions": [{"type": "HeadPodReady", "status": "True" if head_ready else "False"}],
    }
    return c


def head_pod(cluster_name: str, *, ready: bool = True, serve: str = "false") -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{cluster_name}-head",
            "namespace": "ns",
            "labels": {"ray.io/cluster": cluster_name, "ray.io/node-type": "head", "ray.io/serve": serve},
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.1",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def apps(*states: str, message: str = "") -> dict[str, Any]:
    names = ["hello", "other", "third"]
    return {
        names[i]: {
            "status": s,
            "message": message,
            "deployments": {"D": {"status": "HEALTHY", "message": ""}},
        }
        for i, s in enumerate(states)
    }


def obs(
    c: dict[str, Any],
    *,
    serve: dict[str, Any] | str | None = "running",
    head_proxy: bool | None = True,
    serving: int = 1,
    ongoing: int | None = None,
    head_label: str = "true",
    head: bool = True,
) -> M.ClusterObs:
    lookup: M.ServeLookup | None
    if serve == "running":
        lookup = M.ServeLookup(apps=apps("RUNNING"))
    elif isinstance(serve, str):
        lookup = M.ServeLookup(error=serve)
    elif serve is None:
        lookup = None
    else:
        lookup = M.ServeLookup(apps=serve)
    name = c["metadata"]["name"]
    return M.ClusterObs(
        cluster=c,
        head_pod=head_pod(name, serve=head_label) if head else None,
        head_proxy=head_proxy,
        serve=lookup,
        serving_pods=serving,
        ongoing_requests=ongoing,
    )


def svc(kind: str, target: str) -> dict[str, Any]:
    name = "rs-head-svc" if kind == "head" else "rs-serve-svc"
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"selector": {"ray.io/cluster": target}, "clusterIP": "10.96.0.7", "ports": []},
    }


def world(*observed: M.ClusterObs, now: datetime = T0, services: str = "", endpoints: int = 0) -> M.World:
    return M.World(
        now=now,
        clusters={o.cluster["metadata"]["name"]: o for o in observed},
        head_service=svc("head", services) if services else None,
        serve_service=svc("serve", services) if services else None,
        serve_endpoints=endpoints,
        suffix="zzzzz",
    )


def status(
    active: str = "", pending: str = "", *, ready: str = "True", upgrading: bool = False
) -> dict[str, Any]:
    conds = [
        {
            "type": "Ready",
            "status": ready,
            "reason": "NonZeroServeEndpoints" if ready == "True" else "Initializing",
            "message": "",
            "lastTransitionTime": ts(T0 - timedelta(minutes=5)),
        },
        {
            "type": "UpgradeInProgress",
            "status": "True" if upgrading else "False",
            "reason": "BothActivePendingClustersExist" if upgrading else "NoPendingCluster",
            "message": "",
            "lastTransitionTime": ts(T0 - timedelta(minutes=5)),
        },
    ]
    st: dict[str, Any] = {"conditions": conds, "observedGeneration": 1}
    if active:
        st["activeServiceStatus"] = {"rayClusterName": active}
    if pending:
        st["pendingServiceStatus"] = {"rayClusterName": pending}
    return st


def kinds(d: M.Decision) -> list[str]:
    return [type(a).__name__ for a in d.actions]


def of(d: M.Decision, kind: type) -> list[Any]:
    return [a for a in d.actions if isinstance(a, kind)]


def cond(d: M.Decision, ctype: str) -> dict[str, Any]:
    return next(c for c in d.status["conditions"] if c["type"] == ctype)


def names(d: M.Decision) -> tuple[str, str]:
    return (
        (d.status.get("activeServiceStatus") or {}).get("rayClusterName", ""),
        (d.status.get("pendingServiceStatus") or {}).get("rayClusterName", ""),
    )


# The hash --------------------------------------------------------------------------------------------------


def _edit(path: str, value: Any) -> dict[str, Any]:
    spec = cluster_config()
    target: Any = spec
    keys = path.split(".")
    for k in keys[:-1]:
        target = target[int(k)] if k.isdigit() else target.setdefault(k, {})
    target[keys[-1]] = value
    return spec


@pytest.mark.parametrize(
    ("path", "value", "same"),
    [
        ("workerGroupSpecs.0.replicas", 3, True),
        ("workerGroupSpecs.0.minReplicas", 0, True),
        ("workerGroupSpecs.0.maxReplicas", 9, True),
        ("workerGroupSpecs.0.scaleStrategy", {"workersToDelete": ["p1"]}, True),
        ("workerGroupSpecs.0.template.spec.tolerations", [{"key": "k", "operator": "Exists"}], True),
        ("headGroupSpec.template.spec.schedulingGates", [{"name": "kueue"}], True),
        ("upgradeStrategy", {"type": "Recreate"}, True),
        ("suspend", True, True),
        ("rayVersion", "2.61.0", False),
        ("headGroupSpec.rayStartParams", {"num-cpus": "0"}, False),
        ("workerGroupSpecs.0.groupName", "renamed", False),
        ("workerGroupSpecs.0.template.spec.containers", [{"name": "w", "image": "other"}], False),
        ("enableInTreeAutoscaling", True, False),
    ],
)
def test_hash_ignores_only_what_needs_no_new_cluster(path: str, value: Any, same: bool) -> None:
    base = B.cluster_spec_hash(cluster_config())
    assert (B.cluster_spec_hash(_edit(path, value)) == base) is same
    assert len(base) == 32


def test_hash_is_stable_across_key_order() -> None:
    spec = cluster_config()
    reordered = dict(reversed(list(spec.items())))
    assert B.cluster_spec_hash(reordered) == B.cluster_spec_hash(spec)


# Creating the first cluster -----------------------------------------------------------------------------


def test_first_pass_adds_finalizer_and_names_the_pending_cluster_before_creating_it() -> None:
    d = M.decide(rayservice(finalizers=False), world())
    assert kinds(d) == ["AddFinalizer"]
    assert names(d) == ("", "rs-zzzzz")
    assert cond(d, "Ready")["reason"] == "Initializing"
    assert cond(d, "UpgradeInProgress")["reason"] == "Initializing"
    assert cond(d, "Ready")["observedGeneration"] == 1
    assert d.status["observedGeneration"] == 1
    assert d.status["serviceStatus"] == ""
    assert d.status["lastUpdateTime"] == ts(T0)
    assert d.status_changed and d.requeue_after == 2.0


def test_second_pass_creates_the_named_cluster_with_labels_annotations_and_owner() -> None:
    rs = rayservice(status=status(pending="rs-aaaaa", ready="False"), annotations={"team": "x"})
    rs["metadata"]["labels"] = {"app": "hello"}
    d = M.decide(rs, world())
    (create,) = of(d, M.CreateCluster)
    md = create.cluster["metadata"]
    assert md["name"] == "rs-aaaaa"
    assert md["labels"] == {
        "app": "hello",
        "ray.io/originated-from-cr-name": "rs",
        "ray.io/originated-from-crd": "RayService",
    }
    assert md["annotations"]["team"] == "x"
    assert md["annotations"]["ray.io/hash-without-replicas-and-workers-to-delete"] == B.goal_hash(rs)
    assert md["annotations"]["ray.io/num-worker-groups"] == "1"
    assert md["annotations"]["ray.io/kuberay-version"] == "v1.7.0"
    assert md["ownerReferences"][0]["kind"] == "RayService"
    assert create.cluster["spec"] == rs["spec"]["rayClusterConfig"]
    assert names(d) == ("", "rs-aaaaa")


# In place or a new cluster ------------------------------------------------------------------------------


def _settled(**spec: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A RayService serving from rs-aaaaa, whose spec is then replaced by `spec` (if any)."""
    old = rayservice(status=status(active="rs-aaaaa"))
    c = cluster(old, "rs-aaaaa", applied=SERVE_V1)
    new = copy.deepcopy(old)
    new["spec"].update(spec)
    return new, c


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({}, "nothing"),
        (
            {
                "rayClusterConfig": {
                    **cluster_config(),
                    "workerGroupSpecs": [{**cluster_config()["workerGroupSpecs"][0], "replicas": 3}],
                }
            },
            "nothing",
        ),
        ({"rayClusterConfig": cluster_config(groups=2)}, "in place"),
        ({"rayClusterConfig": {**cluster_config(), "rayVersion": "2.61.0"}}, "new cluster"),
        ({"rayClusterConfig": cluster_config(image="rayproject/ray:2.61.0")}, "new cluster"),
        ({"rayClusterConfig": cluster_config(image="x"), "upgradeStrategy": {"type": "None"}}, "nothing"),
        (
            {"rayClusterConfig": cluster_config(image="x"), "upgradeStrategy": {"type": "NewCluster"}},
            "new cluster",
        ),
        (
            {
                "rayClusterConfig": cluster_config(image="x"),
                "upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade"},
            },
            "validation",  # incremental needs autoscaling and options
        ),
        ({"serveConfigV2": SERVE_V2}, "config"),
    ],
)
def test_what_a_spec_change_triggers(change: dict[str, Any], expect: str) -> None:
    rs, c = _settled(**change)
    d = M.decide(rs, world(obs(c), services="rs-aaaaa", endpoints=1))
    got = "nothing"
    if of(d, M.UpdateCluster):
        got = "in place"
    elif names(d)[1]:
        got = "new cluster"
    elif of(d, M.ApplyServeConfig):
        got = "config"
    elif cond(d, "Ready")["reason"] == "ValidationFailed":
        got = "validation"
    assert got == expect, kinds(d)


def test_zero_downtime_env_off_and_unset_type_updates_nothing_but_config() -> None:
    rs, c = _settled(rayClusterConfig=cluster_config(image="x"), serveConfigV2=SERVE_V2)
    d = M.decide(rs, world(obs(c), services="rs-aaaaa", endpoints=1), M.RayServiceConfig(zero_downtime=False))
    assert names(d) == ("rs-aaaaa", "")
    assert not of(d, M.UpdateCluster)
    (put,) = of(d, M.ApplyServeConfig)
    assert put.cluster == "rs-aaaaa"


def test_appended_worker_group_updates_in_place_keeping_suspend_and_autoscaler_replicas() -> None:
    rs, c = _settled(rayClusterConfig={**cluster_config(groups=2), "enableInTreeAutoscaling": True})
    # The live cluster: autoscaling on (as the RayService had it), the autoscaler scaled g0 to 3.
    c = cluster(
        rayservice(rayClusterConfig={**cluster_config(), "enableInTreeAutoscaling": True}), "rs-aaaaa"
    )
    c["spec"]["workerGroupSpecs"][0]["replicas"] = 3
    c["spec"]["suspend"] = False
    c["metadata"]["annotations"]["rayop.io/serve-config-hash"] = "H"
    d = M.decide(rs, world(obs(c), services="rs-aaaaa", endpoints=1))
    (up,) = of(d, M.UpdateCluster)
    assert up.role == "active"
    spec = up.cluster["spec"]
    assert [g["groupName"] for g in spec["workerGroupSpecs"]] == ["g0", "g1"]
    assert spec["workerGroupSpecs"][0]["replicas"] == 3
    assert spec["workerGroupSpecs"][1]["replicas"] == 1
    assert spec["suspend"] is False
    ann = up.cluster["metadata"]["annotations"]
    assert ann["ray.io/num-worker-groups"] == "2"
    assert ann["rayop.io/serve-config-hash"] == "H"
    assert up.cluster["metadata"]["resourceVersion"] == "7"
    assert names(d) == ("rs-aaaaa", "")


def test_cluster_stamped_by_another_operator_is_refreshed_in_place_not_replaced() -> None:
    rs, _ = _settled()
    c = cluster(rs, "rs-aaaaa", applied=SERVE_V1, annotations={"ray.io/kuberay-version": "v1.6.0"})
    c["metadata"]["annotations"]["ray.io/hash-without-replicas-and-workers-to-delete"] = "GOHASH"
    d = M.decide(rs, world(obs(c), services="rs-aaaaa", endpoints=1))
    (up,) = of(d, M.UpdateCluster)
    assert up.cluster["metadata"]["annotations"]["ray.io/kuberay-version"] == "v1.7.0"
    assert up.cluster["metadata"]["annotations"]["rayop.io/hash-version"] == B.HASH_VERSION
    assert names(d) == ("rs-aaaaa", "")


def test_active_is_not_refreshed_while_an_upgrade_runs() -> None:
    rs = rayservice(status=status(active="rs-aaaaa", pending="rs-bbbbb", upgrading=True))
    old = cluster(rs, "rs-aaaaa", annotations={"ray.io/kuberay-version": "v1.6.0"})
    new = cluster(rs, "rs-bbbbb", applied=SERVE_V1)
    d = M.decide(rs, world(obs(old), obs(new, serve={}), services="rs-aaaaa", endpoints=1))
    assert not of(d, M.UpdateCluster)


def test_spec_change_while_pending_replaces_the_pending_cluster() -> None:
    v1 = rayservice()
    v2 = rayservice(rayClusterConfig=cluster_config(image="v2"))
    v3 = rayservice(
        status=status(active="rs-aaaaa", pending="rs-bbbbb", upgrading=True),
        rayClusterConfig=cluster_config(image="v3"),
    )
    d = M.decide(
        v3,
        world(
            obs(cluster(v1, "rs-aaaaa", applied=SERVE_V1)),
            obs(cluster(v2, "rs-bbbbb"), serve={}),
            services="rs-aaaaa",
            endpoints=1,
        ),
    )
    assert names(d) == ("rs-aaaaa", "rs-zzzzz")
    assert not of(d, M.SwitchService)


def test_spec_changed_back_to_the_active_cancels_the_upgrade() -> None:
    v1 = rayservice(status=status(active="rs-aaaaa", pending="rs-bbbbb", upgrading=True))
    v2 = rayservice(rayClusterConfig=cluster_config(image="v2"))
    d = M.decide(
        v1,
        world(
            obs(cluster(v1, "rs-aaaaa", applied=SERVE_V1)),
            obs(cluster(v2, "rs-bbbbb"), serve={}),
            services="rs-aaaaa",
            endpoints=1,
        ),
    )
    assert names(d) == ("rs-aaaaa", "")
    assert cond(d, "UpgradeInProgress")["status"] == "False"


# Serve config -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("applied", "serve", "put"),
    [
        (None, apps("RUNNING"), True),  # nothing recorded for the cluster
        (SERVE_V1, {}, True),  # Ray lost the apps (head restarted without GCS FT)
        (SERVE_V2, apps("RUNNING"), True),  # another config was applied
        (SERVE_V1, apps("RUNNING"), False),  # recorded and running: a restarted operator changes nothing
        (SERVE_V1, apps("DEPLOY_FAILED"), False),  # same config failing: re-PUT would not help
    ],
)
def test_when_the_serve_config_is_put(applied: str | None, serve: dict[str, Any], put: bool) -> None:
    rs, _ = _settled()
    c = cluster(rs, "rs-aaaaa", applied=applied)
    d = M.decide(rs, world(obs(c, serve=serve), services="rs-aaaaa", endpoints=1))
    puts = of(d, M.ApplyServeConfig)
    assert bool(puts) is put
    if put:
        assert puts[0].config == {
            "applications": [{"name": "hello", "route_prefix": "/", "import_path": "hello:build"}]
        }
        assert puts[0].config_hash == B.serve_config_hash(SERVE_V1)


def test_no_serve_call_before_the_head_is_ready_or_when_the_dashboard_fails() -> None:
    rs = rayservice(status=status(pending="rs-aaaaa", ready="False"))
    for c, o in (
        (cluster(rs, "rs-aaaaa", head_ready=False), {"serve": None}),
        (cluster(rs, "rs-aaaaa"), {"serve": "connection refused"}),
    ):
        d = M.decide(rs, world(obs(c, **o)))
        assert not of(d, M.ApplyServeConfig)
        assert not of(d, M.CreateService)


def test_active_gets_no_config_during_an_upgrade() -> None:
    rs = rayservice(
        status=status(active="rs-aaaaa", pending="rs-bbbbb", upgrading=True),
        rayClusterConfig=cluster_config(image="v2"),
        serveConfigV2=SERVE_V2,
    )
    old = cluster(rayservice(), "rs-aaaaa", applied=SERVE_V1)
    new = cluster(rs, "rs-bbbbb")
    d = M.decide(rs, world(obs(old), obs(new, serve={}), services="rs-aaaaa", endpoints=1))
    assert [p.cluster for p in of(d, M.ApplyServeConfig)] == ["rs-bbbbb"]


# The head's serve label ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "proxy", "exclude", "want"),
    [
        ("false", True, False, "true"),
        ("true", False, False, "false"),
        ("true", None, False, None),  # no answer yet on a busy machine: keep it serving
        ("false", None, False, None),
        ("true", True, True, "false"),
        ("true", True, False, None),
    ],
)
def test_head_serve_label(label: str, proxy: bool | None, exclude: bool, want: str | None) -> None:
    rs, c = _settled(excludeHeadPodFromServeSvc=exclude)
    d = M.decide(rs, world(obs(c, head_label=label, head_proxy=proxy), services="rs-aaaaa", endpoints=1))
    got = [(a.pod, a.value) for a in of(d, M.SetServeLabel)]
    assert got == ([("rs-aaaaa-head", want)] if want else [])


# Promotion and the Services --------------------------------------------------------------------------


def test_first_cluster_is_promoted_once_it_can_serve_and_services_are_created() -> None:
    rs = rayservice(status=status(pending="rs-aaaaa", ready="False"))
    c = cluster(rs, "rs-aaaaa", applied=SERVE_V1)
    d = M.decide(rs, world(obs(c)))
    created = {a.service["metadata"]["name"]: a.service for a in of(d, M.CreateService)}
    assert set(created) == {"rs-head-svc", "rs-serve-svc"}
    assert created["rs-serve-svc"]["spec"]["selector"] == {
        "ray.io/cluster": "rs-aaaaa",
        "ray.io/serve": "true",
    }
    assert created["rs-serve-svc"]["spec"]["ports"] == [{"name": "serve", "port": 8000}]
    assert created["rs-head-svc"]["spec"]["selector"]["ray.io/cluster"] == "rs-aaaaa"
    assert created["rs-head-svc"]["spec"]["clusterIP"] == "None"
    assert names(d) == ("rs-aaaaa", "")
    assert d.status["activeServiceStatus"]["applicationStatuses"]["hello"]["status"] == "RUNNING"
    assert cond(d, "UpgradeInProgress")["reason"] == "NoPendingCluster"


@pytest.mark.parametrize(
    ("serve", "serving", "head_proxy", "switch"),
    [
        (apps("RUNNING"), 1, False, True),  # a worker answers
        (apps("RUNNING"), 0, True, True),  # the head answers (its label flips this pass)
        (apps("RUNNING"), 0, False, False),  # RUNNING, but no proxy answers: KubeRay would switch (#1559)
        (apps("RUNNING", "DEPLOYING"), 1, True, False),
        (apps("DEPLOY_FAILED"), 1, True, False),
        ({}, 1, True, False),
    ],
)
def test_services_switch_only_to_a_cluster_that_can_serve(
    serve: dict[str, Any], serving: int, head_proxy: bool, switch: bool
) -> None:
    rs = rayservice(
        status=status(active="rs-aaaaa", pending="rs-bbbbb", upgrading=True),
        rayClusterConfig=cluster_config(image="v2"),
    )
    old = cluster(rayservice(), "rs-aaaaa", applied=SERVE_V1)
    new = cluster(rs, "rs-bbbbb", applied=SERVE_V1)
    d = M.decide(
        rs,
        world(
            obs(old),
            obs(new, serve=serve, serving=serving, head_proxy=head_proxy),
            services="rs-aaaaa",
            endpoints=1,
        ),
    )
    switches = of(d, M.SwitchService)
    assert bool(switches) is switch
    if switch:
        assert {s.name for s in switches} == {"rs-head-svc", "rs-serve-svc"}
        assert all(s.spec["clusterIP"] == "10.96.0.7" for s in switches)
        assert all(s.spec["selector"]["ray.io/cluster"] == "rs-bbbbb" for s in switches)
        assert names(d) == ("rs-bbbbb", "")
        assert cond(d, "UpgradeInProgress")["reason"] == "NoPendingCluster"
    else:
        assert names(d) == ("rs-aaaaa", "rs-bbbbb")
        assert cond(d, "UpgradeInProgress")["status"] == "True"


def test_bad_import_on_the_pending_cluster_says_why_and_keeps_the_active() -> None:
    rs = rayservice(
        status=status(active="rs-aaaaa", pending="rs-bbbbb", upgrading=True),
        rayClusterConfig=cluster_config(image="v2"),
    )
    old = cluster(rayservice(), "rs-aaaaa", applied=SERVE_V1)
    new = cluster(rs, "rs-bbbbb", applied=SERVE_V1)
    traceback = "Traceback (most recent call last):\n" + '  File "x.py", line 1, in <module>\n' * 40
    failed = apps("DEPLOY_FAILED", message=traceback + "ModuleNotFoundError: No module named 'nosuch'")
    d = M.decide(rs, world(obs(old), obs(new, serve=failed), services="rs-aaaaa", endpoints=1))
    assert not of(d, M.SwitchService)
    (ev,) = of(d, M.Event)
    assert (ev.type, ev.reason) == ("Warning", "ServeApplicationFailed")
    assert "No module named 'nosuch'" in ev.message and "ns/rs-aaaaa keeps serving" in ev.message
    assert "Traceback" not in ev.message and len(ev.message) < 1024, "the error, not the traceback's head"
    up = cond(d, "UpgradeInProgress")
    assert (
        up["status"] == "True"
        and "DEPLOY_FAILED" in up["message"]
        and "rs-aaaaa keeps serving" in up["message"]
    )
    assert d.status["pendingServiceStatus"]["applicationStatuses"]["hello"]["status"] == "DEPLOY_FAILED"
    assert cond(d, "Ready")["status"] == "True"
    # Reported once: the next pass sees the same failure in the status and stays quiet.
    rs2 = copy.deepcopy(rs)
    rs2["status"] = d.status
    d2 = M.decide(rs2, world(obs(old), obs(new, serve=failed), services="rs-aaaaa", endpoints=1))
    assert not of(d2, M.Event)


def test_services_already_on_the_pending_cluster_complete_the_promotion() -> None:
    # A restart between the Service switch and the status write.
    rs = rayservice(
        status=status(active="rs-aaaaa", pending="rs-bbbbb", upgrading=True),
        rayClusterConfig=cluster_config(image="v2"),
    )
    old = cluster(rayservice(), "rs-aaaaa", applied=SERVE_V1)
    new = cluster(rs, "rs-bbbbb", applied=SERVE_V1)
    d = M.decide(rs, world(obs(old), obs(new, serve=apps("DEPLOYING")), services="rs-bbbbb", endpoints=1))
    assert names(d) == ("rs-bbbbb", "")
    assert not of(d, M.SwitchService)


def test_missing_serve_port_is_reported_and_nothing_switches() -> None:
    cfg = cluster_config()
    cfg["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"] = [
        {"name": "dashboard", "containerPort": 8265}
    ]
    rs = rayservice(status=status(pending="rs-aaaaa", ready="False"), rayClusterConfig=cfg)
    d = M.decide(rs, world(obs(cluster(rs, "rs-aaaaa", applied=SERVE_V1))))
    assert not of(d, M.CreateService)
    assert [e.reason for e in of(d, M.Event)] == ["FailedToCreateService"]
    assert names(d) == ("", "rs-aaaaa")


def test_custom_serve_service_keeps_its_name_and_gets_our_selector() -> None:
    custom = {
        "metadata": {"name": "front", "labels": {"team": "a"}},
        "spec": {"type": "NodePort", "selector": {"x": "y"}},
    }
    rs = rayservice(status=status(pending="rs-aaaaa", ready="False"), serveService=custom)
    d = M.decide(rs, world(obs(cluster(rs, "rs-aaaaa", applied=SERVE_V1))))
    serve = next(a.service for a in of(d, M.CreateService) if a.service["metadata"]["name"] == "front")
    assert serve["spec"]["selector"] == {"ray.io/cluster": "rs-aaaaa", "ray.io/serve": "true"}
    assert serve["spec"]["type"] == "NodePort"
    assert serve["metadata"]["labels"]["team"] == "a"
    assert serve["metadata"]["labels"]["ray.io/serve"] == "rs-serve"


# Endpoints and Ready -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "endpoints", "after", "reason"),
    [
        ("False", 1, "True", "NonZeroServeEndpoints"),
        ("True", 0, "False", "ZeroServeEndpoints"),
        ("False", 0, "False", "Initializing"),
    ],
)
def test_ready_follows_serve_endpoints(before: str, endpoints: int, after: str, reason: str) -> None:
    rs, c = _settled()
    rs["status"] = status(active="rs-aaaaa", ready=before)
    d = M.decide(rs, world(obs(c), services="rs-aaaaa", endpoints=endpoints))
    assert (cond(d, "Ready")["status"], cond(d, "Ready")["reason"]) == (after, reason)
    assert d.status["numServeEndpoints"] == endpoints
    assert d.status["serviceStatus"] == ("Running" if after == "True" else "")


def test_status_written_only_when_it_changes() -> None:
    rs, c = _settled()
    rs["status"] = status(active="rs-aaaaa")
    first = M.decide(rs, world(obs(c), services="rs-aaaaa", endpoints=1))
    rs["status"] = first.status
    c2 = copy.deepcopy(c)
    c2["status"]["lastUpdateTime"] = "2026-01-01T12:00:09Z"  # RayCluster status churn alone writes nothing
    again = M.decide(rs, world(obs(c2), services="rs-aaaaa", endpoints=1, now=T0 + timedelta(seconds=2)))
    assert not again.status_changed


# Old clusters: deletion deadline and drain -------------------------------------------------------------


def _after_switch(
    delay: int | None = 60, annotations: dict[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    spec: dict[str, Any] = {"rayClusterConfig": cluster_config(image="v2")}
    if delay is not None:
        spec["rayClusterDeletionDelaySeconds"] = delay
    rs = rayservice(status=status(active="rs-bbbbb"), annotations=annotations, **spec)
    old = cluster(rayservice(), "rs-aaaaa", applied=SERVE_V1)
    new = cluster(rs, "rs-bbbbb", applied=SERVE_V1)
    return rs, old, new


def test_unused_cluster_gets_a_deadline_recorded_on_itself() -> None:
    rs, old, new = _after_switch(delay=30)
    d = M.decide(rs, world(obs(old), obs(new), services="rs-bbbbb", endpoints=1))
    (ann,) = of(d, M.AnnotateCluster)
    assert ann.name == "rs-aaaaa"
    assert ann.annotations == {"rayop.io/delete-after": ts(T0 + timedelta(seconds=30))}
    assert not of(d, M.DeleteCluster)


@pytest.mark.parametrize(
    ("elapsed", "ongoing", "deleted"),
    [
        (-5, 0, False),  # before the deadline
        (0, 0, True),  # deadline reached, proxies idle
        (1, 3, False),  # requests in flight: wait
        (1, None, False),  # proxies unreadable: wait
        (59, 3, False),  # still within the 60 s drain cap
        (60, 3, True),  # cap over: delete anyway
    ],
)
def test_unused_cluster_is_deleted_after_the_deadline_once_drained(
    elapsed: int, ongoing: int | None, deleted: bool
) -> None:
    rs, old, new = _after_switch()
    old["metadata"]["annotations"]["rayop.io/delete-after"] = ts(T0)
    d = M.decide(
        rs,
        world(
            obs(old, ongoing=ongoing),
            obs(new),
            services="rs-bbbbb",
            endpoints=1,
            now=T0 + timedelta(seconds=elapsed),
        ),
    )
    assert [a.name for a in of(d, M.DeleteCluster)] == (["rs-aaaaa"] if deleted else [])
    assert not of(d, M.AnnotateCluster)  # the deadline is never moved
    assert d.requeue_after is not None and d.requeue_after <= 2.0


def test_drain_timeout_annotation_and_zero_delay() -> None:
    rs, old, new = _after_switch(delay=0, annotations={"rayop.io/serve-drain-timeout": "5s"})
    old["metadata"]["annotations"]["rayop.io/delete-after"] = ts(T0)
    d = M.decide(
        rs,
        world(obs(old, ongoing=2), obs(new), services="rs-bbbbb", endpoints=1, now=T0 + timedelta(seconds=5)),
    )
    assert [a.name for a in of(d, M.DeleteCluster)] == ["rs-aaaaa"]
    assert "drain timeout (5s)" in of(d, M.DeleteCluster)[0].why


def test_a_cluster_in_use_loses_a_stale_deadline() -> None:
    rs, old, new = _after_switch()
    new["metadata"]["annotations"]["rayop.io/delete-after"] = ts(T0 - timedelta(hours=1))
    d = M.decide(rs, world(obs(old), obs(new), services="rs-bbbbb", endpoints=1))
    assert M.AnnotateCluster("rs-bbbbb", {"rayop.io/delete-after": None}) in d.actions
    assert not of(d, M.DeleteCluster)


# Initializing timeout ---------------------------------------------------------------------------------


def _initializing(timeout: str, since: datetime) -> dict[str, Any]:
    st = status(pending="rs-aaaaa", ready="False")
    st["conditions"][0]["lastTransitionTime"] = ts(since)
    st["conditions"][1]["reason"] = "Initializing"
    return rayservice(status=st, annotations={"ray.io/initializing-timeout": timeout})


@pytest.mark.parametrize(
    ("timeout", "elapsed", "fires"),
    [("30s", 29, False), ("30s", 30, True), ("30", 31, True), ("2m", 90, False), ("2m", 121, True)],
)
def test_initializing_timeout(timeout: str, elapsed: int, fires: bool) -> None:
    rs = _initializing(timeout, T0 - timedelta(seconds=elapsed))
    c = cluster(rs, "rs-aaaaa", applied=SERVE_V1)
    d = M.decide(rs, world(obs(c, serve=apps("DEPLOYING"))))
    ready = cond(d, "Ready")
    if fires:
        assert ready["reason"] == "InitializingTimeout"
        assert names(d) == ("", "")
        (ev,) = of(d, M.Event)
        assert ev.reason == "RayServiceInitializingTimeout"
        assert f"configured timeout: {M.go_duration(M.duration_annotation(timeout) or 0)}" in ev.message
    else:
        assert ready["reason"] == "Initializing"
        assert names(d) == ("", "rs-aaaaa")


def test_after_the_timeout_only_clean_up_runs() -> None:
    rs = _initializing("30s", T0 - timedelta(minutes=5))
    rs["status"]["conditions"][0]["reason"] = "InitializingTimeout"
    rs["status"]["pendingServiceStatus"] = {"rayClusterName": ""}
    rs["spec"]["rayClusterConfig"] = cluster_config(image="edited")  # still terminal
    c = cluster(rs, "rs-aaaaa")
    d = M.decide(rs, world(obs(c)))
    assert kinds(d) == ["AnnotateCluster"]
    assert names(d) == ("", "")
    c["metadata"]["annotations"]["rayop.io/delete-after"] = ts(T0 - timedelta(seconds=61))
    d = M.decide(rs, world(obs(c, ongoing=0)))
    assert kinds(d) == ["DeleteCluster"]
    d = M.decide(rs, world())
    assert d.actions == [] and d.requeue_after is None


def test_go_duration_format() -> None:
    assert [M.go_duration(x) for x in (0, 0.25, 1.5, 10, 90, 3600, 3725.5)] == [
        "0s",
        "250ms",
        "1.5s",
        "10s",
        "1m30s",
        "1h0m0s",
        "1h2m5.5s",
    ]


# Suspend --------------------------------------------------------------------------------------------------


def test_suspend_is_two_phase_and_resume_starts_over() -> None:
    rs, c = _settled(suspend=True)
    w = world(obs(c), services="rs-aaaaa", endpoints=1)
    d1 = M.decide(rs, w)
    assert d1.actions == []  # Suspending is persisted before anything is deleted
    assert cond(d1, "Suspending")["status"] == "True"
    assert (cond(d1, "Ready")["status"], cond(d1, "Ready")["reason"]) == ("False", "SuspendInProgress")
    assert names(d1) == ("", "")

    rs["status"] = d1.status
    rs["spec"]["suspend"] = False  # too late: suspending runs to its end
    d2 = M.decide(rs, w)
    assert sorted(kinds(d2)) == ["DeleteCluster", "DeleteService", "DeleteService"]

    rs["status"] = d2.status
    d3 = M.decide(rs, world())
    assert cond(d3, "Suspended")["status"] == "True"
    assert cond(d3, "Suspending")["status"] == "False"

    rs["status"] = d3.status
    rs["spec"]["suspend"] = True
    d4 = M.decide(rs, world())
    assert d4.actions == [] and d4.requeue_after is None

    rs["spec"]["suspend"] = False
    d5 = M.decide(rs, world(now=T0 + timedelta(minutes=1)))
    assert cond(d5, "Suspended")["status"] == "False"
    assert cond(d5, "Ready")["reason"] == "Initializing"
    assert cond(d5, "Ready")["lastTransitionTime"] == ts(T0 + timedelta(minutes=1))
    assert names(d5) == ("", "rs-zzzzz")


# Validation, deletion, managedBy -------------------------------------------------------------------------


def test_validation_failure_sets_condition_and_event_then_nothing_else() -> None:
    rs = rayservice(rayClusterDeletionDelaySeconds=-1)
    d = M.decide(rs, world())
    assert kinds(d) == ["Event"]
    assert d.actions[0].reason == "InvalidRayServiceSpec"  # type: ignore[union-attr]
    assert cond(d, "Ready")["reason"] == "ValidationFailed"
    assert "rayClusterDeletionDelaySeconds" in cond(d, "Ready")["message"]
    assert d.requeue_after is None
    bad_name = rayservice()
    bad_name["metadata"]["name"] = "x" * 60
    assert M.decide(bad_name, world()).actions[0].reason == "InvalidRayServiceMetadata"  # type: ignore[union-attr]
    # Fixed: starts over as initializing.
    fixed = rayservice(status=d.status)
    d2 = M.decide(fixed, world())
    assert cond(d2, "Ready")["reason"] == "Initializing"
    assert names(d2) == ("", "rs-zzzzz")


def test_deleting_removes_clusters_at_once_then_the_finalizer() -> None:
    rs, c = _settled()
    rs["metadata"]["deletionTimestamp"] = ts(T0)
    d = M.decide(rs, world(obs(c)))
    assert [(type(a).__name__, getattr(a, "name", "")) for a in d.actions] == [("DeleteCluster", "rs-aaaaa")]
    d = M.decide(rs, world())
    assert kinds(d) == ["RemoveFinalizer"]


def test_managed_by_another_controller_is_left_alone() -> None:
    rs = rayservice(managedBy="kueue.x-k8s.io/multikueue")
    d = M.decide(rs, world())
    assert d.actions == [] and not d.status_changed and d.requeue_after is None
