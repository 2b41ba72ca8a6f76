"""Head, serve and headless worker Services for a RayCluster (KubeRay
`ray-operator/controllers/ray/common/service.go`; docs/compatibility.md#services)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from rayop.api import constants as C
from rayop.base.objects import meta as meta_of
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders.options import BuildOptions

APP_PROTOCOL = "tcp"
LABEL_HEADLESS_WORKER_SVC = C.LABEL_HEADLESS_WORKER_SVC


def _head_group(cluster: Mapping[str, Any]) -> Mapping[str, Any]:
    return (cluster.get("spec") or {}).get("headGroupSpec") or {}


def service_ports(cluster: Mapping[str, Any]) -> dict[str, int]:
    """Named ports of the head Ray container (unnamed → `<port>-port`), else Ray's defaults; `metrics` always."""
    containers = ((_head_group(cluster).get("template") or {}).get("spec") or {}).get("containers") or []
    ports: dict[str, int] = {}
    if containers and isinstance(containers[0], dict):
        for p in containers[0].get("ports") or []:
            number = cl.as_int(p.get("containerPort"))
            ports[str(p.get("name") or f"{number}-port")] = number
    if not ports:
        ports = dict(C.DEFAULT_HEAD_PORTS)
    ports.setdefault("metrics", C.PORT_METRICS)
    return ports


def head_service_labels(cluster: Mapping[str, Any]) -> dict[str, str]:
    name = str(meta_of(cluster).get("name", ""))
    return {
        C.LABEL_CLUSTER: name,
        C.LABEL_NODE_TYPE: C.NODE_TYPE_HEAD,
        C.LABEL_IDENTIFIER: cl.check_label(f"{name}-{C.NODE_TYPE_HEAD}"),
        C.LABEL_APP_NAME: C.APP_NAME_VALUE,
        C.LABEL_CREATED_BY: C.CREATED_BY_VALUE,
    }


def build_head_service(cluster: Mapping[str, Any], opts: BuildOptions | None = None) -> Obj:
    """The head Service: headless by default; a user `headService` is merged, never trusted for the selector."""
    opts = opts or BuildOptions()
    head = _head_group(cluster)
    template_labels = ((head.get("template") or {}).get("metadata") or {}).get("labels") or {}
    selector = head_service_labels(cluster)
    # A template may rename the app (e.g. for a service mesh); that value must match the pod's label.
    if C.LABEL_APP_NAME in template_labels:
        selector[C.LABEL_APP_NAME] = str(template_labels[C.LABEL_APP_NAME])
    annotations = {
        str(k): str(v) for k, v in ((cluster.get("spec") or {}).get("headServiceAnnotations") or {}).items()
    }
    namespace = meta_of(cluster).get("namespace", "")
    service_type = head.get("serviceType") or ""
    ports = [
        {"name": name, "port": number, "appProtocol": APP_PROTOCOL}
        for name, number in sorted(service_ports(cluster).items())
    ]
    owner = [cl.owner_reference(cluster)]
    custom = head.get("headService")
    if custom is not None:
        svc: Obj = copy.deepcopy(dict(custom))
        meta = svc.setdefault("metadata", {})
        spec = svc.setdefault("spec", {})
        spec["selector"] = dict(selector)
        merged_ann = dict(meta.get("annotations") or {})
        merged_ann.update(annotations)  # headServiceAnnotations win over the custom Service's own
        if merged_ann:
            meta["annotations"] = merged_ann
        spec["ports"] = [*(spec.get("ports") or []), *ports]
        labels = dict(meta.get("labels") or {})
        labels.update(selector)
        meta["labels"] = labels
        meta["name"] = meta.get("name") or cl.head_service_name(cluster)
        meta["namespace"] = namespace
        if not spec.get("type") and service_type:
            spec["type"] = service_type
        meta["ownerReferences"] = owner
        svc.setdefault("apiVersion", "v1")
        svc.setdefault("kind", "Service")
        return svc
    meta_out: Obj = {
        "name": cl.head_service_name(cluster),
        "namespace": namespace,
        "labels": dict(selector),
        "ownerReferences": owner,
    }
    if annotations:
        meta_out["annotations"] = annotations
    spec_out: Obj = {"selector": dict(selector), "ports": ports}
    if service_type:
        spec_out["type"] = service_type
    if not opts.head_cluster_ip_service and service_type in ("", "ClusterIP"):
        # At most one head pod, so a virtual IP buys nothing; and workers must find a head that is not yet
        # Ready (its probes need GCS up, which the workers' init containers wait for).
        spec_out["clusterIP"] = "None"
        spec_out["publishNotReadyAddresses"] = True
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta_out, "spec": spec_out}


def serve_service_name(cluster: Mapping[str, Any]) -> str:
    return f"{meta_of(cluster).get('name', '')}-serve-svc"


def build_serve_service(cluster: Mapping[str, Any], opts: BuildOptions | None = None) -> Obj | None:
    """`<cluster>-serve-svc` selecting every pod of the cluster on the `serve` port; None without such a port
    (KubeRay reports an error then)."""
    del opts
    name = str(meta_of(cluster).get("name", ""))
    ports = service_ports(cluster)
    if "serve" not in ports:
        return None
    spec: Obj = {
        "selector": {C.LABEL_CLUSTER: name},
        "ports": [{"name": "serve", "port": ports["serve"]}],
    }
    service_type = _head_group(cluster).get("serviceType")
    if service_type:
        spec["type"] = service_type
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": serve_service_name(cluster),
            "namespace": meta_of(cluster).get("namespace", ""),
            "labels": {
                C.LABEL_ORIGINATED_FROM_CR_NAME: name,
                C.LABEL_ORIGINATED_FROM_CRD: C.KIND_RAYCLUSTER,
                C.LABEL_SERVE: f"{name}-serve",
            },
            "ownerReferences": [cl.owner_reference(cluster)],
        },
        "spec": spec,
    }


def build_headless_worker_service(cluster: Mapping[str, Any], opts: BuildOptions | None = None) -> Obj:
    """`<cluster>-headless`: DNS for peer-to-peer traffic between the hosts of multi-host worker replicas."""
    del opts
    name = str(meta_of(cluster).get("name", ""))
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{name}-headless",
            "namespace": meta_of(cluster).get("namespace", ""),
            "labels": {LABEL_HEADLESS_WORKER_SVC: name},
            "ownerReferences": [cl.owner_reference(cluster)],
        },
        "spec": {
            "clusterIP": "None",
            "selector": {C.LABEL_CLUSTER: name, C.LABEL_NODE_TYPE: C.NODE_TYPE_WORKER},
            "type": "ClusterIP",
            # Hosts must resolve each other before any of them is Ready.
            "publishNotReadyAddresses": True,
        },
    }
