"""RayWorkerGroup objects and the drain Pods of a safe scale-down (docs/scaling.md).

A RayWorkerGroup is named `<owner>-<group>`: the RayCluster's name for a cluster's own groups, the
RayService's for a service's (so it keeps its name when an upgrade replaces the cluster). A drain Pod runs
Ray's `ray drain-node` against the cluster's GCS, the way the Redis cleanup Job runs Ray code: built from
the head Pod (same image, environment, volumes, service account), so the operator itself needs no `ray`
package and no network path to the GCS.
"""

from __future__ import annotations

import copy
import hashlib
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from rayop.api import constants as C
from rayop.api import spec as RS
from rayop.api import workergroup as W
from rayop.base.objects import is_controlled_by, meta, owner_reference, spec_of
from rayop.base.types import Obj
from rayop.builders import cluster as cl

# Enough for `import ray` and one GCS call; never hold a GPU or the head's share of memory for it.
DRAIN_RESOURCES: Obj = {
    "limits": {"cpu": "500m", "memory": "512Mi"},
    "requests": {"cpu": "100m", "memory": "256Mi"},
}


def worker_group_name(owner_name: str, group: str) -> str:
    return f"{owner_name}-{group}"


def worker_selector(cluster_name: str, group: str) -> str:
    """The label selector of exactly one group's worker Pods (status.selector, for the HPA's metrics)."""
    return (
        f"{C.LABEL_CLUSTER}={cluster_name},{C.LABEL_GROUP}={group},{C.LABEL_NODE_TYPE}={C.NODE_TYPE_WORKER}"
    )


def build_worker_group(owner: Mapping[str, Any], group: Mapping[str, Any]) -> Obj:
    """The RayWorkerGroup of one group of a RayCluster or RayService, owned (and garbage-collected) with it,
    starting at the group's current replicas."""
    md = meta(owner)
    name = str(md.get("name") or "")
    gname = str(group.get("groupName") or "")
    service = owner.get("kind") == C.KIND_RAYSERVICE
    labels = {
        C.LABEL_GROUP: gname,
        C.LABEL_CREATED_BY: C.CREATED_BY_VALUE,
        C.LABEL_APP_NAME: C.APP_NAME_VALUE,
    }
    labels[C.LABEL_ORIGINATED_FROM_CR_NAME if service else C.LABEL_CLUSTER] = name
    if service:
        labels[C.LABEL_ORIGINATED_FROM_CRD] = C.KIND_RAYSERVICE
    return {
        "apiVersion": W.API_VERSION,
        "kind": W.KIND,
        "metadata": {
            "name": worker_group_name(name, gname),
            "namespace": str(md.get("namespace") or ""),
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "rayServiceName" if service else "rayClusterName": name,
            "groupName": gname,
            "replicas": RS.group_replicas(group),
        },
    }


def service_group_sizes(
    rayservice: Mapping[str, Any], worker_groups: Iterable[Mapping[str, Any]]
) -> dict[str, int]:
    """groupName -> replicas a new RayCluster of `rayservice` starts a group at: what the group's
    RayWorkerGroup (`<rayservice>-<group>`, among `worker_groups`) asks for, within the group's bounds in
    the RayService's spec. Groups Ray's autoscaler sizes are left out (their new cluster starts as the
    spec says, and Ray sizes it), and so are groups without a RayWorkerGroup."""
    name = str(meta(rayservice).get("name") or "")
    cspec = spec_of(rayservice).get("rayClusterConfig")
    if not isinstance(cspec, Mapping):
        return {}
    out: dict[str, int] = {}
    for rwg in worker_groups:
        spec = spec_of(rwg)
        gname = spec.get("groupName")
        replicas = spec.get("replicas")
        if spec.get("rayServiceName") != name or not isinstance(gname, str):
            continue
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            continue
        if meta(rwg).get("name") != worker_group_name(name, gname) or not is_controlled_by(rwg, rayservice):
            continue
        group = RS.worker_group(cspec, gname)
        if group is None or RS.scaled_by(cspec, group) == W.SCALED_BY_RAY_AUTOSCALER:
            continue
        out[gname] = RS.clamp_replicas(group, replicas)
    return out


