"""Pure builders for RayService: its RayClusters, its head and serve Services, the Serve config it deploys.

Names, labels and annotations are KubeRay's (`ray-operator/controllers/ray/rayservice_controller.go`
constructRayClusterForRayService, `common/service.go` BuildHeadServiceForRayService and BuildServeService,
`utils/util.go` GenerateRayClusterName). What rayop adds is written under `rayop.io/` annotations; see
`rayop.controllers.rayservice_machine` for what they record.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import yaml

from rayop.api import constants as C
from rayop.base.objects import annotations_of, clone, labels_of, meta, name_of, namespace_of
from rayop.base.objects import owner_reference as base_owner_reference
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders.options import BuildOptions
from rayop.builders.service import build_head_service, service_ports

# Bumped when `cluster_spec_hash` changes how it hashes: a cluster stamped by another version (or by KubeRay,
# whose Go hash rayop cannot reproduce) is then refreshed in place, never replaced (KubeRay issue #2315).
HASH_VERSION: Final = "1"

# Annotations rayop keeps on a cluster across an in-place update (KubeRay replaces them all).
_KEPT_ANNOTATIONS: Final = (
    C.ANN_SERVE_CONFIG_HASH,
    C.ANN_DELETE_AFTER,
    C.ANN_TARGET_CAPACITY,
    C.ANN_SERVE_CONFIG,
)


class ServeConfigError(ValueError):
    """serveConfigV2 is not a YAML mapping, so there is nothing to PUT."""


# Names --------------------------------------------------------------------------------------------------


def cluster_name(rayservice: Mapping[str, Any], suffix: str) -> str:
    """GenerateRayClusterName: `<rayservice>-<5 random characters>`."""
    return f"{name_of(rayservice)}-{suffix}"


def head_service_name(rayservice: Mapping[str, Any]) -> str:
    """`<rayservice>-head-svc` (a RayService may not name its head Service: each cluster needs its own)."""
    return f"{name_of(rayservice)}-head-svc"


def serve_service_name(rayservice: Mapping[str, Any]) -> str:
    """`spec.serveService.metadata.name`, else `<rayservice>-serve-svc`."""
    custom = ((rayservice.get("spec") or {}).get("serveService") or {}).get("metadata") or {}
    return str(custom.get("name") or f"{name_of(rayservice)}-serve-svc")


def owner_reference(rayservice: Mapping[str, Any]) -> Obj:
    return base_owner_reference(rayservice, api_version=C.API_VERSION, kind=C.KIND_RAYSERVICE)


def originated_labels(rayservice: Mapping[str, Any]) -> dict[str, str]:
    """The labels that tie a RayCluster (or Service) to the RayService it was made for."""
    return {
        C.LABEL_ORIGINATED_FROM_CR_NAME: name_of(rayservice),
        C.LABEL_ORIGINATED_FROM_CRD: C.KIND_RAYSERVICE,
    }


# The goal cluster ---------------------------------------------------------------------------------------


def cluster_spec_hash(spec: Mapping[str, Any]) -> str:
    """The RayCluster spec hash a RayService compares: SHA-1, base32hex, of the spec without what changes
    with no new cluster needed: each worker group's replicas, min/max and workersToDelete (the autoscaler's),
    tolerations and schedulingGates (Kueue's), `upgradeStrategy` and `suspend`.

    rayop hashes sorted-key JSON (KubeRay hashes Go's struct order), so the value is only compared with
    hashes rayop stamped; `HASH_VERSION` marks them.
    """
    blanked = cl._blank_for_hash(spec)
    blanked.pop("suspend", None)
    for group in blanked.get("workerGroupSpecs") or []:
        # Go always writes the (struct) scaleStrategy, so `{}` and absent hash alike there; here they must
        # too, or the autoscaler's first workersToDelete patch would look like a spec change.
        if isinstance(group, dict) and group.get("scaleStrategy") == {}:
            del group["scaleStrategy"]
    blob = json.dumps(blanked, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return base64.b32hexencode(hashlib.sha1(blob.encode(), usedforsecurity=False).digest()).decode()


def goal_spec(rayservice: Mapping[str, Any]) -> Obj:
    spec: Obj = clone(dict((rayservice.get("spec") or {}).get("rayClusterConfig") or {}))
    return spec


def goal_hash(rayservice: Mapping[str, Any]) -> str:
    return cluster_spec_hash(goal_spec(rayservice))


def prefix_hash(rayservice: Mapping[str, Any], groups: int) -> str | None:
    """The goal hash over only the first `groups` worker groups; None when the goal has fewer (then no
    prefix of it can match a cluster with that many groups)."""
    spec = goal_spec(rayservice)
    wanted = spec.get("workerGroupSpecs") or []
    if len(wanted) < groups:
        return None
    spec["workerGroupSpecs"] = list(wanted[:groups])
    return cluster_spec_hash(spec)


def build_cluster(
    rayservice: Mapping[str, Any],
    name: str,
    *,
    kuberay_version: str = C.KUBERAY_VERSION,
    sizes: Mapping[str, int] | None = None,
    unset_replicas: bool = False,
) -> Obj:
    """constructRayClusterForRayService: the RayService's labels and annotations, plus where it came from
    and the hashes the next reconciles compare; the spec is `spec.rayClusterConfig` as written, except
    that a group named in `sizes` (groupName -> replicas: what its RayWorkerGroup was scaled to, see
    rayop.builders.workergroup.service_group_sizes) starts at that size. Replicas are not hashed, so
    the size never makes a cluster look changed. With `unset_replicas` (the new cluster of an
    incremental upgrade) no worker group says how many replicas it wants: each starts at its minimum
    and Ray's autoscaler grows it as `target_capacity` rises."""
    spec = goal_spec(rayservice)
    for group in spec.get("workerGroupSpecs") or []:
        if isinstance(group, dict) and sizes and group.get("groupName") in sizes:
            group["replicas"] = sizes[str(group["groupName"])]
    labels = {str(k): str(v) for k, v in labels_of(rayservice).items()}
    labels.update(originated_labels(rayservice))
    annotations = {str(k): str(v) for k, v in annotations_of(rayservice).items()}
    annotations[C.ANN_HASH_WITHOUT_REPLICAS] = cluster_spec_hash(spec)
    annotations[C.ANN_NUM_WORKER_GROUPS] = str(len(spec.get("workerGroupSpecs") or []))
    annotations[C.ANN_KUBERAY_VERSION] = kuberay_version
    annotations[C.ANN_HASH_VERSION] = HASH_VERSION
    # rayop's own records belong to the cluster, never to the RayService they were copied from.
    for key in _KEPT_ANNOTATIONS:
        annotations.pop(key, None)
    if unset_replicas:
        for group in spec.get("workerGroupSpecs") or []:
            if isinstance(group, dict):
                group.pop("replicas", None)
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND_RAYCLUSTER,
        "metadata": {
            "name": name,
            "namespace": namespace_of(rayservice),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(rayservice)],
        },
        "spec": spec,
    }


