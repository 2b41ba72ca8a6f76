"""RayServeDeployment objects, and the Serve config with their replica counts folded in
(docs/scaling.md, "Serve deployments as scale targets").

A RayServeDeployment sizes one deployment of one application of a RayService. It never reaches Ray by
itself: the RayService controller, the one writer of the Serve config, folds each scale target's number
into the config it PUTs (`applications[].deployments[].num_replicas`) and into the hash it records on the
cluster, so a new number is a config change applied in place. Serve treats a change of `num_replicas`
alone as a light update (`python/ray/serve/_private/application_state.py` apply_app_config: the app's code
version is import path, runtime_env and args, so nothing is rebuilt and no other deployment restarts).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from rayop.api import constants as C
from rayop.api import servedeployment as SD
from rayop.base.objects import meta
from rayop.base.objects import owner_reference as base_owner_reference
from rayop.base.types import Obj
from rayop.builders.rayservice import originated_labels, serve_config_hash

# What Kubernetes accepts as an object name (a DNS-1123 subdomain).
MAX_NAME: Final = 253
_INVALID = re.compile(r"[^a-z0-9.-]+")
_EDGES = re.compile(r"^[^a-z0-9]+|[^a-z0-9]+$")

Key = tuple[str, str]  # (application, deployment)


def target_name(rayservice: str, app: str, deployment: str) -> str | None:
    """`<rayservice>-<app>-<deployment>`, lower-cased, with what an object name cannot hold (`_`, spaces...)
    turned into `-`. None when nothing valid is left or it is too long. Serve names are case-sensitive, so
    two deployments may map to one name; the first (sorted) gets it."""
    raw = f"{rayservice}-{app}-{deployment}".lower()
    name = _EDGES.sub("", _INVALID.sub("-", raw))
    name = re.sub(r"-{2,}", "-", re.sub(r"\.{2,}", ".", name))
    return name if 0 < len(name) <= MAX_NAME else None


def build(
    rayservice: Mapping[str, Any],
    app: str,
    deployment: str,
    name: str,
    replicas: int,
    *,
    code_replicas: int | None = None,
) -> Obj:
    """The RayServeDeployment of one deployment, owned (and garbage-collected) with the RayService.
    `code_replicas`: the number Serve runs without an override, when serveConfigV2 does not state one."""
    md = meta(rayservice)
    labels = {
        **originated_labels(rayservice),
        SD.LABEL_APPLICATION: _label_value(app),
        C.LABEL_CREATED_BY: C.CREATED_BY_VALUE,
        C.LABEL_APP_NAME: C.APP_NAME_VALUE,
    }
    return {
        "apiVersion": SD.API_VERSION,
        "kind": SD.KIND,
        "metadata": {
            "name": name,
            "namespace": str(md.get("namespace") or ""),
            "labels": {k: v for k, v in labels.items() if v},
            **(
                {"annotations": {SD.ANN_CODE_REPLICAS: str(code_replicas)}}
                if code_replicas is not None
                else {}
            ),
            "ownerReferences": [
                base_owner_reference(rayservice, api_version=C.API_VERSION, kind=C.KIND_RAYSERVICE)
            ],
        },
        "spec": {
            "rayServiceName": str(md.get("name") or ""),
            "applicationName": app,
            "deploymentName": deployment,
            "replicas": replicas,
        },
    }


def _label_value(value: str) -> str:
    """A label value (63 characters of [A-Za-z0-9-_.], alphanumeric at both ends), or "" when the name
    cannot be one (the label is then left off)."""
    if len(value) > 63 or not re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", value):
        return ""
    return value


def code_replicas(target: Mapping[str, Any]) -> int | None:
    value = str(((target.get("metadata") or {}).get("annotations") or {}).get(SD.ANN_CODE_REPLICAS) or "")
    return int(value) if value.isdigit() else None


def key_of(target: Mapping[str, Any]) -> Key | None:
    spec = target.get("spec") or {}
    app, dep = spec.get("applicationName"), spec.get("deploymentName")
    if isinstance(app, str) and isinstance(dep, str) and app and dep:
        return app, dep
    return None


# The Serve config with the scale targets' numbers ------------------------------------------------------


def fold(config: Mapping[str, Any], overrides: Mapping[Key, int]) -> Obj:
    """The Serve config with each override as its deployment's `num_replicas` (the entry is added when the
    config does not list the deployment). Everything else is left as written."""
    out: Obj = json.loads(json.dumps(config))
    if not overrides:
        return out
    for a in out.get("applications") or []:
        if not isinstance(a, dict):
            continue
        name = SD.app_name(a)
        wanted = {dep: n for (app, dep), n in overrides.items() if app == name}
        if not wanted:
            continue
        deps = a.get("deployments")
        if not isinstance(deps, list):
            deps = []
            a["deployments"] = deps
        for d in deps:
            if isinstance(d, dict) and d.get("name") in wanted:
                d["num_replicas"] = wanted.pop(d["name"])
        deps.extend({"name": dep, "num_replicas": n} for dep, n in sorted(wanted.items()))
    return out


def applied_hash(text: str, overrides: Mapping[Key, int]) -> str:
    """What the RayService controller records on a cluster after a PUT: the serveConfigV2 text's hash when
    no scale target changes it (as before scale targets existed), else the hash of the text and the folded
    numbers, so a new number is a new config to apply."""
    if not overrides:
        return serve_config_hash(text)
    folded = json.dumps(sorted([app, dep, n] for (app, dep), n in overrides.items()))
    return serve_config_hash(f"{text}\n# num_replicas from RayServeDeployments: {folded}")


# Ray's report (GET /api/serve/applications/, DeploymentDetails) ------------------------------------------


def reported(apps: Mapping[str, Any] | None, app: str, deployment: str) -> Mapping[str, Any] | None:
    a = (apps or {}).get(app)
    deps = a.get("deployments") if isinstance(a, Mapping) else None
    d = deps.get(deployment) if isinstance(deps, Mapping) else None
    return d if isinstance(d, Mapping) else None


def reported_autoscaled(details: Mapping[str, Any] | None) -> bool:
    """Ray applies an autoscaling_config to the deployment (from serveConfigV2 or from its code)."""
    cfg = (details or {}).get("deployment_config")
    return isinstance(cfg, Mapping) and cfg.get("autoscaling_config") is not None


def reported_target(details: Mapping[str, Any] | None) -> int | None:
    n = (details or {}).get("target_num_replicas")
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def live_replicas(details: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The deployment's replicas that are not on their way out."""
    reps = (details or {}).get("replicas")
    rows = reps if isinstance(reps, list) else []
    return [r for r in rows if isinstance(r, Mapping) and r.get("state") != SD.REPLICA_STOPPING]