def drain_pod_name(cluster_name: str, worker_pod: str, suffix: str) -> str:
    """A drain Pod's name: the worker Pod's digest and a fresh suffix, so a retry never reuses the name of
    a Pod still terminating; short enough to be a hostname (63 characters)."""
    digest = hashlib.sha1(worker_pod.encode()).hexdigest()[:8]
    return f"{cluster_name[:40]}-drain-{digest}-{suffix}"


def _drain_script(address: str, node_id: str, message: str) -> str:
    # `ray drain-node` exits 1 both when Ray refuses and when it cannot ask; the refusal gets its own code
    # so the operator can tell "busy" from "broken" without reading logs.
    cmd = shlex.join(
        [
            "ray",
            "drain-node",
            f"--address={address}",
            f"--node-id={node_id}",
            f"--reason={W.DRAIN_REASON_IDLE}",
            f"--reason-message={message}",
        ]
    )
    return (
        f'out=$({cmd} 2>&1); rc=$?; echo "$out"; '
        f"if [ $rc -ne 0 ] && printf '%s' \"$out\" | grep -q 'not accepted'; then exit {W.DRAIN_EXIT_REFUSED}; fi; "
        "exit $rc"
    )


def build_drain_pod(
    cluster: Mapping[str, Any],
    head_pod: Mapping[str, Any],
    owner: Mapping[str, Any],
    *,
    group: str,
    worker_pod: str,
    node_id: str,
    message: str,
    suffix: str,
    command: list[str] | None = None,
    cluster_domain: str = C.DEFAULT_CLUSTER_DOMAIN,
    deadline_seconds: int = 120,
) -> Obj:
    """A Pod that asks Ray to drain one worker node for idle termination, which the raylet accepts only
    while the node has no tasks, actors or primary object copies: exit 0 when Ray accepted,
    `DRAIN_EXIT_REFUSED` when it refused, anything else when it could not ask.

    `head_pod` is the head Pod as the builders make it (its image, environment with the Ray auth token,
    TLS volumes, service account and scheduling); `owner` is the RayWorkerGroup, so the Pod goes with it.
    `command` is the shell the Ray containers run under (KubeRay's `/bin/bash -c --`, or `-lc` with
    ENABLE_LOGIN_SHELL); `suffix` makes the name unique.
    """
    cmeta = meta(cluster)
    cname = str(cmeta.get("name") or "")
    spec = copy.deepcopy(dict(spec_of(head_pod)))
    ray = copy.deepcopy(spec["containers"][C.RAY_CONTAINER_INDEX])
    for key in ("ports", "livenessProbe", "startupProbe", "lifecycle", "workingDir"):
        ray.pop(key, None)
    head_params = (spec_of(cluster).get("headGroupSpec") or {}).get("rayStartParams") or {}
    address = f"{cl.fqdn_ray_ip(cluster, cluster_domain)}:{cl.head_port(head_params)}"
    ray["command"] = list(command or ["/bin/bash", "-c", "--"])
    ray["args"] = [_drain_script(address, node_id, message)]
    ray["resources"] = copy.deepcopy(DRAIN_RESOURCES)
    # Never ready: a Service that selects the cluster's Pods (the serve Service selects ray.io/cluster)
    # must not send this Pod traffic during its few seconds of life.
    ray["readinessProbe"] = {"exec": {"command": ["false"]}, "periodSeconds": 60}
    # On a kubelet, Ray's answer lands in the Pod's status when the drain fails.
    ray["terminationMessagePolicy"] = "FallbackToLogsOnError"
    spec["containers"] = [ray]
    # The head's init containers may download models or wait for storage: none of that is needed here.
    spec.pop("initContainers", None)
    for key in ("hostname", "subdomain"):
        spec.pop(key, None)
    spec["restartPolicy"] = "Never"
    spec["activeDeadlineSeconds"] = deadline_seconds
    spec["terminationGracePeriodSeconds"] = 5
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": drain_pod_name(cname, worker_pod, suffix),
            "namespace": str(cmeta.get("namespace") or ""),
            "labels": {
                C.LABEL_CLUSTER: cname,
                C.LABEL_GROUP: group,
                C.LABEL_NODE_TYPE: W.NODE_TYPE_DRAIN,
                C.LABEL_CREATED_BY: C.CREATED_BY_VALUE,
                C.LABEL_APP_NAME: C.APP_NAME_VALUE,
            },
            "annotations": {W.ANN_DRAIN_WORKER_POD: worker_pod, W.ANN_DRAIN_RAY_NODE_ID: node_id},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": spec,
    }