def updated_cluster(
    current: Mapping[str, Any],
    rayservice: Mapping[str, Any],
    *,
    kuberay_version: str = C.KUBERAY_VERSION,
    sizes: Mapping[str, int] | None = None,
) -> Obj:
    """The in-place update of `current` (modifyRayCluster): the goal spec, labels and annotations, keeping
    the cluster's `suspend`, rayop's records about the cluster, and the replicas and workersToDelete of
    the groups that already exist when Ray's autoscaler sizes them or a RayWorkerGroup does (a group in
    `sizes`; KubeRay overwrites them). A new group in `sizes` starts at that size."""
    goal = build_cluster(rayservice, name_of(current), kuberay_version=kuberay_version, sizes=sizes)
    out: Obj = clone(dict(current))
    have_spec = current.get("spec") or {}
    spec = goal["spec"]
    if "suspend" in have_spec:
        spec["suspend"] = have_spec["suspend"]
    else:
        spec.pop("suspend", None)
    autoscaled = cl.is_autoscaling_enabled(current)
    if autoscaled or sizes:
        have_groups = {
            g.get("groupName"): g for g in have_spec.get("workerGroupSpecs") or [] if isinstance(g, dict)
        }
        for group in spec.get("workerGroupSpecs") or []:
            live = have_groups.get(group.get("groupName"))
            if live is None or not (autoscaled or group.get("groupName") in (sizes or {})):
                continue
            if "replicas" in live:
                group["replicas"] = live["replicas"]
            live_delete = (live.get("scaleStrategy") or {}).get("workersToDelete")
            if live_delete:
                group.setdefault("scaleStrategy", {})["workersToDelete"] = copy.deepcopy(live_delete)
    out["spec"] = spec
    md = out.setdefault("metadata", {})
    md["labels"] = goal["metadata"]["labels"]
    annotations = dict(goal["metadata"]["annotations"])
    for key in _KEPT_ANNOTATIONS:
        if key in annotations_of(current):
            annotations[key] = str(annotations_of(current)[key])
    md["annotations"] = annotations
    return out


