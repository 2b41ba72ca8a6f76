"""Serve deployments as scale targets (RayServeDeployment): names, the Serve config with the scale targets'
numbers folded in, the plan of objects and their status, the RayService machine applying a new number in
place, and the webhook's rule for scale writes."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from rayop.api import servedeployment as SD
from rayop.builders import rayservice as RB
from rayop.builders import servedeployment as B
from rayop.controllers import rayservice_machine as M
from rayop.controllers import servedeployment_plan as P
from rayop.validation import ScaleContext, validate_scale
from tests.unit import test_rayservice_machine as TM

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

SERVE = """\
applications:
  - name: hello
    route_prefix: /
    import_path: hello:build
    deployments:
      - name: Hello
        num_replicas: 1
        ray_actor_options: {num_cpus: 1}
  - name: auto
    route_prefix: /auto
    import_path: auto:build
    deployments:
      - name: Scaled
        autoscaling_config: {min_replicas: 1, max_replicas: 4}
"""


def rs(serve: str = SERVE) -> dict[str, Any]:
    return TM.rayservice(TM.status("rs-a"), serveConfigV2=serve)


def replica(pod: str, state: str = "RUNNING", ip: str = "") -> dict[str, Any]:
    r: dict[str, Any] = {"replica_id": f"r-{pod}", "state": state, "node_ip": ip}
    if pod:
        r["node_instance_id"] = pod
    return r


def dep(
    target: int, replicas: list[dict[str, Any]] | None = None, *, autoscaling: bool = False
) -> dict[str, Any]:
    return {
        "status": "HEALTHY",
        "message": "",
        "target_num_replicas": target,
        "deployment_config": {
            "num_replicas": None if autoscaling else target,
            "autoscaling_config": {"min_replicas": 1, "max_replicas": 4} if autoscaling else None,
        },
        "replicas": replicas if replicas is not None else [replica("w1")],
    }


def ray_apps(hello: dict[str, Any] | None = None, **extra: dict[str, Any]) -> dict[str, Any]:
    apps = {
        "hello": {"status": "RUNNING", "message": "", "deployments": {"Hello": hello or dep(1)}},
        "auto": {
            "status": "RUNNING",
            "message": "",
            "deployments": {"Scaled": dep(2, [replica("w1")], autoscaling=True)},
        },
    }
    for name, a in extra.items():
        apps[name] = a
    return apps


def view(apps: dict[str, Any] | None, **pods: str) -> P.ClusterView:
    groups = {"w1": "serve", "w2": "serve", "w3": "other", "h": "headgroup", **pods}
    return P.ClusterView("rs-a", apps, groups, {"10.0.0.9": "w3"})


def target(
    name: str = "rs-hello-hello",
    replicas: int = 1,
    *,
    app: str = "hello",
    deployment: str = "Hello",
    status: dict[str, Any] | None = None,
    generation: int = 1,
    uid: str = "u1",
) -> dict[str, Any]:
    t = B.build(rs(), app, deployment, name, replicas)
    t["metadata"]["ownerReferences"][0]["uid"] = uid
    t["metadata"].update({"generation": generation, "resourceVersion": "5", "uid": f"t-{name}"})
    t["status"] = status or {}
    return t


# Names ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rs_name", "app", "deployment", "want"),
    [
        ("svc", "hello", "Hello", "svc-hello-hello"),
        ("svc", "my_app", "Model Server", "svc-my-app-model-server"),
        ("svc", "default", "_Private_", "svc-default-private"),
        ("svc", "a", "x" * 300, None),
    ],
)
def test_stable_names(rs_name: str, app: str, deployment: str, want: str | None) -> None:
    assert B.target_name(rs_name, app, deployment) == want


def test_the_object_is_owned_by_the_rayservice_and_names_the_deployment() -> None:
    t = B.build(rs(), "hello", "Hello", "rs-hello-hello", 2)
    assert t["apiVersion"] == "rayop.io/v1alpha1" and t["kind"] == "RayServeDeployment"
    assert t["spec"] == {
        "rayServiceName": "rs",
        "applicationName": "hello",
        "deploymentName": "Hello",
        "replicas": 2,
    }
    owner = t["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "RayService",
        "rs",
        "u1",
        True,
    )
    assert t["metadata"]["labels"]["ray.io/originated-from-cr-name"] == "rs"
    assert t["metadata"]["labels"][SD.LABEL_APPLICATION] == "hello"


# Folding --------------------------------------------------------------------------------------------------


def test_fold_sets_num_replicas_in_place_and_adds_missing_entries() -> None:
    config = RB.serve_config(SERVE + "  - name: bare\n    route_prefix: /b\n    import_path: b:app\n")
    folded = B.fold(config, {("hello", "Hello"): 3, ("hello", "Extra"): 2, ("bare", "B"): 4})
    hello = folded["applications"][0]["deployments"]
    assert hello[0] == {"name": "Hello", "num_replicas": 3, "ray_actor_options": {"num_cpus": 1}}
    assert hello[1] == {"name": "Extra", "num_replicas": 2}
    assert folded["applications"][2]["deployments"] == [{"name": "B", "num_replicas": 4}]
    # Everything else as written, and the input untouched.
    assert folded["applications"][1] == config["applications"][1]
    assert config["applications"][0]["deployments"][0]["num_replicas"] == 1


def test_the_applied_hash_is_the_texts_without_overrides_and_changes_with_each_number() -> None:
    assert B.applied_hash(SERVE, {}) == RB.serve_config_hash(SERVE)
    two = B.applied_hash(SERVE, {("hello", "Hello"): 2})
    assert two != RB.serve_config_hash(SERVE)
    assert two != B.applied_hash(SERVE, {("hello", "Hello"): 3})
    assert two == B.applied_hash(SERVE, {("hello", "Hello"): 2})


def test_selectors() -> None:
    assert B.selector("c", ["serve"]) == "ray.io/cluster=c,ray.io/group=serve,ray.io/node-type=worker"
    assert B.selector("c", ["headgroup"]) == "ray.io/cluster=c,ray.io/node-type=head"
    assert B.selector("c", ["b", "a", "headgroup"]) == (
        "ray.io/cluster=c,ray.io/group in (a,b,headgroup),ray.io/node-type in (head,worker)"
    )
    assert B.selector("c", []) == "ray.io/cluster=c,ray.io/node-type in (head,worker)"


# Which numbers a PUT carries --------------------------------------------------------------------------------


def test_overrides_skip_what_serves_autoscaler_sizes_and_deployments_the_cluster_lacks() -> None:
    config = RB.serve_config(SERVE)
    targets = {
        "rs-hello-hello": target(replicas=3),
        "rs-auto-scaled": target("rs-auto-scaled", 2, app="auto", deployment="Scaled"),
        "rs-hello-code": target("rs-hello-code", 2, deployment="Code"),
        "stranger": target("stranger", 5, deployment="Other", uid="someone-else"),
    }
    apps = ray_apps()
    # Code is neither listed in serveConfigV2 nor run by this cluster: Serve would fail the application.
    assert P.overrides(rs(), targets, config, apps, apps) == {("hello", "Hello"): 3}
    apps["hello"]["deployments"]["Code"] = dep(1)
    assert P.overrides(rs(), targets, config, apps, apps) == {("hello", "Hello"): 3, ("hello", "Code"): 2}
    # An autoscaling_config in the deployment's code, as Ray reports it.
    apps["hello"]["deployments"]["Code"] = dep(1, autoscaling=True)
    assert P.overrides(rs(), targets, config, apps, apps) == {("hello", "Hello"): 3}


def test_a_change_of_num_replicas_in_serve_config_is_followed() -> None:
    config = RB.serve_config(SERVE.replace("num_replicas: 1", "num_replicas: 4"))
    followed = target(replicas=2, status={"configReplicas": 1})
    assert P.wanted_replicas(followed, config) == (4, True)
    # Not yet followed (a new object), or the config says what spec already asks: spec wins.
    assert P.wanted_replicas(target(replicas=2), config) == (2, False)
    assert P.wanted_replicas(target(replicas=2, status={"configReplicas": 4}), config) == (2, False)


# The plan ---------------------------------------------------------------------------------------------------


def test_one_object_per_reported_deployment_at_the_number_that_runs() -> None:
    apps = ray_apps(hello=dep(2, [replica("w1"), replica("w2")]))
    plan = P.plan(rs(), RB.serve_config(SERVE), {}, view(apps), applied=True, now=NOW)
    made = {t["metadata"]["name"]: t["spec"]["replicas"] for t in plan.create}
    assert made == {"rs-hello-hello": 2, "rs-auto-scaled": 2}
    assert not plan.update and not plan.delete


def test_nothing_happens_while_serve_is_unknown() -> None:
    plan = P.plan(
        rs(), RB.serve_config(SERVE), {"rs-hello-hello": target()}, view(None), applied=True, now=NOW
    )
    assert (plan.create, plan.update, plan.delete) == ([], [], [])


def test_a_name_held_by_another_object_is_reported_not_taken() -> None:
    stranger = target(uid="another-rayservice")
    plan = P.plan(
        rs(), RB.serve_config(SERVE), {"rs-hello-hello": stranger}, view(ray_apps()), applied=True, now=NOW
    )
    assert not any(t["metadata"]["name"] == "rs-hello-hello" for t in plan.create)
    assert any(n.reason == SD.EV_NAME_TAKEN and "rs-hello-hello" in n.message for n in plan.notes)
    assert not any(u.target is stranger for u in plan.update)


def test_objects_go_with_their_application_or_deployment() -> None:
    gone_app = target("rs-old-x", app="old", deployment="X")
    gone_dep = target("rs-hello-removed", deployment="Removed")
    plan = P.plan(
        rs(),
        RB.serve_config(SERVE),
        {"rs-old-x": gone_app, "rs-hello-removed": gone_dep},
        view(ray_apps()),
        applied=True,
        now=NOW,
    )
    assert dict(plan.delete) == {
        "rs-old-x": "application 'old' is no longer in serveConfigV2",
        "rs-hello-removed": "application 'hello' runs without deployment 'Removed'",
    }
    # While the application is still deploying, its deployments may not be reported yet: kept.
    apps = ray_apps()
    apps["hello"]["status"] = "DEPLOYING"
    plan = P.plan(
        rs(), RB.serve_config(SERVE), {"rs-hello-removed": gone_dep}, view(apps), applied=True, now=NOW
    )
    assert plan.delete == []


def test_status_counts_replicas_and_selects_the_pods_that_hold_them() -> None:
    apps = ray_apps(
        hello=dep(
            3,
            [replica("w1"), replica("w2", "STARTING"), replica("w2", "STOPPING"), replica("", ip="10.0.0.9")],
        )
    )
    t = target(replicas=3, status={"configReplicas": 1, "observedGeneration": 1})
    plan = P.plan(rs(), RB.serve_config(SERVE), {"rs-hello-hello": t}, view(apps), applied=True, now=NOW)
    (u,) = [u for u in plan.update if u.target is t]
    st = u.status
    assert (st["replicas"], st["readyReplicas"], st["targetReplicas"]) == (3, 2, 3)
    # w1 and w2 are in group serve, the replica found by its IP is in w3 (group other).
    assert (
        st["selector"]
        == "ray.io/cluster=rs-a,ray.io/group in (other,serve),ray.io/node-type in (head,worker)"
    )
    assert st["scaledBy"] == SD.SCALED_BY_SCALE_TARGET and st["rayClusterName"] == "rs-a"
    assert st["configReplicas"] == 1
    synced = next(c for c in st["conditions"] if c["type"] == SD.COND_SYNCED)
    assert (synced["status"], synced["reason"]) == ("False", SD.REASON_SCALING_UP)
    assert u.replicas is None and u.observe


def test_dedicated_pods_say_when_the_cpu_is_not_the_deployments_alone() -> None:
    apps = ray_apps(hello=dep(1, [replica("w1")]))
    t = target(replicas=1, status={"configReplicas": 1})
    plan = P.plan(rs(), RB.serve_config(SERVE), {"rs-hello-hello": t}, view(apps), applied=True, now=NOW)
    st = next(u.status for u in plan.update if u.target is t)
    dedicated = next(c for c in st["conditions"] if c["type"] == SD.COND_DEDICATED_PODS)
    # The autoscaled deployment's replica runs in w1 too (group serve).
    assert (dedicated["status"], dedicated["reason"]) == ("False", SD.REASON_SHARED)
    assert "auto/Scaled" in dedicated["message"]
    apps["auto"]["deployments"]["Scaled"]["replicas"] = [replica("w3")]
    plan = P.plan(rs(), RB.serve_config(SERVE), {"rs-hello-hello": t}, view(apps), applied=True, now=NOW)
    st = next(u.status for u in plan.update if u.target is t)
    dedicated = next(c for c in st["conditions"] if c["type"] == SD.COND_DEDICATED_PODS)
    assert (dedicated["status"], dedicated["reason"]) == ("True", SD.REASON_DEDICATED)
    synced = next(c for c in st["conditions"] if c["type"] == SD.COND_SYNCED)
    assert (synced["status"], synced["reason"]) == ("True", SD.REASON_IN_SYNC)


def test_a_config_edit_is_copied_into_spec_and_a_number_not_yet_applied_is_said() -> None:
    serve = SERVE.replace("num_replicas: 1", "num_replicas: 4")
    t = target(replicas=2, status={"configReplicas": 1})
    plan = P.plan(
        rs(serve), RB.serve_config(serve), {"rs-hello-hello": t}, view(ray_apps()), applied=False, now=NOW
    )
    (u,) = [u for u in plan.update if u.target is t]
    assert u.replicas == 4 and not u.observe
    assert u.status["configReplicas"] == 4
    assert [n.reason for n in u.notes] == [SD.EV_SYNCED_FROM_CONFIG]
    synced = next(c for c in u.status["conditions"] if c["type"] == SD.COND_SYNCED)
    assert synced["reason"] == SD.REASON_APPLYING


def test_serves_autoscaler_owns_the_number_and_spec_mirrors_its_target() -> None:
    t = target(
        "rs-auto-scaled", 1, app="auto", deployment="Scaled", generation=3, status={"observedGeneration": 2}
    )
    plan = P.plan(
        rs(), RB.serve_config(SERVE), {"rs-auto-scaled": t}, view(ray_apps()), applied=True, now=NOW
    )
    (u,) = [u for u in plan.update if u.target is t]
    assert u.replicas == 2 and u.observe
    assert u.status["scaledBy"] == SD.SCALED_BY_SERVE_AUTOSCALER
    assert [n.reason for n in u.notes] == [SD.EV_SCALE_IGNORED]
    synced = next(c for c in u.status["conditions"] if c["type"] == SD.COND_SYNCED)
    assert (synced["status"], synced["reason"]) == ("True", SD.REASON_SERVE_AUTOSCALER)


# The RayService machine -------------------------------------------------------------------------------------


def machine_world(rayservice: dict[str, Any], targets: dict[str, Any], *, applied: str | None) -> M.World:
    c = TM.cluster(rayservice, "rs-a")
    if applied is not None:
        c["metadata"]["annotations"]["rayop.io/serve-config-hash"] = applied
    o = TM.obs(c, serve=ray_apps())
    o = M.ClusterObs(
        cluster=o.cluster,
        head_pod=o.head_pod,
        head_proxy=o.head_proxy,
        serve=o.serve,
        serving_pods=1,
        pod_groups={"w1": "serve", "rs-a-head": "headgroup"},
    )
    w = TM.world(o, services="rs-a", endpoints=1)
    return M.World(
        now=w.now,
        clusters=w.clusters,
        head_service=w.head_service,
        serve_service=w.serve_service,
        serve_endpoints=1,
        suffix=w.suffix,
        serve_targets=targets,
    )


def test_a_new_number_is_applied_in_place_and_recorded_in_the_hash() -> None:
    r = rs()
    t = target(replicas=3, status={"configReplicas": 1, "observedGeneration": 1}, generation=2)
    d = M.decide(r, machine_world(r, {"rs-hello-hello": t}, applied=RB.serve_config_hash(SERVE)))
    assert not TM.of(d, M.CreateCluster) and not TM.of(d, M.UpdateCluster)
    assert TM.names(d) == ("rs-a", "")
    (put,) = TM.of(d, M.ApplyServeConfig)
    assert put.cluster == "rs-a"
    assert put.config_hash == B.applied_hash(SERVE, {("hello", "Hello"): 3})
    hello = put.config["applications"][0]["deployments"][0]
    assert hello["num_replicas"] == 3 and hello["ray_actor_options"] == {"num_cpus": 1}
    # The other application's deployments are as written (Serve leaves them running).
    assert put.config["applications"][1] == RB.serve_config(SERVE)["applications"][1]
    (u,) = [a.update for a in TM.of(d, M.UpdateServeDeployment) if a.update.target is t]
    assert not u.observe


def test_once_applied_nothing_is_put_again_and_the_generation_is_observed() -> None:
    r = rs()
    t = target(replicas=3, status={"configReplicas": 1, "observedGeneration": 1}, generation=2)
    want = B.applied_hash(SERVE, {("hello", "Hello"): 3})
    d = M.decide(r, machine_world(r, {"rs-hello-hello": t}, applied=want))
    assert not TM.of(d, M.ApplyServeConfig)
    (u,) = [a.update for a in TM.of(d, M.UpdateServeDeployment) if a.update.target is t]
    assert u.observe and [n.reason for n in u.notes] == [SD.EV_SCALED]


def test_without_targets_the_hash_is_as_before_so_an_upgrade_of_the_operator_puts_nothing() -> None:
    r = rs()
    d = M.decide(r, machine_world(r, {}, applied=RB.serve_config_hash(SERVE)))
    assert not TM.of(d, M.ApplyServeConfig)
    assert {a.target["metadata"]["name"] for a in TM.of(d, M.CreateServeDeployment)} == {
        "rs-hello-hello",
        "rs-auto-scaled",
    }


def test_turned_off_no_object_and_no_fold() -> None:
    r = rs()
    t = target(replicas=3, status={"configReplicas": 1})
    cfg = M.RayServiceConfig(serve_deployment_targets=False)
    d = M.decide(r, machine_world(r, {"rs-hello-hello": t}, applied=RB.serve_config_hash(SERVE)), cfg)
    assert not TM.of(d, M.ApplyServeConfig) and not TM.of(d, M.CreateServeDeployment)
    assert not TM.of(d, M.UpdateServeDeployment)


# Admission of scale writes ----------------------------------------------------------------------------------


def scale(n: int) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v1", "kind": "Scale", "spec": {"replicas": n}}


def test_scale_writes_are_refused_while_serves_autoscaler_sizes_the_deployment() -> None:
    r = rs()
    auto = target("rs-auto-scaled", 2, app="auto", deployment="Scaled")
    v = validate_scale(SD.KIND, scale(3), scale(2), ScaleContext(auto, r))
    assert len(v.errors) == 1
    text = str(v.errors[0])
    assert "spec.replicas: Forbidden" in text and "serveConfigV2 sets autoscaling_config" in text
    assert "remove autoscaling_config" in text
    # num_replicas: auto is Serve's autoscaler too.
    auto_serve = SERVE.replace("num_replicas: 1", "num_replicas: auto")
    v = validate_scale(SD.KIND, scale(3), scale(1), ScaleContext(target(), rs(auto_serve)))
    assert v.errors and "num_replicas: auto" in str(v.errors[0])
    # Autoscaling from the deployment's code, as the operator recorded it from Ray.
    code = target(status={"scaledBy": SD.SCALED_BY_SERVE_AUTOSCALER})
    v = validate_scale(SD.KIND, scale(3), scale(1), ScaleContext(code, r))
    assert v.errors and "deployment's code" in str(v.errors[0])
    # Not a change (an apply that rewrites the object): nothing to refuse.
    assert not validate_scale(SD.KIND, scale(2), scale(2), ScaleContext(auto, r)).errors


def test_scale_writes_to_a_plain_deployment_pass_and_zero_is_refused() -> None:
    r = rs()
    assert validate_scale(SD.KIND, scale(4), scale(1), ScaleContext(target(), r)).errors == []
    v = validate_scale(SD.KIND, scale(0), scale(1), ScaleContext(target(), r))
    assert v.errors and "at least 1" in str(v.errors[0])
    v = validate_scale(SD.KIND, scale(2), scale(1), ScaleContext(None, None, "timeout"))
    assert not v.errors and "timeout" in v.warnings[0]


def test_the_serve_config_of_the_example_parses_as_the_webhook_reads_it() -> None:
    parsed = yaml.safe_load(SERVE)
    assert SD.entry_autoscaled(SD.config_entry(parsed, "auto", "Scaled"))
    assert SD.entry_replicas(SD.config_entry(parsed, "hello", "Hello")) == 1
    assert SD.config_entry(copy.deepcopy(parsed), "hello", "Nope") is None


def test_a_number_serve_runs_anyway_is_not_folded_so_nobody_scaling_means_no_new_put() -> None:
    config = RB.serve_config(SERVE)
    apps = ray_apps()
    apps["hello"]["deployments"]["Code"] = dep(2)
    at_config = target(replicas=1)
    code = target("rs-hello-code", 2, deployment="Code")
    code["metadata"]["annotations"] = {SD.ANN_CODE_REPLICAS: "2"}
    targets = {"rs-hello-hello": at_config, "rs-hello-code": code}
    assert P.overrides(rs(), targets, config, apps, apps) == {}
    code["spec"]["replicas"] = 3
    assert P.overrides(rs(), targets, config, apps, apps) == {("hello", "Code"): 3}


def test_new_objects_record_the_codes_number_and_wait_for_the_config_to_be_applied() -> None:
    apps = ray_apps()
    apps["hello"]["deployments"]["Code"] = dep(2)
    plan = P.plan(rs(), RB.serve_config(SERVE), {}, view(apps), applied=False, now=NOW)
    assert plan.create == []
    plan = P.plan(rs(), RB.serve_config(SERVE), {}, view(apps), applied=True, now=NOW)
    made = {t["metadata"]["name"]: t for t in plan.create}
    assert made["rs-hello-code"]["metadata"]["annotations"] == {SD.ANN_CODE_REPLICAS: "2"}
    assert "annotations" not in made["rs-hello-hello"]["metadata"]  # serveConfigV2 states its number
