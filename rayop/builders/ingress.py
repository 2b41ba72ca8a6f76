"""The dashboard Ingress for `headGroupSpec.enableIngress: true` (KubeRay
`ray-operator/controllers/ray/common/ingress.go`; docs/compatibility.md#ingress)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from rayop.api import constants as C
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders.service import service_ports

INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"


def ingress_name(cluster: Mapping[str, Any]) -> str:
    return f"{(cluster.get('metadata') or {}).get('name', '')}-head-ingress"


def build_ingress(cluster: Mapping[str, Any]) -> Obj:
    meta = cluster.get("metadata") or {}
    name = str(meta.get("name", ""))
    head = (cluster.get("spec") or {}).get("headGroupSpec") or {}
    options = head.get("ingressOptions") or {}
    cluster_ann = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    # RayCluster annotations are the generic way to configure the Ingress controller; the deprecated class
    # annotation becomes spec.ingressClassName instead (both at once are rejected by some controllers).
    annotations = {k: v for k, v in cluster_ann.items() if k != INGRESS_CLASS_ANNOTATION}
    path: Obj = {
        "path": options.get("path") or "/",
        "pathType": options.get("pathType") or "Prefix",
        "backend": {
            "service": {
                "name": cl.head_service_name(cluster),
                "port": {"number": service_ports(cluster).get("dashboard", C.PORT_DASHBOARD)},
            }
        },
    }
    rule: Obj = {"http": {"paths": [path]}}
    if options.get("host"):
        rule["host"] = options["host"]
    spec: Obj = {"rules": [rule]}
    if INGRESS_CLASS_ANNOTATION in cluster_ann:
        spec["ingressClassName"] = cluster_ann[INGRESS_CLASS_ANNOTATION]
    if options.get("tls"):
        spec["tls"] = copy.deepcopy(options["tls"])
    out_meta: Obj = {
        "name": ingress_name(cluster),
        "namespace": meta.get("namespace", ""),
        "labels": {
            C.LABEL_CLUSTER: name,
            C.LABEL_IDENTIFIER: cl.check_label(f"{name}-{C.NODE_TYPE_HEAD}"),
            C.LABEL_APP_NAME: C.APP_NAME_VALUE,
            C.LABEL_CREATED_BY: C.CREATED_BY_VALUE,
        },
        "ownerReferences": [cl.owner_reference(cluster)],
    }
    if annotations:
        out_meta["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": out_meta, "spec": spec}