# Services -----------------------------------------------------------------------------------------------


def build_head_service_for(
    rayservice: Mapping[str, Any], cluster: Mapping[str, Any], opts: BuildOptions | None = None
) -> Obj:
    """BuildHeadServiceForRayService: the cluster's head Service (selector, ports, type, headless unless
    ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE) under the RayService's name and labels, owned by the RayService."""
    svc = build_head_service(cluster, opts)
    rs_name = name_of(rayservice)
    md: Obj = {
        "name": head_service_name(rayservice),
        "namespace": namespace_of(rayservice),
        "labels": {
            **originated_labels(rayservice),
            C.LABEL_NODE_TYPE: C.NODE_TYPE_HEAD,
            C.LABEL_IDENTIFIER: cl.check_label(f"{rs_name}-{C.NODE_TYPE_HEAD}"),
        },
        "ownerReferences": [owner_reference(rayservice)],
    }
    if (svc.get("metadata") or {}).get("annotations"):
        md["annotations"] = dict(svc["metadata"]["annotations"])
    svc["metadata"] = md
    return svc


def _serve_ports(ports: Mapping[str, int]) -> list[Obj]:
    return [
        {"name": name, "port": number}
        for name, number in sorted(ports.items())
        if name == C.PORT_NAME_SERVE or name.startswith(f"{C.PORT_NAME_SERVE}-")
    ]


def build_serve_service(rayservice: Mapping[str, Any], cluster: Mapping[str, Any]) -> Obj:
    """BuildServeService for a RayService: selects the cluster's pods labelled `ray.io/serve=true` on the
    head container's `serve` ports. `spec.serveService` customises it, but the selector is always ours.

    Raises ServeConfigError when no port named `serve` exists anywhere (KubeRay's error text)."""
    spec = rayservice.get("spec") or {}
    rs_name = name_of(rayservice)
    labels = {
        **originated_labels(rayservice),
        C.LABEL_SERVE: f"{rs_name}-serve",
    }
    selector = {C.LABEL_CLUSTER: name_of(cluster), C.LABEL_SERVE: "true"}
    service_type = ((spec.get("rayClusterConfig") or {}).get("headGroupSpec") or {}).get("serviceType")
    head_ports = _head_container_ports(cluster)
    ports = _serve_ports(service_ports(cluster))
    custom = spec.get("serveService")
    if isinstance(custom, Mapping):
        svc: Obj = clone(dict(custom))
        svc_spec = svc.setdefault("spec", {})
        svc_spec["selector"] = selector
        serve_in_head = any(
            n == C.PORT_NAME_SERVE or n.startswith(f"{C.PORT_NAME_SERVE}-") for n in head_ports
        )
        if not (serve_in_head and ports):
            user = [
                {"name": p["name"], "port": p["port"]}
                for p in svc_spec.get("ports") or []
                if isinstance(p, Mapping) and p.get("name") == C.PORT_NAME_SERVE
            ][:1]
            if user:
                ports = user
            elif not ports:
                raise ServeConfigError(
                    "Please specify the port named 'serve' in the Ray head container or in "
                    "RayService.Spec.ServeService"
                )
        svc_spec["ports"] = ports
        md = svc.setdefault("metadata", {})
        md["labels"] = {**(md.get("labels") or {}), **labels}
        md["name"] = md.get("name") or serve_service_name(rayservice)
        md["namespace"] = namespace_of(rayservice)
        md["ownerReferences"] = [owner_reference(rayservice)]
        if not svc_spec.get("type") and service_type:
            svc_spec["type"] = service_type
        svc.setdefault("apiVersion", "v1")
        svc.setdefault("kind", "Service")
        return svc
    if not ports:
        raise ServeConfigError(
            "Please specify the port named 'serve' in the Ray head container; otherwise, the Kubernetes "
            "service for Ray Serve will not be created."
        )
    out_spec: Obj = {"selector": selector, "ports": ports}
    if service_type:
        out_spec["type"] = service_type
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": serve_service_name(rayservice),
            "namespace": namespace_of(rayservice),
            "labels": labels,
            "ownerReferences": [owner_reference(rayservice)],
        },
        "spec": out_spec,
    }