def deployments_of(apps: Mapping[str, Any] | None) -> list[Key]:
    """Every (application, deployment) Ray reports."""
    out: list[Key] = []
    for app, a in (apps or {}).items():
        deps = a.get("deployments") if isinstance(a, Mapping) else None
        for dep in deps if isinstance(deps, Mapping) else {}:
            out.append((str(app) or C.DEFAULT_SERVE_APP_NAME, str(dep)))
    return sorted(out)


def replica_pod(replica: Mapping[str, Any], pods_by_ip: Mapping[str, str]) -> str:
    """The Pod a replica runs in: Ray's node instance id is the Pod's name on Kubernetes
    (RAY_CLOUD_INSTANCE_ID), else the node's IP is the Pod's."""
    instance = replica.get("node_instance_id")
    if isinstance(instance, str) and instance:
        return instance
    return pods_by_ip.get(str(replica.get("node_ip") or ""), "")


def selector(cluster: str, groups: Iterable[str]) -> str:
    """The label selector of the cluster's Pods in these groups (`headgroup` is the head's)."""
    gs = sorted(set(groups))
    if len(gs) == 1 and gs[0] != C.HEAD_GROUP_NAME:
        return f"{C.LABEL_CLUSTER}={cluster},{C.LABEL_GROUP}={gs[0]},{C.LABEL_NODE_TYPE}={C.NODE_TYPE_WORKER}"
    if gs == [C.HEAD_GROUP_NAME]:
        return f"{C.LABEL_CLUSTER}={cluster},{C.LABEL_NODE_TYPE}={C.NODE_TYPE_HEAD}"
    if gs:
        return (
            f"{C.LABEL_CLUSTER}={cluster},{C.LABEL_GROUP} in ({','.join(gs)}),"
            f"{C.LABEL_NODE_TYPE} in ({C.NODE_TYPE_HEAD},{C.NODE_TYPE_WORKER})"
        )
    return f"{C.LABEL_CLUSTER}={cluster},{C.LABEL_NODE_TYPE} in ({C.NODE_TYPE_HEAD},{C.NODE_TYPE_WORKER})"
