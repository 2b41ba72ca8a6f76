"""ServiceAccount, Role and RoleBinding for the in-tree autoscaler (KubeRay
`ray-operator/controllers/ray/common/rbac.go`; docs/compatibility.md#autoscaler-rbac): just enough for Ray's
autoscaler to read pods and patch the RayCluster's replicas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rayop.api import constants as C
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders.pod import autoscaler_service_account_name as _sa_name


def autoscaler_service_account_name(cluster: Mapping[str, Any]) -> str:
    """The head template's `serviceAccountName`, else the RayCluster's name (clipped like the pod's field)."""
    return cl.check_name(_sa_name(cluster))


def build_service_account(cluster: Mapping[str, Any]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": cl.child_metadata(cluster, autoscaler_service_account_name(cluster)),
    }


def build_role(cluster: Mapping[str, Any]) -> Obj:
    name = cl.check_name(str((cluster.get("metadata") or {}).get("name", "")))
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": cl.child_metadata(cluster, name),
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
            # In-place pod resize by the autoscaler.
            {"apiGroups": [""], "resources": ["pods/resize"], "verbs": ["patch"]},
            {"apiGroups": [C.GROUP], "resources": [C.PLURAL_RAYCLUSTERS], "verbs": ["get", "patch"]},
        ],
    }


def build_role_binding(cluster: Mapping[str, Any]) -> Obj:
    meta = cluster.get("metadata") or {}
    name = cl.check_name(str(meta.get("name", "")))
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": cl.child_metadata(cluster, name),
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": autoscaler_service_account_name(cluster),
                "namespace": meta.get("namespace", ""),
            }
        ],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
    }