def service_cluster(service: Mapping[str, Any] | None) -> str:
    """The RayCluster a RayService Service points at (its `ray.io/cluster` selector), "" for none."""
    return str((((service or {}).get("spec") or {}).get("selector") or {}).get(C.LABEL_CLUSTER) or "")


def switched_service_spec(have: Mapping[str, Any], want: Mapping[str, Any]) -> Obj:
    """The spec to write when a Service moves to another cluster: the new one, keeping the allocated
    ClusterIP(s), which are immutable."""
    spec: Obj = clone(dict(want.get("spec") or {}))
    have_spec = have.get("spec") or {}
    for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        if have_spec.get(key) is not None:
            spec[key] = copy.deepcopy(have_spec[key])
    return spec


# Ports of the cluster's pods ------------------------------------------------------------------------------


def _head_container_ports(cluster: Mapping[str, Any]) -> dict[str, int]:
    containers = (
        (((cluster.get("spec") or {}).get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    ).get("containers") or []
    out: dict[str, int] = {}
    if containers and isinstance(containers[0], Mapping):
        for p in containers[0].get("ports") or []:
            if isinstance(p, Mapping) and p.get("name"):
                out[str(p["name"])] = cl.as_int(p.get("containerPort"))
    return out


def container_port(pod: Mapping[str, Any], name: str, default: int) -> int:
    """The Ray container's port called `name` (utils.FindContainerPort), else `default`."""
    containers = ((pod.get("spec") or {}).get("containers") or [{}])[:1]
    for p in (containers[0] if containers else {}).get("ports") or []:
        if isinstance(p, Mapping) and p.get("name") == name and p.get("containerPort"):
            return cl.as_int(p["containerPort"], default)
    return default


def serve_port(pod: Mapping[str, Any]) -> int:
    return container_port(pod, C.PORT_NAME_SERVE, C.PORT_SERVE)


def metrics_port(pod: Mapping[str, Any]) -> int:
    """Where the pod's Ray node exports Prometheus metrics: `--metrics-export-port`, which the pod
    builder sets to the `metrics` port (8080) unless rayStartParams says otherwise."""
    for c in ((pod.get("spec") or {}).get("containers") or [])[:1]:
        for e in c.get("env") or []:
            if e.get("name") == C.ENV_KUBERAY_GEN_RAY_START_CMD:
                for word in str(e.get("value") or "").split():
                    if word.startswith("--metrics-export-port="):
                        return cl.as_int(word.split("=", 1)[1], C.PORT_METRICS)
    return container_port(pod, C.PORT_NAME_METRICS, C.PORT_METRICS)


# The Serve config -----------------------------------------------------------------------------------------


def serve_config(text: str, target_capacity: int | None = None) -> Obj:
    """serveConfigV2 (YAML) as the JSON object PUT /api/serve/applications/ takes; with a
    `target_capacity` (the incremental upgrade), that top-level field set to it."""
    try:
        value = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as e:
        raise ServeConfigError(f"serveConfigV2 is not valid YAML: {str(e).splitlines()[0]}") from e
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ServeConfigError(f"serveConfigV2 must be a YAML mapping, got {type(value).__name__}")
    # Through JSON once, so what is PUT is exactly what a JSON encoder accepts (dates become strings).
    out: Obj = json.loads(json.dumps(value, default=str))
    if target_capacity is not None:
        out["target_capacity"] = target_capacity
    return out


def serve_config_hash(text: str, target_capacity: int | None = None) -> str:
    """What rayop records on a cluster after a successful PUT (KubeRay keeps the string in memory): the
    config text, and the target_capacity it was applied with, if any."""
    blob = text if target_capacity is None else f"{text}\x00target_capacity={target_capacity}"
    return base64.b32hexencode(hashlib.sha1(blob.encode(), usedforsecurity=False).digest()).decode()


def pods_head(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for p in pods:
        if labels_of(p).get(C.LABEL_NODE_TYPE) == C.NODE_TYPE_HEAD and not meta(p).get("deletionTimestamp"):
            return p
    return None
