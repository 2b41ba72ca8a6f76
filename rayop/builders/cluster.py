"""Pure helpers over a RayCluster dict that the reconciler and the other builders share.

Names, limits and rules follow KubeRay's `ray-operator/controllers/ray/utils/util.go` (see
docs/compatibility.md#names-labels-and-annotations and docs/compatibility.md#pods).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from rayop.api import constants as C
from rayop.api import spec as RS
from rayop.base.objects import annotations_of, clone, meta, spec_of
from rayop.base.objects import owner_reference as base_owner_reference
from rayop.base.types import Obj
from rayop.builders.quantity import Quantity, QuantityError, canonical, parse_quantity

__all__ = [
    "Quantity",
    "QuantityError",
    "autoscaler_version",
    "canonical",
    "check_label",
    "check_name",
    "child_metadata",
    "cluster_hash_without_replicas",
    "desired_worker_replicas",
    "fqdn_ray_ip",
    "gcs_ft_backend",
    "gcs_ft_enabled",
    "head_port",
    "head_service_name",
    "is_auth_enabled",
    "is_autoscaling_enabled",
    "is_k8s_auth_enabled",
    "num_of_hosts",
    "owner_reference",
    "parse_quantity",
    "pod_name",
    "should_delete_pod",
    "upgrade_recreate_hash",
]

MAX_INT32 = 2**31 - 1
_POD_PREFIX_MAX = 50  # 63 - len("-worker-") - 5 random characters


# Names ------------------------------------------------------------------------------------------------


def check_name(s: str) -> str:
    """KubeRay's CheckName: keep the last 50 characters, and never start with a digit or punctuation."""
    if len(s) > _POD_PREFIX_MAX:
        s = s[len(s) - _POD_PREFIX_MAX :]
    if s and s[0].isdigit():
        s = "r" + s[1:]
    if s and _is_punct(s[0]):
        s = "r" + s[1:]
    return s


def check_label(s: str) -> str:
    """KubeRay's CheckLabel: keep the last 63 characters, and never start with punctuation."""
    if len(s) > 63:
        s = s[len(s) - 63 :]
    if s and _is_punct(s[0]):
        s = "r" + s[1:]
    return s


def _is_punct(ch: str) -> bool:
    # Go's unicode.IsPunct on ASCII: these characters (not symbols such as $ + < = > ^ ` | ~).
    return ch in "!\"#%&'()*,-./:;?@[\\]_{}"


def pod_name(prefix: str, node_type: str, *, generate: bool) -> str:
    """KubeRay's PodName: prefix cut to 50 characters, `-<type>`, lower-cased, `-` appended for generateName."""
    result = (prefix[:_POD_PREFIX_MAX] + "-" + node_type).lower()
    return result + "-" if generate else result


def head_service_name(cluster: Mapping[str, Any]) -> str:
    custom = ((spec_of(cluster).get("headGroupSpec") or {}).get("headService") or {}).get("metadata") or {}
    if custom.get("name"):
        return str(custom["name"])
    return f"{meta(cluster).get('name', '')}-head-svc"


def fqdn_ray_ip(cluster: Mapping[str, Any], cluster_domain: str = C.DEFAULT_CLUSTER_DOMAIN) -> str:
    return f"{head_service_name(cluster)}.{meta(cluster).get('namespace', '')}.svc.{cluster_domain}"


def head_port(ray_start_params: Mapping[str, Any] | None) -> str:
    """The GCS port workers dial: `rayStartParams.port`, else 6379."""
    if ray_start_params and "port" in ray_start_params:
        return str(ray_start_params["port"])
    return str(C.PORT_GCS)


def child_metadata(cluster: Mapping[str, Any], name: str) -> Obj:
    """Metadata of an object the operator makes for a RayCluster (ServiceAccount, Role, RoleBinding, auth
    Secret): in its namespace, labelled with its name and KubeRay's app labels, owned by it."""
    return {
        "name": name,
        "namespace": meta(cluster).get("namespace", ""),
        "labels": {
            C.LABEL_CLUSTER: meta(cluster).get("name", ""),
            C.LABEL_APP_NAME: C.APP_NAME_VALUE,
            C.LABEL_CREATED_BY: C.CREATED_BY_VALUE,
        },
        "ownerReferences": [owner_reference(cluster)],
    }


def owner_reference(cluster: Mapping[str, Any]) -> Obj:
    return base_owner_reference(cluster, api_version=C.API_VERSION, kind=C.KIND_RAYCLUSTER)


# Feature switches ---------------------------------------------------------------------------------------


# Each reads the cluster's spec (and annotations) through rayop.api.spec, the one copy of these rules.


def is_autoscaling_enabled(cluster: Mapping[str, Any]) -> bool:
    return RS.autoscaling_enabled(spec_of(cluster))


def autoscaler_version(cluster: Mapping[str, Any]) -> str | None:
    """`v1`, `v2`, or None when unset (then Ray decides; KubeRay injects nothing)."""
    return RS.autoscaler_version(spec_of(cluster))


def gcs_ft_enabled(cluster: Mapping[str, Any]) -> bool:
    return RS.gcs_ft_enabled(spec_of(cluster), annotations_of(cluster))


def gcs_ft_backend(cluster: Mapping[str, Any]) -> str | None:
    """`redis` (also for the legacy annotation), `rocksdb`, or None when GCS FT is off."""
    return RS.gcs_ft_backend(spec_of(cluster), annotations_of(cluster))


