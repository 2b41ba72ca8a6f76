"""Admission warnings: accepted manifests that will probably not do what their author expects.

kubectl prints each warning as ``Warning: <text>``. Every warning names the field it is about.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from rayop.api import constants as C
from rayop.api.spec import autoscaling_enabled
from rayop.validation._parse import parse_generic_version
from rayop.validation._shape import as_bool, as_int, as_list, as_map, as_str, str_map
from rayop.validation.cluster import containers
from rayop.validation.kinds import parse_runtime_env_yaml, parse_serve_config

# Field names of Ray Serve's config schema (ray.serve.schema, Ray 2.60). Serve ignores unknown keys, so a
# camelCase key is silently dropped and the snake_case field keeps its default.
SERVE_TOP_KEYS = frozenset(
    {
        "applications",
        "controller_options",
        "grpc_options",
        "http_options",
        "logging_config",
        "proxy_location",
        "target_capacity",
        "tracing_config",
    }
)
SERVE_APP_KEYS = frozenset(
    {
        "args",
        "autoscaling_policy",
        "deployments",
        "external_scaler_enabled",
        "host",
        "import_path",
        "logging_config",
        "name",
        "port",
        "route_prefix",
        "runtime_env",
    }
)
SERVE_DEPLOYMENT_KEYS = frozenset(
    {
        "autoscaling_config",
        "backpressure_config",
        "deployment_actors",
        "gang_scheduling_config",
        "graceful_shutdown_timeout_s",
        "graceful_shutdown_wait_loop_s",
        "health_check_period_s",
        "health_check_timeout_s",
        "logging_config",
        "max_ongoing_requests",
        "max_queued_requests",
        "max_replicas_per_node",
        "max_surge_percent",
        "name",
        "num_replicas",
        "placement_group_bundle_label_selector",
        "placement_group_bundles",
        "placement_group_strategy",
        "ray_actor_options",
        "request_router_config",
        "rolling_update_percentage",
        "user_config",
    }
)
# ray.runtime_env.RuntimeEnv.known_fields (Ray 2.60); other keys are looked up as runtime-env plugins.
RUNTIME_ENV_KEYS = frozenset(
    {
        "config",
        "conda",
        "container",
        "env_vars",
        "excludes",
        "image_uri",
        "java_jars",
        "pip",
        "py_executable",
        "py_modules",
        "uv",
        "working_dir",
        "worker_process_setup_hook",
    }
)

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")
_RAY_START = re.compile(r"\bray\s+start\b")
_IMAGE_VERSION = re.compile(r":(\d+\.\d+(?:\.\d+)?)")


def snake(key: str) -> str:
    return _CAMEL.sub(lambda m: "_" + m.group(1).lower(), key)


def _unknown_keys(d: Mapping[str, Any], known: frozenset[str], where: str, what: str, out: list[str]) -> None:
    for key in d:
        if not isinstance(key, str) or key in known or key.startswith("_"):
            continue
        s = snake(key)
        if s != key and s in known:
            out.append(f"{where}: key {key!r} is camelCase; {what} expects {s!r} and ignores {key!r}")
        else:
            out.append(f"{where}: unknown key {key!r} is ignored by {what}")


def serve_config_warnings(text: str, where: str) -> list[str]:
    out: list[str] = []
    if not text.strip():
        out.append(
            f"{where}: is empty; no Serve application will be deployed and the RayService will not become Ready"
        )
        return out
    data, err = parse_serve_config(text)
    if err:
        return out
    if not isinstance(data, dict):
        out.append(f"{where}: must be a YAML mapping with an 'applications' list")
        return out
    apps = data.get("applications")
    if apps is None:
        if "import_path" in data or "importPath" in data or "deployments" in data:
            out.append(
                f"{where}: looks like the single-application format; Ray Serve expects a top-level 'applications' list "
                "with one entry per application"
            )
        else:
            out.append(f"{where}: has no 'applications' list; no Serve application will be deployed")
    elif not isinstance(apps, list):
        out.append(f"{where}.applications: must be a list")
        apps = []
    _unknown_keys(data, SERVE_TOP_KEYS, where, "Ray Serve", out)
    names: dict[str, int] = {}
    prefixes: dict[str, int] = {}
    for i, app_any in enumerate(as_list(apps)):
        ap = f"{where}.applications[{i}]"
        if not isinstance(app_any, dict):
            out.append(f"{ap}: must be a mapping")
            continue
        _unknown_keys(app_any, SERVE_APP_KEYS, ap, "Ray Serve", out)
        if not app_any.get("import_path"):
            out.append(f"{ap}: has no import_path; Ray Serve rejects the config")
        name = app_any.get("name", "default")
        if isinstance(name, str):
            if name in names:
                out.append(
                    f"{ap}.name: {name!r} is also used by applications[{names[name]}]; Ray Serve rejects duplicate names"
                )
            names.setdefault(name, i)
        rp = app_any.get("route_prefix")
        if isinstance(rp, str):
            if not rp.startswith("/"):
                out.append(f"{ap}.route_prefix: {rp!r} must start with '/'")
            if rp in prefixes:
                out.append(
                    f"{ap}.route_prefix: {rp!r} is also used by applications[{prefixes[rp]}]; Ray Serve rejects duplicates"
                )
            prefixes.setdefault(rp, i)
        renv = app_any.get("runtime_env")
        if isinstance(renv, dict):
            out += runtime_env_warnings(renv, f"{ap}.runtime_env")
        deps = app_any.get("deployments")
        if deps is not None and not isinstance(deps, list):
            out.append(f"{ap}.deployments: must be a list")
            continue
        for j, d_any in enumerate(as_list(deps)):
            dp = f"{ap}.deployments[{j}]"
            if not isinstance(d_any, dict):
                out.append(f"{dp}: must be a mapping")
                continue
            _unknown_keys(d_any, SERVE_DEPLOYMENT_KEYS, dp, "Ray Serve", out)
            if not d_any.get("name"):
                out.append(f"{dp}: has no name; Ray Serve rejects the config")
    return out


def runtime_env_warnings(data: Mapping[str, Any], where: str) -> list[str]:
    out: list[str] = []
    _unknown_keys(data, RUNTIME_ENV_KEYS, where, "the Ray runtime environment", out)
    ev = data.get("env_vars")
    if ev is not None:
        if not isinstance(ev, dict):
            out.append(f"{where}.env_vars: must be a mapping of names to strings")
        else:
            for k, v in ev.items():
                if not isinstance(v, str):
                    out.append(
                        f"{where}.env_vars[{k}]: value {v!r} is not a string; Ray requires string values (quote it)"
                    )
    wd = data.get("working_dir")
    if wd is not None and not isinstance(wd, str):
        out.append(f"{where}.working_dir: must be a string (a local path or a remote URI)")
    pip = data.get("pip")
    if pip is not None and not isinstance(pip, (list, dict, str)):
        out.append(f"{where}.pip: must be a list of packages, a requirements file path, or a mapping")
    return out


def _cluster_warnings(spec: Mapping[str, Any], annotations: Mapping[str, str], base: str) -> list[str]:
    out: list[str] = []
    autoscaling = autoscaling_enabled(spec)
    overwrite = annotations.get(C.ANN_OVERWRITE_CONTAINER_CMD, "").lower() == "true"
    head = as_map(spec.get("headGroupSpec"))
    templates: list[tuple[str, Any]] = [(f"{base}.headGroupSpec", head.get("template"))]
    for i, g_any in enumerate(as_list(spec.get("workerGroupSpecs"))):
        g = as_map(g_any)
        gpath = f"{base}.workerGroupSpecs[{i}]"
        templates.append((gpath, g.get("template")))
        mn, mx, rep = as_int(g.get("minReplicas")), as_int(g.get("maxReplicas")), as_int(g.get("replicas"))
        if not autoscaling and mn is not None and mx is not None and 0 <= mn < mx and mx != 2**31 - 1:
            out.append(
                f"{gpath}: minReplicas ({mn}) and maxReplicas ({mx}) only bound replicas while "
                "enableInTreeAutoscaling is not true; nothing scales this group between them. "
                "Set spec.enableInTreeAutoscaling: true to autoscale"
            )
        if rep is not None and mn is not None and mx is not None and 0 <= mn <= mx and not mn <= rep <= mx:
            eff = min(max(rep, mn), mx)
            out.append(
                f"{gpath}.replicas: {rep} is outside [minReplicas, maxReplicas] = [{mn}, {mx}]; {eff} will run"
            )
        hosts = as_int(g.get("numOfHosts"))
        if hosts is not None and hosts <= 0:
            out.append(f"{gpath}.numOfHosts: {hosts} is treated as 1")
        if as_bool(g.get("suspend")) is True:
            out.append(
                f"{gpath}.suspend: is managed by RayJob deletion rules; setting it by hand deletes all pods of the group"
            )
    if not overwrite:
        for gpath, tpl in templates:
            cs = containers(tpl)
            if not cs:
                continue
            c = as_map(cs[C.RAY_CONTAINER_INDEX])
            cmd = " ".join(
                x for x in as_list(c.get("command")) + as_list(c.get("args")) if isinstance(x, str)
            )
            if _RAY_START.search(cmd):
                out.append(
                    f"{gpath}.template.spec.containers[0].command: runs 'ray start' itself, so rayStartParams "
                    f'are ignored; annotate {C.ANN_OVERWRITE_CONTAINER_CMD}: "true" if that is intended'
                )
    rv = as_str(spec.get("rayVersion"))
    parsed_rv = parse_generic_version(rv) if rv else None
    if parsed_rv:
        c0 = containers(head.get("template"))
        image = as_str(as_map(c0[0]).get("image")) if c0 else None
        m = _IMAGE_VERSION.search(image or "")
        if image and m and "ray" in image.split(":")[0]:
            parsed_img = parse_generic_version(m.group(1))
            if parsed_img and parsed_img[:3] != parsed_rv[:3]:
                out.append(
                    f"{base}.rayVersion: {rv} differs from the head image tag {m.group(1)} ({image}); the operator "
                    "picks probes and features by rayVersion"
                )
    if annotations.get(C.ANN_FT_ENABLED, "").lower() == "true" and not isinstance(
        spec.get("gcsFaultToleranceOptions"), dict
    ):
        out.append(
            f"metadata.annotations[{C.ANN_FT_ENABLED}]: is the legacy way to enable GCS fault tolerance; "
            f"use {base}.gcsFaultToleranceOptions"
        )
    return out


def _api_version_warning(obj: Mapping[str, Any], kind: str) -> list[str]:
    if as_str(obj.get("apiVersion")) == f"{C.GROUP}/{C.ALPHA_VERSION}":
        return [
            f"{C.GROUP}/{C.ALPHA_VERSION} {kind} is deprecated and frozen at its December 2023 feature set; "
            f"use {C.API_VERSION}"
        ]
    return []


def _safe_warnings(fn: Callable[[], list[str]]) -> list[str]:
    try:
        return fn()
    except Exception as e:  # warnings are advisory: never fail an admission over them
        return [f"warnings could not be computed ({type(e).__name__})"]


def _annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    return str_map(as_map(obj.get("metadata")).get("annotations"))


def warnings_raycluster(obj: Any, old: Any = None) -> list[str]:
    def run() -> list[str]:
        o = as_map(obj)
        spec = as_map(o.get("spec"))
        out = _api_version_warning(o, C.KIND_RAYCLUSTER) + _cluster_warnings(spec, _annotations(o), "spec")
        if old is not None:
            old_spec = as_map(as_map(old).get("spec"))
            recreate = as_str(as_map(spec.get("upgradeStrategy")).get("type")) == "Recreate"
            changed = [p for p, a, b in _template_pairs(old_spec, spec) if a != b]
            if changed and not recreate:
                out.append(
                    f"{changed[0]}: pod template changes are not applied to running pods unless "
                    "spec.upgradeStrategy.type is Recreate; delete the pods or the cluster to pick them up"
                )
        return out

    return _safe_warnings(run)


def _template_pairs(old_spec: Mapping[str, Any], spec: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    pairs = [
        (
            "spec.headGroupSpec.template",
            as_map(old_spec.get("headGroupSpec")).get("template"),
            as_map(spec.get("headGroupSpec")).get("template"),
        )
    ]
    old_groups = {
        as_str(as_map(g).get("groupName")): as_map(g).get("template")
        for g in as_list(old_spec.get("workerGroupSpecs"))
    }
    for i, g in enumerate(as_list(spec.get("workerGroupSpecs"))):
        name = as_str(as_map(g).get("groupName"))
        if name in old_groups:
            pairs.append(
                (f"spec.workerGroupSpecs[{i}].template", old_groups[name], as_map(g).get("template"))
            )
    return pairs


def warnings_rayjob(obj: Any, old: Any = None) -> list[str]:
    def run() -> list[str]:
        o = as_map(obj)
        spec = as_map(o.get("spec"))
        out = _api_version_warning(o, C.KIND_RAYJOB)
        rc = spec.get("rayClusterSpec")
        if isinstance(rc, dict):
            out += _cluster_warnings(rc, _annotations(o), "spec.rayClusterSpec")
        renv = as_str(spec.get("runtimeEnvYAML"))
        if renv:
            data, err = parse_runtime_env_yaml(renv)
            if not err and isinstance(data, dict):
                out += runtime_env_warnings(data, "spec.runtimeEnvYAML")
        if old is not None and isinstance(rc, dict):
            old_rc = as_map(as_map(old).get("spec")).get("rayClusterSpec")
            if isinstance(old_rc, dict) and old_rc != rc:
                out.append(
                    "spec.rayClusterSpec: changes after creation are ignored while the RayJob's RayCluster exists"
                )
        return out

    return _safe_warnings(run)


def warnings_rayservice(obj: Any, old: Any = None) -> list[str]:
    def run() -> list[str]:
        o = as_map(obj)
        spec = as_map(o.get("spec"))
        out = _api_version_warning(o, C.KIND_RAYSERVICE)
        rc = spec.get("rayClusterConfig")
        if isinstance(rc, dict):
            out += _cluster_warnings(rc, _annotations(o), "spec.rayClusterConfig")
        scv = spec.get("serveConfigV2")
        if isinstance(scv, str) or scv is None:
            out += serve_config_warnings(scv or "", "spec.serveConfigV2")
        for field in ("serviceUnhealthySecondThreshold", "deploymentUnhealthySecondThreshold"):
            if spec.get(field) is not None:
                out.append(
                    f"spec.{field}: is deprecated and ignored (health-based cluster recreation was removed)"
                )
        return out

    return _safe_warnings(run)
