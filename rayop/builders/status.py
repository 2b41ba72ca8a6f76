"""RayCluster status as KubeRay's `calculateStatus` computes it, and its rule for when a write is worth it
(`ray-operator/controllers/ray/raycluster_controller.go`, `utils/consistency.go`;
docs/compatibility.md#raycluster-status)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rayop.api import constants as C
from rayop.api import features
from rayop.base.objects import clone
from rayop.base.times import format_time as base_format_time
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders.pod import is_gpu_resource_key
from rayop.builders.quantity import Quantity, QuantityError, canonical, parse_quantity

REASON_ALL_PODS_READY_FIRST_TIME = "AllPodRunningAndReadyFirstTime"
REASON_PODS_PROVISIONING = "RayClusterPodsProvisioning"
REASON_HEAD_POD_NOT_FOUND = "HeadPodNotFound"
REASON_HEAD_POD_RUNNING_AND_READY = "HeadPodRunningAndReady"
REASON_UNKNOWN = "Unknown"
TPU_RESOURCE = "google.com/tpu"


def format_time(now: datetime | str) -> str:
    """metav1.Time: RFC 3339 in UTC with second precision."""
    return now if isinstance(now, str) else base_format_time(now)


def _d(value: Any) -> Mapping[str, Any]:
    """A mapping field, or empty when a malformed object has something else there (status must not fail)."""
    return value if isinstance(value, Mapping) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# Conditions (apimachinery meta.SetStatusCondition semantics) -----------------------------------------------


def find_condition(conditions: list[Obj], ctype: str) -> Obj | None:
    return next((c for c in conditions if c.get("type") == ctype), None)


def is_condition_true(conditions: list[Obj], ctype: str) -> bool:
    c = find_condition(conditions, ctype)
    return c is not None and c.get("status") == "True"


def set_condition(
    conditions: list[Obj], ctype: str, status: str, reason: str, message: str, now: str
) -> None:
    """Append a new condition, or update in place; lastTransitionTime moves only when the status flips."""
    existing = find_condition(conditions, ctype)
    if existing is None:
        conditions.append(
            {"type": ctype, "status": status, "reason": reason, "message": message, "lastTransitionTime": now}
        )
        return
    if existing.get("status") != status:
        existing["status"] = status
        existing["lastTransitionTime"] = now
    existing["reason"] = reason
    existing["message"] = message
    # KubeRay never sets a condition's observedGeneration, so SetStatusCondition resets it to zero (omitted).
    existing.pop("observedGeneration", None)


def remove_condition(conditions: list[Obj], ctype: str) -> None:
    conditions[:] = [c for c in conditions if c.get("type") != ctype]


# Pod predicates ------------------------------------------------------------------------------------------------


def _labels(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return (pod.get("metadata") or {}).get("labels") or {}


def _phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase", ""))


def _pod_conditions(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((pod.get("status") or {}).get("conditions") or [])


def is_running_and_ready(pod: Mapping[str, Any]) -> bool:
    if _phase(pod) != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in _pod_conditions(pod))


def all_pods_running(pods: Sequence[Mapping[str, Any]]) -> bool:
    """KubeRay's CheckAllPodsRunning: non-empty, all Running, and no Ready condition that is not True.

    A Running pod without any Ready condition passes, exactly as in KubeRay.
    """
    if not pods:
        return False
    for pod in pods:
        if _phase(pod) != "Running":
            return False
        for cond in _pod_conditions(pod):
            if cond.get("type") == "Ready" and cond.get("status") != "True":
                return False
    return True


def head_pod_ready_condition(head_pod: Mapping[str, Any]) -> tuple[str, str, str]:
    """(status, reason, message) of HeadPodReady from the head pod's PodReady condition."""
    status, reason, message = "False", REASON_UNKNOWN, ""
    for cond in _pod_conditions(head_pod):
        if cond.get("type") != "Ready":
            continue
        status = str(cond.get("status") or "False")
        message = str(cond.get("message") or "")
        r = str(cond.get("reason") or "")
        if status == "True" and not r:
            r = REASON_HEAD_POD_RUNNING_AND_READY
        if r:
            reason = r
        if r == "ContainersNotReady":
            # "containers with unready status" says little; the waiting reason (CrashLoopBackOff,
            # ImagePullBackOff...) is what a user needs to see.
            for cs in (head_pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason"):
                    reason = str(waiting["reason"])
                    message = str(waiting.get("message") or message)
                    break
        break
    return status, reason, message


# Resources -----------------------------------------------------------------------------------------------------


def _q(value: Any) -> Quantity | None:
    try:
        return parse_quantity(value)
    except QuantityError:
        return None


def _add(total: dict[str, Quantity], name: str, q: Quantity) -> None:
    total[name] = total[name] + q if name in total else q


def pod_resources(pod_spec: Mapping[str, Any]) -> dict[str, Quantity]:
    """Requests, with limits filling the names that have no request, summed over the template's containers."""
    total: dict[str, Quantity] = {}
    for container in _l(pod_spec.get("containers")):
        resources = _d(_d(container).get("resources"))
        merged: dict[str, Any] = dict(_d(resources.get("requests")))
        for name, value in _d(resources.get("limits")).items():
            merged.setdefault(name, value)
        for name, value in merged.items():
            q = _q(value)
            if q is not None:
                _add(total, str(name), q)
    return total


def desired_resources(cluster: Mapping[str, Any]) -> dict[str, Quantity]:
    spec = _d(cluster.get("spec"))
    total: dict[str, Quantity] = {}
    head_spec = _d(_d(_d(spec.get("headGroupSpec")).get("template")).get("spec"))
    for name, q in pod_resources(head_spec).items():
        _add(total, name, q)
    for group in _groups(spec):
        if group.get("suspend") is True:
            continue
        # KubeRay multiplies by the raw `replicas` (not clamped) times numOfHosts.
        count = cl.as_int(group.get("replicas")) * cl.num_of_hosts(group)
        if count <= 0:
            continue
        for name, q in pod_resources(_d(_d(group.get("template")).get("spec"))).items():
            _add(total, name, q * count)
    return total


def _groups(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [g for g in _l(spec.get("workerGroupSpecs")) if isinstance(g, Mapping)]


def _sum_gpus(total: Mapping[str, Quantity]) -> Quantity:
    # Go starts from an empty Quantity, whose format canonicalizes as DecimalExponent.
    acc = Quantity(parse_quantity(0).value, "DecimalExponent")
    for name in sorted(total):
        if is_gpu_resource_key(name) and not total[name].is_zero():
            acc = acc + total[name]
    return acc


def _cap32(n: int) -> int:
    return min(n, cl.MAX_INT32)


# calculate_status ----------------------------------------------------------------------------------------------


def calculate_status(
    cluster: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    head_service: Mapping[str, Any] | None,
    *,
    reconcile_error: BaseException | str | None,
    now: datetime | str,
    gates: Mapping[str, bool] | None = None,
    replica_failure_reason: str | None = None,
) -> Obj:
    """The new `.status` for `cluster` given its pods and head Service.

    `replica_failure_reason` (or a `reason` attribute on `reconcile_error`) is the KubeRay reason of a pod
    create/delete failure (FailedCreateWorkerPod...); other errors leave ReplicaFailure untouched, as in KubeRay.
    When several head pods exist KubeRay skips the status write; rayop reports on the first by name.
    """
    ts = format_time(now)
    resolved = features.resolve_gates(gates)
    conditions_on = resolved.get(features.RAY_CLUSTER_STATUS_CONDITIONS, True)
    spec = _d(cluster.get("spec"))
    meta = _d(cluster.get("metadata"))
    old: Mapping[str, Any] = _d(cluster.get("status"))
    new: Obj = clone(dict(old))
    conditions: list[Obj] = clone(list(old.get("conditions") or []))

    if conditions_on:
        if reconcile_error is not None:
            reason = replica_failure_reason or str(getattr(reconcile_error, "reason", "") or "")
            if reason:
                set_condition(conditions, C.COND_REPLICA_FAILURE, "True", reason, str(reconcile_error), ts)
        else:
            remove_condition(conditions, C.COND_REPLICA_FAILURE)

    generation = cl.as_int(meta.get("generation"))
    _set_or_drop(new, "observedGeneration", generation)

    workers = [p for p in pods if _labels(p).get(C.LABEL_NODE_TYPE) == C.NODE_TYPE_WORKER]
    groups = _groups(spec)
    desired = _cap32(sum(cl.desired_worker_replicas(g) for g in groups))
    _set_or_drop(new, "readyWorkerReplicas", sum(1 for p in workers if is_running_and_ready(p)))
    _set_or_drop(new, "availableWorkerReplicas", sum(1 for p in workers if _phase(p) == "Running"))
    _set_or_drop(new, "desiredWorkerReplicas", desired)
    active = [g for g in groups if g.get("suspend") is not True]
    _set_or_drop(
        new,
        "minWorkerReplicas",
        _cap32(sum(cl.as_int(g.get("minReplicas")) * cl.num_of_hosts(g) for g in active)),
    )
    _set_or_drop(
        new,
        "maxWorkerReplicas",
        _cap32(sum(cl.as_int(g.get("maxReplicas"), cl.MAX_INT32) * cl.num_of_hosts(g) for g in active)),
    )

    totals = desired_resources(cluster)
    zero = parse_quantity(0)
    new["desiredCPU"] = canonical(totals.get("cpu", zero))
    new["desiredMemory"] = canonical(totals.get("memory", zero))
    new["desiredGPU"] = canonical(_sum_gpus(totals))
    new["desiredTPU"] = canonical(totals.get(TPU_RESOURCE, zero))

    if reconcile_error is None and len(pods) == desired + 1 and all_pods_running(pods):
        new["state"] = C.STATE_READY
        new.pop("reason", None)

    heads = sorted(
        (p for p in pods if _labels(p).get(C.LABEL_NODE_TYPE) == C.NODE_TYPE_HEAD),
        key=lambda p: str((p.get("metadata") or {}).get("name", "")),
    )
    head_pod = heads[0] if heads else None

    if conditions_on:
        if head_pod is None:
            set_condition(
                conditions,
                C.COND_HEAD_POD_READY,
                "False",
                REASON_HEAD_POD_NOT_FOUND,
                "Head Pod not found",
                ts,
            )
        else:
            status, reason, message = head_pod_ready_condition(head_pod)
            set_condition(conditions, C.COND_HEAD_POD_READY, status, reason, message, ts)

        suspend_status = _suspend_status(conditions)
        if not is_condition_true(conditions, C.COND_PROVISIONED) and suspend_status != C.COND_SUSPENDED:
            # Sticky: once all pods were ready the first time, only a suspension resets it.
            if all_pods_running(pods):
                set_condition(
                    conditions,
                    C.COND_PROVISIONED,
                    "True",
                    REASON_ALL_PODS_READY_FIRST_TIME,
                    "All Ray Pods are ready for the first time",
                    ts,
                )
            else:
                set_condition(
                    conditions,
                    C.COND_PROVISIONED,
                    "False",
                    REASON_PODS_PROVISIONING,
                    "RayCluster Pods are being provisioned for first time",
                    ts,
                )

        suspend = spec.get("suspend") is True
        if suspend_status == C.COND_SUSPENDING:
            if not pods:
                set_condition(
                    conditions,
                    C.COND_PROVISIONED,
                    "False",
                    REASON_PODS_PROVISIONING,
                    "RayCluster has been suspended",
                    ts,
                )
                set_condition(conditions, C.COND_SUSPENDING, "False", C.COND_SUSPENDING, "", ts)
                set_condition(conditions, C.COND_SUSPENDED, "True", C.COND_SUSPENDED, "", ts)
        elif suspend_status == C.COND_SUSPENDED:
            # KubeRay resumes only on an explicit `suspend: false`; rayop also resumes when the field is removed,
            # which KubeRay would leave suspended forever.
            if not suspend:
                set_condition(conditions, C.COND_SUSPENDED, "False", C.COND_SUSPENDED, "", ts)
        else:
            set_condition(conditions, C.COND_SUSPENDED, "False", C.COND_SUSPENDED, "", ts)
            set_condition(
                conditions, C.COND_SUSPENDING, "True" if suspend else "False", C.COND_SUSPENDING, "", ts
            )

    if spec.get("suspend") is True and not pods:
        new["state"] = C.STATE_SUSPENDED

    if head_service is not None:
        endpoints = dict(new.get("endpoints") or {})
        for port in (head_service.get("spec") or {}).get("ports") or []:
            name = str(port.get("name", ""))
            target = port.get("targetPort")
            if port.get("nodePort"):
                endpoints[name] = str(port["nodePort"])
            elif isinstance(target, int) and target != 0:
                endpoints[name] = str(target)
            elif isinstance(target, str) and target:
                endpoints[name] = target
        if endpoints:
            new["endpoints"] = endpoints

    head: Obj = {}
    if head_pod is not None:
        pod_ip = str((head_pod.get("status") or {}).get("podIP") or "")
        if pod_ip:
            head["podIP"] = pod_ip
        head["podName"] = str((head_pod.get("metadata") or {}).get("name", ""))
    if head_service is not None:
        cluster_ip = str((head_service.get("spec") or {}).get("clusterIP") or "")
        if cluster_ip == "None":
            # Headless: clients reach the head pod directly.
            cluster_ip = head.get("podIP", "")
        if cluster_ip:
            head["serviceIP"] = cluster_ip
        head["serviceName"] = str((head_service.get("metadata") or {}).get("name", ""))
    new["head"] = {k: v for k, v in head.items() if v}

    if conditions:
        new["conditions"] = conditions
    else:
        new.pop("conditions", None)

    new["lastUpdateTime"] = ts
    if old.get("state") != new.get("state") and new.get("state"):
        transitions = dict(new.get("stateTransitionTimes") or {})
        transitions[new["state"]] = ts
        new["stateTransitionTimes"] = transitions
    return new


def _set_or_drop(status: Obj, key: str, value: int) -> None:
    # Go's omitempty drops zero counters; keeping the same shape makes old/new comparisons trivial.
    if value:
        status[key] = value
    else:
        status.pop(key, None)


def _suspend_status(conditions: list[Obj]) -> str:
    for c in conditions:
        if c.get("type") in (C.COND_SUSPENDING, C.COND_SUSPENDED) and c.get("status") == "True":
            return str(c["type"])
    return ""


# status_changed -------------------------------------------------------------------------------------------------

_COUNTERS = (
    "readyWorkerReplicas",
    "availableWorkerReplicas",
    "desiredWorkerReplicas",
    "minWorkerReplicas",
    "maxWorkerReplicas",
)


def status_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """KubeRay's InconsistentRayClusterStatus: only state, reason, worker counters, endpoints, head info and
    conditions count. lastUpdateTime, observedGeneration and the desired* quantities alone never cause a write,
    which keeps a steady cluster from rewriting its status every reconcile."""
    o, n = old or {}, new or {}
    if (o.get("state") or "") != (n.get("state") or "") or (o.get("reason") or "") != (n.get("reason") or ""):
        return True
    if any(cl.as_int(o.get(k)) != cl.as_int(n.get(k)) for k in _COUNTERS):
        return True
    if dict(o.get("endpoints") or {}) != dict(n.get("endpoints") or {}):
        return True
    if _clean(o.get("head")) != _clean(n.get("head")):
        return True
    return _norm_conditions(o.get("conditions")) != _norm_conditions(n.get("conditions"))


# What changes while a cluster's Pods come up one by one, without a change of its state.
_PROGRESS_COUNTERS = ("readyWorkerReplicas", "availableWorkerReplicas")


def _workers_all_ready(st: Mapping[str, Any]) -> bool:
    return cl.as_int(st.get("readyWorkerReplicas")) >= cl.as_int(st.get("desiredWorkerReplicas"))


def only_progress_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """Whether the status-relevant difference (see status_changed) is only progress: ready and available
    worker counts, the head's IP and names, endpoints, and the HeadPodReady condition. A writer may batch
    such changes; any other difference (state, reason, desired counts, suspension, a failure), a first
    status, or the ready workers reaching the desired count (the end of a scale-up, which `kubectl wait`
    and scripts watch for while the state stays `ready`) is news."""
    o, n = old or {}, new or {}
    if not o:
        return False
    if _workers_all_ready(n) and not _workers_all_ready(o):
        return False
    if (o.get("state") or "") != (n.get("state") or "") or (o.get("reason") or "") != (n.get("reason") or ""):
        return False
    if any(cl.as_int(o.get(k)) != cl.as_int(n.get(k)) for k in _COUNTERS if k not in _PROGRESS_COUNTERS):
        return False

    def others(conds: Any) -> list[dict[str, Any]]:
        return [c for c in _norm_conditions(conds) if c.get("type") != C.COND_HEAD_POD_READY]

    return others(o.get("conditions")) == others(n.get("conditions"))


def _clean(d: Any) -> dict[str, Any]:
    return {k: v for k, v in (d or {}).items() if v not in (None, "")}


def _norm_conditions(conds: Any) -> list[dict[str, Any]]:
    out = []
    for c in conds or []:
        item = {k: v for k, v in dict(c).items() if not (k == "observedGeneration" and not v)}
        item.setdefault("message", "")
        item.setdefault("reason", "")
        out.append(item)
    return out
