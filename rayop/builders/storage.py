"""The operator-managed PVC behind embedded (RocksDB) GCS fault tolerance
(docs/compatibility.md#gcs-fault-tolerance)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rayop.api import constants as C
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders.pod import gcs_storage_pvc_name
from rayop.builders.quantity import canonical, parse_quantity

DEFAULT_SIZE = "1Gi"


def build_gcs_pvc(cluster: Mapping[str, Any]) -> Obj | None:
    """None unless the backend is rocksdb and the user did not bring a claim (`storage.claimName`).

    The ownerReference is left out for `deletionPolicy: Retain`, so the GCS data outlives the RayCluster.
    """
    if cl.gcs_ft_backend(cluster) != "rocksdb":
        return None
    storage = ((cluster.get("spec") or {}).get("gcsFaultToleranceOptions") or {}).get("storage") or {}
    if storage.get("claimName"):
        return None
    meta = cluster.get("metadata") or {}
    spec: Obj = {
        "accessModes": list(storage.get("accessModes") or ["ReadWriteOnce"]),
        "resources": {
            "requests": {"storage": canonical(parse_quantity(storage.get("size") or DEFAULT_SIZE))}
        },
    }
    if storage.get("storageClassName") is not None:
        spec["storageClassName"] = storage["storageClassName"]
    out_meta: Obj = {
        "name": gcs_storage_pvc_name(cluster),
        "namespace": meta.get("namespace", ""),
        "labels": {C.LABEL_CLUSTER: meta.get("name", "")},
    }
    if storage.get("deletionPolicy") != "Retain":
        out_meta["ownerReferences"] = [cl.owner_reference(cluster)]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": out_meta, "spec": spec}