def is_auth_enabled(cluster: Mapping[str, Any]) -> bool:
    return RS.auth_enabled(spec_of(cluster))


def is_k8s_auth_enabled(cluster: Mapping[str, Any]) -> bool:
    return RS.k8s_auth_enabled(spec_of(cluster))


# Replicas -------------------------------------------------------------------------------------------


def as_int(value: Any, default: int = 0) -> int:
    """An integer field as the schema promises it; anything else (webhook off, hand-edited) falls back."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def num_of_hosts(group: Mapping[str, Any]) -> int:
    n = group.get("numOfHosts")
    return int(n) if isinstance(n, int) and n > 0 else 1


def _replica_count(group: Mapping[str, Any]) -> int:
    """clamp(replicas, min, max); nil replicas → min; min > max → max (a spec validation rejects)."""
    lo = as_int(group.get("minReplicas"))
    hi_raw = group.get("maxReplicas")
    hi = as_int(hi_raw, MAX_INT32) if hi_raw is not None else MAX_INT32
    if lo > hi:
        return hi
    if group.get("replicas") is None:
        return lo
    replicas = as_int(group.get("replicas"), lo)
    return min(max(replicas, lo), hi)


def desired_worker_replicas(group: Mapping[str, Any]) -> int:
    """Pods wanted for one worker group: clamp(replicas, min, max) x numOfHosts; suspended → 0."""
    if group.get("suspend") is True:
        return 0
    return _replica_count(group) * num_of_hosts(group)


# Hashes -----------------------------------------------------------------------------------------------


def _blank_for_hash(spec: Mapping[str, Any]) -> Obj:
    s = clone(dict(spec))
    s.pop("upgradeStrategy", None)

    def blank_template(holder: Any) -> None:
        if not isinstance(holder, dict):
            return
        pod_spec = (holder.get("template") or {}).get("spec")
        if isinstance(pod_spec, dict):
            pod_spec.pop("tolerations", None)
            pod_spec.pop("schedulingGates", None)

    blank_template(s.get("headGroupSpec"))
    for group in s.get("workerGroupSpecs") or []:
        if not isinstance(group, dict):
            continue
        for key in ("replicas", "minReplicas", "maxReplicas"):
            group.pop(key, None)
        strategy = group.get("scaleStrategy")
        if isinstance(strategy, dict):
            strategy.pop("workersToDelete", None)
        blank_template(group)
    return s


def cluster_hash_without_replicas(spec: Mapping[str, Any]) -> str:
    """SHA-1 → base32hex (Go's base32.HexEncoding, 32 characters) of the spec minus the fields that change
    without needing new pods (docs/compatibility.md#pods, step 2).

    Go hashes `json.Marshal` of the typed struct (struct field order, zero values omitted). rayop hashes the
    plain dict with sorted keys instead. The value is compared only with hashes rayop itself stamped (head pod
    annotation for `upgradeStrategy: Recreate`), so it must be stable for rayop, not equal to KubeRay's; pods
    stamped by KubeRay carry a different `ray.io/kuberay-version`, which only re-stamps the hash.
    """
    blob = json.dumps(_blank_for_hash(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha1(blob.encode(), usedforsecurity=False).digest()
    return base64.b32hexencode(digest).decode()


def upgrade_recreate_hash(spec: Mapping[str, Any]) -> str:
    """The value of the head pod's `ray.io/upgrade-strategy-recreate-hash` annotation.

    KubeRay compares the head pod annotation with the same replicas-blind hash, so scaling (the autoscaler's
    patches) never triggers a Recreate, and neither do toleration/schedulingGates edits (Kueue) or a change of
    `upgradeStrategy` itself.
    """
    return cluster_hash_without_replicas(spec)


# Pod health ---------------------------------------------------------------------------------------------


def should_delete_pod(pod: Mapping[str, Any], ray_container_name: str) -> tuple[bool, str]:
    """Delete a pod that will never run Ray again on its own (docs/compatibility.md#pods, step 6)."""
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    name = (pod.get("metadata") or {}).get("name", "")
    phase = status.get("phase", "")
    node_type = ((pod.get("metadata") or {}).get("labels") or {}).get(C.LABEL_NODE_TYPE, "")
    if phase in ("Failed", "Succeeded"):
        return True, (
            f"The {node_type} Pod {name} status is {phase} which is a terminal state. KubeRay will delete the Pod "
            "and create new Pods in the next reconciliation if necessary."
        )
    if not ray_container_name:
        containers = spec.get("containers") or []
        ray_container_name = containers[0].get("name", "") if containers else ""
    terminated = None
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") == ray_container_name:
            terminated = (cs.get("state") or {}).get("terminated")
            break
    if phase == "Running" and terminated is not None:
        policy = spec.get("restartPolicy", "Always")
        if policy == "Never":
            return True, (
                f"The Pod status of the {node_type} Pod {name} is Running, and the Ray container terminated "
                "status is not nil and its restartPolicy is Never. KubeRay will delete the Pod."
            )
        return False, (
            f"The Ray container of the {node_type} Pod {name} terminated, but restartPolicy is {policy}; "
            "the kubelet restarts it."
        )
    return False, f"KubeRay does not need to delete the {node_type} Pod {name}. The Pod status is {phase}."
