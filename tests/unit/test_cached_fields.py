"""What the operator's caches keep (rayop/controllers/cached_fields.py): trimmed Pods answer every
question the controllers ask exactly as full Pods do, and a RayCluster keeps who owns its replicas."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from rayop.api import constants as C
from rayop.builders import cluster as cluster_builders
from rayop.builders import pod as pod_builders
from rayop.builders import status as status_builders
from rayop.builders.options import BuildOptions
from rayop.controllers import cached_fields, podplan, rayjob_machine
from rayop.runtime.cache import keep_fields
from tests.integration.rayclusters import raycluster, running_ready_status

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def server_side(pod: dict[str, Any], i: int) -> dict[str, Any]:
    """A Pod as the API server returns it: defaults, identity, managedFields, scheduling."""
    p = copy.deepcopy(pod)
    md = p["metadata"]
    md.setdefault("name", f"{md.pop('generateName', 'pod-')}{i:05d}")
    md.update(
        uid=f"uid-{i}",
        resourceVersion=str(1000 + i),
        creationTimestamp=f"2026-01-01T00:00:{i % 60:02d}Z",
        managedFields=[
            {
                "manager": "kuberay-operator",
                "operation": "Update",
                "apiVersion": "v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:containers": {'k:{"name":"ray-worker"}': {".": {}}}}},
            }
        ],
    )
    p["spec"].update(
        nodeName="node-1",
        schedulerName="default-scheduler",
        restartPolicy="Always",
        dnsPolicy="ClusterFirst",
        tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}],
    )
    return p


def statuses(pod: dict[str, Any], i: int) -> list[dict[str, Any]]:
    """Statuses a controller must tell apart: pending, running and ready, waiting in a crash loop, the
    Ray container terminated, failed."""
    ready = running_ready_status(pod, f"10.0.0.{i}")
    for cs in ready["containerStatuses"]:
        cs.update(
            containerID="containerd://abc",
            imageID="sha256:def",
            resources={"limits": {"cpu": "1"}},
            volumeMounts=[{"name": "x", "mountPath": "/x"}],
        )
    crash = copy.deepcopy(ready)
    crash["conditions"][0].update(status="False", reason="ContainersNotReady", message="not ready")
    crash["containerStatuses"][0].update(
        ready=False, state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
    )
    terminated = copy.deepcopy(ready)
    terminated["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
    return [
        {"phase": "Pending", "qosClass": "Burstable"},
        ready,
        crash,
        terminated,
        {**copy.deepcopy(ready), "phase": "Failed"},
    ]


def cluster_pods() -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    rc = raycluster("rc", "ns", replicas=3)
    rc["metadata"]["uid"] = "rc-uid"
    opts = BuildOptions()
    group = rc["spec"]["workerGroupSpecs"][0]
    pods = [pod_builders.build_head_pod(rc, opts)] + [
        pod_builders.build_worker_pod(rc, group, opts, replica_index=j) for j in range(3)
    ]
    out = []
    for i, p in enumerate(pods):
        p = server_side(p, i)
        out.append((p, statuses(p, i)))
    return out


def test_a_trimmed_pod_is_much_smaller() -> None:
    pod, sts = cluster_pods()[1]
    full = {**pod, "status": sts[1]}
    trimmed = cached_fields.pod_transform(copy.deepcopy(full))
    assert len(orjson.dumps(trimmed)) * 3 < len(orjson.dumps(full))
    assert "managedFields" not in trimmed["metadata"]
    assert trimmed["spec"] == {
        "nodeName": "node-1",
        "restartPolicy": full["spec"]["restartPolicy"],
        "containers": [
            {
                "name": c["name"],
                "image": c["image"],
                "ports": [{"name": q["name"], "containerPort": q["containerPort"]} for q in c["ports"]],
            }
            for c in full["spec"]["containers"]
        ],
    }


@pytest.mark.parametrize("status_index", range(5))
def test_controllers_read_the_same_from_trimmed_pods(status_index: int) -> None:
    rc = raycluster("rc", "ns", replicas=3)
    rc["metadata"].update(uid="rc-uid", generation=1)
    full = [{**p, "status": sts[status_index]} for p, sts in cluster_pods()]
    trimmed = [cached_fields.pod_transform(copy.deepcopy(p)) for p in full]

    def status(pods: list[dict[str, Any]]) -> dict[str, Any]:
        return status_builders.calculate_status(rc, pods, None, reconcile_error=None, now=NOW)

    assert status(trimmed) == status(full)
    for f, t in zip(full, trimmed, strict=True):
        ray = f["spec"]["containers"][0]["name"]
        assert cluster_builders.should_delete_pod(t, ray) == cluster_builders.should_delete_pod(f, ray)
        assert rayjob_machine.sidecar_terminated(t) == rayjob_machine.sidecar_terminated(f)
        assert status_builders.head_pod_ready_condition(t) == status_builders.head_pod_ready_condition(f)
    group = rc["spec"]["workerGroupSpecs"][0]

    def plan(pods: list[dict[str, Any]]) -> podplan.GroupPlan:
        workers = [p for p in pods if p["metadata"]["labels"][C.LABEL_NODE_TYPE] == C.NODE_TYPE_WORKER]
        return podplan.plan_worker_group(
            group,
            workers,
            desired_pods=2,
            autoscaling=False,
            random_delete=False,
            multi_host_indexing=True,
            should_delete=lambda p: cluster_builders.should_delete_pod(p, ""),
        )

    assert plan(trimmed) == plan(full)


def test_keep_fields_keeps_named_keys_of_dicts_and_of_each_dict_in_lists() -> None:
    t = keep_fields({"a": True, "b": {"c": True}, "l": {"x": True}})
    obj = {"a": {"deep": 1}, "b": {"c": 2, "d": 3}, "l": [{"x": 1, "y": 2}, {"y": 3}], "z": 4}
    assert t(obj) == {"a": {"deep": 1}, "b": {"c": 2}, "l": [{"x": 1}, {}]}


def _entry(manager: str, fields: dict[str, Any], operation: str = "Update") -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": "ray.io/v1",
        "time": "2026-01-01T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }


def test_raycluster_cache_keeps_only_the_managers_of_replicas() -> None:
    rc = raycluster("rc", "ns")
    rc["metadata"]["managedFields"] = [
        # kubectl apply of the whole object: the atomic workerGroupSpecs list, replicas included.
        _entry(
            "kubectl-client-side-apply",
            {"f:metadata": {"f:labels": {}}, "f:spec": {"f:rayVersion": {}, "f:workerGroupSpecs": {}}},
        ),
        # The operator's status writes own no spec field.
        _entry("kuberay-operator", {"f:status": {"f:state": {}}}, operation="Update"),
        # A keyed list entry (were the list a map): only the scale fields are kept.
        _entry(
            "autoscaler",
            {
                "f:spec": {
                    "f:workerGroupSpecs": {
                        'k:{"groupName":"workers"}': {"f:replicas": {}, "f:template": {"f:spec": {}}}
                    }
                }
            },
        ),
        _entry(
            "someone",
            {"f:spec": {"f:workerGroupSpecs": {'k:{"groupName":"workers"}': {"f:template": {}}}}},
        ),
    ]
    cached = cached_fields.raycluster_transform(copy.deepcopy(rc))
    assert cached["spec"] == rc["spec"]
    assert cached_fields.replicas_managers(cached) == ["kubectl-client-side-apply", "autoscaler"]
    entries = cached["metadata"]["managedFields"]
    assert entries[0]["fieldsV1"] == {"f:spec": {"f:workerGroupSpecs": {}}}
    assert entries[1]["fieldsV1"] == {
        "f:spec": {"f:workerGroupSpecs": {'k:{"groupName":"workers"}': {"f:replicas": {}}}}
    }
    plain = cached_fields.raycluster_transform(raycluster("rc2", "ns"))
    assert "managedFields" not in plain["metadata"]
