"""The Redis cleanup Job that empties a deleted GCS-FT cluster's storage namespace
(KubeRay `ray-operator/controllers/ray/raycluster_controller.go`; docs/compatibility.md#gcs-fault-tolerance)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from rayop.api import constants as C
from rayop.base.types import Obj
from rayop.builders import cluster as cl

CLEANUP_HINT = (
    "To delete the storage namespace in Redis by hand and remove the RayCluster's finalizer, see "
    "https://docs.ray.io/en/master/cluster/kubernetes/user-guides/kuberay-gcs-ft.html"
)


def _cleanup_python(with_username: bool) -> str:
    # Ray's own helper deletes every key of the namespace; it is private API, as in KubeRay.
    username = "username=os.getenv('REDIS_USERNAME', u.username), " if with_username else ""
    return (
        "import os, sys; "
        "from urllib.parse import urlparse; "
        "from ray._private.gcs_utils import cleanup_redis_storage; "
        "a = os.getenv('RAY_REDIS_ADDRESS', '').split(',')[0]; "
        "u = urlparse(a if '://' in a else 'redis://' + a); "
        "ok = cleanup_redis_storage(host=u.hostname, port=u.port, "
        f"{username}"
        "password=os.getenv('REDIS_PASSWORD', u.password or ''), use_ssl=u.scheme == 'rediss', "
        "storage_namespace=os.getenv('RAY_external_storage_namespace')); "
        "sys.exit(0 if ok else 1)"
    )


def redis_cleanup_job_name(cluster: Mapping[str, Any]) -> str:
    return cl.check_label(f"{(cluster.get('metadata') or {}).get('name', '')}-redis-cleanup")


def build_redis_cleanup_job(cluster: Mapping[str, Any], head_pod: Mapping[str, Any]) -> Obj:
    """A Job built from the head Pod (same image, env, volumes) that runs only the cleanup script.

    Best effort by design: no retries, five minutes at most; the controller removes the finalizer when the
    Job completes or fails, or when the deletion timeout passes.
    """
    meta = cluster.get("metadata") or {}
    pod_meta = head_pod.get("metadata") or {}
    spec = copy.deepcopy(dict(head_pod.get("spec") or {}))
    ray = copy.deepcopy(spec["containers"][C.RAY_CONTAINER_INDEX])
    spec["containers"] = [ray]
    env: list[Obj] = ray.setdefault("env", [])
    with_username = any(e.get("name") == C.ENV_REDIS_USERNAME for e in env)
    ray["command"] = ["/bin/bash", "-lc", "--"]
    ray["args"] = [f'echo "{CLEANUP_HINT}" && python -c "{_cleanup_python(with_username)}"']
    # No raylet or GCS runs here, so the Ray probes could only fail.
    ray.pop("livenessProbe", None)
    ray.pop("readinessProbe", None)
    # Ray retries the Redis connection for about a minute before giving up.
    env.append({"name": "RAY_redis_db_connect_retries", "value": "120"})
    env.append({"name": "RAY_redis_db_connect_wait_milliseconds", "value": "500"})
    # Small fixed resources: never hold a GPU for a cleanup script.
    ray["resources"] = {
        "limits": {"cpu": "200m", "memory": "256Mi"},
        "requests": {"cpu": "200m", "memory": "256Mi"},
    }
    spec["restartPolicy"] = "Never"
    labels = dict(pod_meta.get("labels") or {})
    labels[C.LABEL_NODE_TYPE] = C.NODE_TYPE_REDIS_CLEANUP
    annotations = dict(pod_meta.get("annotations") or {})
    job_meta: Obj = {
        "name": redis_cleanup_job_name(cluster),
        "namespace": meta.get("namespace", ""),
        "labels": labels,
        "ownerReferences": [cl.owner_reference(cluster)],
    }
    template_meta: Obj = {"labels": dict(labels)}
    if annotations:
        job_meta["annotations"] = annotations
        template_meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job_meta,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 300,
            "template": {"metadata": template_meta, "spec": spec},
        },
    }
