"""RayCluster spec rules (docs/compatibility.md#raycluster-rules, rules 1-19), shared by RayCluster, RayJob
and RayService.

Each rule mirrors one check of KubeRay's ``ValidateRayClusterSpec`` (``utils/validation.go``) with the same
conditions, but reports every violation as a field error at the field that causes it, instead of stopping at
the first one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rayop.api import constants as C
from rayop.api import features as F
from rayop.api.spec import auth_enabled, autoscaler_version, autoscaling_enabled, gcs_ft_enabled
from rayop.validation._parse import parse_generic_version, version_at_least
from rayop.validation._shape import as_bool, as_int, as_list, as_map, as_str, str_map
from rayop.validation.errors import (
    FieldError,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
)
from rayop.validation.names import dns1123_label, label_value, qualified_name

RESOURCE_PARAMS = ("num-cpus", "num-gpus", "memory", "resources")
TLS_ENV = (C.ENV_RAY_USE_TLS, C.ENV_RAY_TLS_SERVER_CERT, C.ENV_RAY_TLS_SERVER_KEY, C.ENV_RAY_TLS_CA_CERT)
HISTORY_MANAGED_ENV = (
    "POD_IP",
    "FQ_RAY_IP",
    "RAY_CLUSTER_NAME",
    "RAY_CLUSTER_NAMESPACE",
    "RAY_ROLE",
    "OWNER_KIND",
    "OWNER_NAME",
    "EVENTS_PORT",
)
AUTOSCALER_VERSIONS = ("v1", "v2")
UPSCALING_MODES = ("Default", "Aggressive", "Conservative")
GCS_BACKENDS = ("redis", "rocksdb")
GCS_DELETION_POLICIES = ("DeleteWithCluster", "Retain")
AUTH_MODES = ("disabled", "token")
NETWORK_POLICY_MODES = ("DenyAll", "DenyAllIngress", "DenyAllEgress")
INGRESS_PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")
MANAGED_BY = (C.MANAGED_BY_KUBERAY, C.MANAGED_BY_MULTIKUEUE)
TRUTHY_V2 = ("1", "true")


# ---- spec readers shared by rules, builders' callers and warnings ------------------------------------


def autoscaling_v2_enabled(spec: Mapping[str, Any]) -> bool:
    return autoscaler_version(spec) == "v2"


def containers(template: Any) -> list[Any]:
    return as_list(as_map(as_map(template).get("spec")).get("containers"))


def ray_container(template: Any) -> dict[str, Any]:
    cs = containers(template)
    return as_map(cs[C.RAY_CONTAINER_INDEX]) if cs else {}


def env_entries(container: Mapping[str, Any]) -> list[tuple[int, str, Any]]:
    """(index, name, value) of each well-formed env entry."""
    out: list[tuple[int, str, Any]] = []
    for i, e in enumerate(as_list(container.get("env"))):
        name = as_str(as_map(e).get("name"))
        if name is not None:
            out.append((i, name, as_map(e).get("value")))
    return out


def env_value(container: Mapping[str, Any], name: str) -> tuple[int, Any] | None:
    for i, n, v in env_entries(container):
        if n == name:
            return i, v
    return None


def head_env_v2(spec: Mapping[str, Any]) -> bool:
    hit = env_value(
        ray_container(as_map(spec.get("headGroupSpec")).get("template")), C.ENV_ENABLE_AUTOSCALER_V2
    )
    return hit is not None and hit[1] in TRUTHY_V2


def k8s_token_auth(spec: Mapping[str, Any]) -> bool:
    return as_bool(as_map(spec.get("authOptions")).get("enableK8sTokenAuth")) is True


def tls_enabled(spec: Mapping[str, Any]) -> bool:
    return as_bool(as_map(spec.get("tlsOptions")).get("enabled")) is True


def group_label(i: int, name: str | None) -> str:
    return f"worker group {name!r}" if name else f"worker group #{i}"


# ---- the rules ----------------------------------------------------------------------------------------


def validate_cluster_spec(
    spec_any: Any,
    annotations: Mapping[str, str],
    base: str,
    gates: Mapping[str, bool],
    *,
    annotations_path: str = "metadata.annotations",
) -> list[FieldError]:
    """All RayCluster spec errors for ``spec_any`` found at path ``base`` (``spec``, ``spec.rayClusterSpec``,
    ``spec.rayClusterConfig``). ``annotations`` are the owning object's annotations."""
    errs: list[FieldError] = []
    if not isinstance(spec_any, dict):
        if spec_any is None:
            errs.append(required(base))
        return errs
    spec: dict[str, Any] = spec_any
    autoscaling = autoscaling_enabled(spec)
    v2 = autoscaling_v2_enabled(spec)
    v2_env = head_env_v2(spec)

    head = spec.get("headGroupSpec")
    hpath = f"{base}.headGroupSpec"
    if head is None:
        errs.append(required(hpath, "a RayCluster needs a head group"))
    head = as_map(head)
    head_tpl = head.get("template")
    head_c = ray_container(head_tpl)
    head_cpath = f"{hpath}.template.spec.containers[{C.RAY_CONTAINER_INDEX}]"
    head_params = str_map(head.get("rayStartParams"))

    # Rule 1: a Ray container in every pod template.
    if not containers(head_tpl):
        errs.append(
            required(
                f"{hpath}.template.spec.containers",
                "the head pod template must have at least one container (the first one runs Ray)",
            )
        )
    _group_resources(errs, hpath, head_params, head.get("resources"))
    _group_labels(errs, hpath, head_params, head.get("labels"))
    _enum(
        errs,
        f"{hpath}.ingressOptions.pathType",
        as_map(head.get("ingressOptions")).get("pathType"),
        INGRESS_PATH_TYPES,
    )

    seen_names: dict[str, int] = {}
    groups = as_list(spec.get("workerGroupSpecs"))
    for i, g_any in enumerate(groups):
        gpath = f"{base}.workerGroupSpecs[{i}]"
        if not isinstance(g_any, dict):
            continue
        g: dict[str, Any] = g_any
        name = as_str(g.get("groupName"))
        # Webhook rule: group names identify pods (label ray.io/group) and must be unique.
        if not name:
            errs.append(required(f"{gpath}.groupName", "every worker group needs a name"))
        elif name in seen_names:
            errs.append(duplicate(f"{gpath}.groupName", name))
        else:
            seen_names[name] = i
        if not containers(g.get("template")):
            errs.append(
                required(
                    f"{gpath}.template.spec.containers",
                    "the worker pod template must have at least one container (the first one runs Ray)",
                )
            )
        mn, mx = as_int(g.get("minReplicas")), as_int(g.get("maxReplicas"))
        # Rule 2: without the autoscaler, min/max bound the static replica count and both must be given.
        if not autoscaling:
            if "minReplicas" not in g or g.get("minReplicas") is None:
                errs.append(
                    required(f"{gpath}.minReplicas", "must be set when enableInTreeAutoscaling is not true")
                )
            if "maxReplicas" not in g or g.get("maxReplicas") is None:
                errs.append(
                    required(f"{gpath}.maxReplicas", "must be set when enableInTreeAutoscaling is not true")
                )
        # Rule 3.
        if mn is not None and mn < 0:
            errs.append(invalid(f"{gpath}.minReplicas", mn, "must be greater than or equal to 0"))
        if mx is not None and mx < 0:
            errs.append(invalid(f"{gpath}.maxReplicas", mx, "must be greater than or equal to 0"))
        if mn is not None and mx is not None and mn >= 0 and mx >= 0 and mn > mx:
            errs.append(
                invalid(f"{gpath}.minReplicas", mn, f"must be less than or equal to maxReplicas ({mx})")
            )
        params = str_map(g.get("rayStartParams"))
        _group_resources(errs, gpath, params, g.get("resources"))  # rule 4
        _group_labels(errs, gpath, params, g.get("labels"))  # rule 5
        # Rule 6: per-group idle timeout is read only by autoscaler v2.
        idle = as_int(g.get("idleTimeoutSeconds"))
        if idle is not None:
            if idle < 0:
                errs.append(
                    invalid(f"{gpath}.idleTimeoutSeconds", idle, "must be greater than or equal to 0")
                )
            elif not (v2 or v2_env):
                errs.append(
                    forbidden(
                        f"{gpath}.idleTimeoutSeconds",
                        "is only honoured by Ray autoscaler v2; set spec.autoscalerOptions.version: v2",
                    )
                )
        # Rule 7: priority needs Ray >= 2.56.0 and autoscaler v2.
        prio = as_int(g.get("priority"))
        if prio is not None and prio != 0:
            ppath = f"{gpath}.priority"
            rv = as_str(spec.get("rayVersion")) or ""
            parsed = parse_generic_version(rv) if rv else None
            if not rv:
                errs.append(
                    invalid(ppath, prio, "requires rayVersion 2.56.0 or later, and rayVersion is not set")
                )
            elif parsed is None:
                errs.append(
                    invalid(
                        ppath,
                        prio,
                        f"requires rayVersion 2.56.0 or later; rayVersion {rv!r} is not a version",
                    )
                )
            elif not version_at_least(parsed, (2, 56, 0)):
                errs.append(invalid(ppath, prio, f"requires rayVersion 2.56.0 or later, got {rv}"))
            elif not (v2 or v2_env):
                errs.append(
                    invalid(
                        ppath,
                        prio,
                        "is only honoured by Ray autoscaler v2; set spec.autoscalerOptions.version: v2",
                    )
                )
        # Rule 12: suspending a group is how RayJob's DeleteWorkers works; it fights the autoscaler.
        if as_bool(g.get("suspend")) is True:
            if not gates.get(F.RAY_JOB_DELETION_POLICY, False):
                errs.append(
                    forbidden(f"{gpath}.suspend", f"requires the {F.RAY_JOB_DELETION_POLICY} feature gate")
                )
            if autoscaling:
                errs.append(
                    forbidden(
                        f"{gpath}.suspend",
                        "a worker group cannot be suspended while enableInTreeAutoscaling is true",
                    )
                )

    _gcs_rules(errs, spec, annotations, base, head, head_c, head_cpath, head_params, gates, annotations_path)

    # Rule 11: Redis credentials belong in gcsFaultToleranceOptions.
    if head_params.get("redis-username"):
        errs.append(
            forbidden(
                f"{hpath}.rayStartParams[redis-username]",
                "use gcsFaultToleranceOptions.redisUsername instead",
            )
        )
    hit = env_value(head_c, C.ENV_REDIS_USERNAME)
    if hit:
        errs.append(
            forbidden(
                f"{head_cpath}.env[{hit[0]}]",
                f"{C.ENV_REDIS_USERNAME} must not be set; use gcsFaultToleranceOptions.redisUsername instead",
            )
        )

    # Rules 13-15: autoscaler configuration.
    v2_hit = env_value(head_c, C.ENV_ENABLE_AUTOSCALER_V2)
    if not autoscaling and v2_hit and v2_hit[1] in TRUTHY_V2:
        errs.append(
            forbidden(
                f"{head_cpath}.env[{v2_hit[0]}]",
                f"{C.ENV_ENABLE_AUTOSCALER_V2}={v2_hit[1]} requires enableInTreeAutoscaling: true",
            )
        )
    aopts = as_map(spec.get("autoscalerOptions"))
    apath = f"{base}.autoscalerOptions"
    _enum(errs, f"{apath}.version", aopts.get("version"), AUTOSCALER_VERSIONS)
    _enum(errs, f"{apath}.upscalingMode", aopts.get("upscalingMode"), UPSCALING_MODES)
    if autoscaling:
        if as_str(aopts.get("version")) is not None and v2_hit:
            errs.append(
                forbidden(
                    f"{head_cpath}.env[{v2_hit[0]}]",
                    f"{C.ENV_ENABLE_AUTOSCALER_V2} must not be set together with spec.autoscalerOptions.version; use only the latter",
                )
            )
        if v2:
            rp = as_str(as_map(as_map(head.get("template")).get("spec")).get("restartPolicy"))
            if rp and rp != "Never":
                errs.append(
                    invalid(
                        f"{hpath}.template.spec.restartPolicy",
                        rp,
                        "must be Never or unset when autoscaler v2 is used",
                    )
                )
            for i, g_any in enumerate(groups):
                rp = as_str(as_map(as_map(as_map(g_any).get("template")).get("spec")).get("restartPolicy"))
                if rp and rp != "Never":
                    errs.append(
                        invalid(
                            f"{base}.workerGroupSpecs[{i}].template.spec.restartPolicy",
                            rp,
                            "must be Never or unset when autoscaler v2 is used",
                        )
                    )
    idle = as_int(aopts.get("idleTimeoutSeconds"))
    if idle is not None and idle < 0:
        errs.append(invalid(f"{apath}.idleTimeoutSeconds", idle, "must be greater than or equal to 0"))
    hit = env_value(aopts, C.ENV_KUBERAY_GEN_AUTOSCALER_START_CMD)
    if hit:
        errs.append(
            forbidden(
                f"{apath}.env[{hit[0]}]",
                f"{C.ENV_KUBERAY_GEN_AUTOSCALER_START_CMD} is managed by the operator and must not be set",
            )
        )

    _history_rules(errs, spec, base, head, groups, gates)  # rule 16
    _auth_rules(errs, spec, base)  # rule 17
    _network_policy_rules(errs, spec, base, groups, gates)  # rule 18
    _tls_rules(errs, spec, base, head_c, head_cpath, groups, aopts, gates)  # rule 19
    _env_source_rules(errs, base, head, groups)

    _enum(errs, f"{base}.managedBy", spec.get("managedBy"), MANAGED_BY)
    return errs


def _enum(errs: list[FieldError], path: str, value: Any, allowed: tuple[str, ...]) -> None:
    if isinstance(value, str) and value not in allowed:
        errs.append(not_supported(path, value, allowed))


def _group_resources(errs: list[FieldError], gpath: str, params: Mapping[str, str], resources: Any) -> None:
    set_params = [k for k in RESOURCE_PARAMS if params.get(k)]
    if set_params and as_map(resources):
        keys = ", ".join(set_params)
        errs.append(
            forbidden(
                f"{gpath}.resources",
                f"must not be set together with rayStartParams {keys}; set Ray resources in one place only",
            )
        )


def _group_labels(errs: list[FieldError], gpath: str, params: Mapping[str, str], labels: Any) -> None:
    if "labels" in params:
        errs.append(
            forbidden(f"{gpath}.rayStartParams[labels]", f"use {gpath.rsplit('.', 1)[-1]}.labels instead")
        )
    for key, val in as_map(labels).items():
        for msg in qualified_name(str(key)):
            errs.append(invalid(f"{gpath}.labels", key, msg))
        if isinstance(val, str):
            for msg in label_value(val):
                errs.append(invalid(f"{gpath}.labels[{key}]", val, msg))


def _gcs_rules(
    errs: list[FieldError],
    spec: dict[str, Any],
    annotations: Mapping[str, str],
    base: str,
    head: dict[str, Any],
    head_c: dict[str, Any],
    head_cpath: str,
    head_params: Mapping[str, str],
    gates: Mapping[str, bool],
    annotations_path: str,
) -> None:
    hpath = f"{base}.headGroupSpec"
    opts_any = spec.get("gcsFaultToleranceOptions")
    has_opts = isinstance(opts_any, dict)
    opts = as_map(opts_any)
    opath = f"{base}.gcsFaultToleranceOptions"
    # Rule 8: one way to switch GCS fault tolerance on.
    if annotations.get(C.ANN_FT_ENABLED) and has_opts:
        errs.append(
            forbidden(
                opath,
                f"must not be set together with the {C.ANN_FT_ENABLED} annotation; remove the annotation",
            )
        )
    # Rule 9: RAY_REDIS_ADDRESS alone would switch FT on behind the operator's back.
    redis_env = env_value(head_c, C.ENV_REDIS_ADDRESS)
    if not gcs_ft_enabled(spec, annotations) and redis_env:
        errs.append(
            forbidden(
                f"{head_cpath}.env[{redis_env[0]}]",
                f"{C.ENV_REDIS_ADDRESS} enables GCS fault tolerance implicitly; set gcsFaultToleranceOptions instead",
            )
        )
    if not has_opts:
        return
    # Rule 10: with options, the operator owns the Redis wiring.
    if head_params.get("redis-password"):
        errs.append(
            forbidden(
                f"{hpath}.rayStartParams[redis-password]",
                "use gcsFaultToleranceOptions.redisPassword instead",
            )
        )
    hit = env_value(head_c, C.ENV_REDIS_PASSWORD)
    if hit:
        errs.append(
            forbidden(
                f"{head_cpath}.env[{hit[0]}]",
                f"{C.ENV_REDIS_PASSWORD} must not be set when gcsFaultToleranceOptions is set; use gcsFaultToleranceOptions.redisPassword",
            )
        )
    if redis_env:
        errs.append(
            forbidden(
                f"{head_cpath}.env[{redis_env[0]}]",
                f"{C.ENV_REDIS_ADDRESS} must not be set when gcsFaultToleranceOptions is set; use gcsFaultToleranceOptions.redisAddress",
            )
        )
    if annotations.get(C.ANN_EXTERNAL_STORAGE_NAMESPACE):
        errs.append(
            forbidden(
                f"{annotations_path}[{C.ANN_EXTERNAL_STORAGE_NAMESPACE}]",
                "must not be set when gcsFaultToleranceOptions is set; use gcsFaultToleranceOptions.externalStorageNamespace",
            )
        )
    backend_raw = opts.get("backend")
    _enum(errs, f"{opath}.backend", backend_raw, GCS_BACKENDS)
    storage_any = opts.get("storage")
    storage = as_map(storage_any)
    spath = f"{opath}.storage"
    _enum(errs, f"{spath}.deletionPolicy", storage.get("deletionPolicy"), GCS_DELETION_POLICIES)
    backend = as_str(backend_raw) or "redis"
    if backend == "rocksdb":
        if not gates.get(F.GCS_FT_EMBEDDED_STORAGE, False):
            errs.append(
                forbidden(
                    f"{opath}.backend", f"'rocksdb' requires the {F.GCS_FT_EMBEDDED_STORAGE} feature gate"
                )
            )
        for key in ("redisAddress", "redisUsername", "redisPassword", "externalStorageNamespace"):
            if opts.get(key) not in (None, ""):
                errs.append(forbidden(f"{opath}.{key}", "only applies to the 'redis' backend"))
        if storage.get("claimName"):
            for key in ("size", "storageClassName", "accessModes"):
                # As KubeRay: size/storageClassName count when present at all, accessModes when non-empty.
                if storage.get(key) is not None and storage.get(key) != []:
                    errs.append(
                        forbidden(
                            f"{spath}.{key}", "must not be set together with claimName (an existing PVC)"
                        )
                    )
        for name in (C.ENV_GCS_STORAGE, C.ENV_GCS_STORAGE_PATH):
            hit = env_value(head_c, name)
            if hit:
                errs.append(
                    forbidden(
                        f"{head_cpath}.env[{hit[0]}]",
                        f"{name} is managed by the operator for the 'rocksdb' backend",
                    )
                )
        for j, m in enumerate(as_list(head_c.get("volumeMounts"))):
            m = as_map(m)
            if m.get("name") == C.GCS_STORAGE_VOLUME_NAME or m.get("mountPath") == C.GCS_STORAGE_MOUNT_PATH:
                errs.append(
                    forbidden(
                        f"{head_cpath}.volumeMounts[{j}]",
                        f"a mount named {C.GCS_STORAGE_VOLUME_NAME!r} or at {C.GCS_STORAGE_MOUNT_PATH} is managed by the operator for the 'rocksdb' backend",
                    )
                )
        for j, v in enumerate(as_list(as_map(as_map(head.get("template")).get("spec")).get("volumes"))):
            if as_map(v).get("name") == C.GCS_STORAGE_VOLUME_NAME:
                errs.append(
                    forbidden(
                        f"{hpath}.template.spec.volumes[{j}]",
                        f"a volume named {C.GCS_STORAGE_VOLUME_NAME!r} is managed by the operator for the 'rocksdb' backend",
                    )
                )
    elif backend == "redis" and isinstance(storage_any, dict):
        errs.append(forbidden(spath, "only applies to the 'rocksdb' backend"))


def _history_rules(
    errs: list[FieldError],
    spec: dict[str, Any],
    base: str,
    head: dict[str, Any],
    groups: list[Any],
    gates: Mapping[str, bool],
) -> None:
    hso_any = spec.get("historyServerOptions")
    if not isinstance(hso_any, dict):
        return
    path = f"{base}.historyServerOptions"
    if not gates.get(F.RAY_CLUSTER_HISTORY_SERVER, False):
        errs.append(forbidden(path, f"requires the {F.RAY_CLUSTER_HISTORY_SERVER} feature gate"))
    co_any = hso_any.get("collectorOptions")
    cpath = f"{path}.collectorOptions"
    if not isinstance(co_any, dict):
        errs.append(required(cpath))
    else:
        if not as_str(co_any.get("image")):
            errs.append(required(f"{cpath}.image"))
        envs = {
            n: (i, v, as_map(as_list(co_any.get("env"))[i]).get("valueFrom"))
            for i, n, v in env_entries(co_any)
        }

        def has_value(n: str) -> bool:
            e = envs.get(n)
            return e is not None and (bool(e[1]) or e[2] is not None)

        for n in HISTORY_MANAGED_ENV:
            if n in envs:
                errs.append(
                    forbidden(
                        f"{cpath}.env[{envs[n][0]}]", f"{n} is managed by the operator and must not be set"
                    )
                )
        backend_e = envs.get("STORAGE_BACKEND")
        backend = backend_e[1] if backend_e and isinstance(backend_e[1], str) else ""
        if not backend:
            errs.append(required(f"{cpath}.env", "STORAGE_BACKEND must be set with a literal value"))
        else:
            need: list[str] = []
            up = backend.upper()
            if up == "GCS":
                need = ["GCS_BUCKET"]
            elif up == "S3":
                need = ["S3_REGION"]
            elif up == "ALIYUNOSS":
                need = ["ALIYUN_BUCKET", "ALIYUN_ENDPOINT", "ALIYUN_REGION"]
            elif up == "AZUREBLOB":
                mode_e = envs.get("AZURE_STORAGE_AUTH_MODE")
                mode = str(mode_e[1]).strip().lower() if mode_e and mode_e[1] else ""
                if mode == "connection_string":
                    need = ["AZURE_STORAGE_CONNECTION_STRING"]
                elif mode in ("workload_identity", "default"):
                    need = ["AZURE_STORAGE_ACCOUNT_URL"]
                elif not has_value("AZURE_STORAGE_CONNECTION_STRING") and not has_value(
                    "AZURE_STORAGE_ACCOUNT_URL"
                ):
                    errs.append(
                        required(
                            f"{cpath}.env",
                            "AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL must be set when STORAGE_BACKEND is AZUREBLOB",
                        )
                    )
            for n in need:
                if not has_value(n):
                    errs.append(
                        required(f"{cpath}.env", f"{n} must be set when STORAGE_BACKEND is {backend}")
                    )
    for j, c in enumerate(containers(head.get("template"))):
        if as_map(c).get("name") == C.HISTORY_COLLECTOR_CONTAINER_NAME:
            errs.append(
                forbidden(
                    f"{base}.headGroupSpec.template.spec.containers[{j}].name",
                    f"{C.HISTORY_COLLECTOR_CONTAINER_NAME!r} is reserved for the history collector sidecar",
                )
            )
    for i, g in enumerate(groups):
        for j, c in enumerate(containers(as_map(g).get("template"))):
            if as_map(c).get("name") == C.HISTORY_COLLECTOR_CONTAINER_NAME:
                errs.append(
                    forbidden(
                        f"{base}.workerGroupSpecs[{i}].template.spec.containers[{j}].name",
                        f"{C.HISTORY_COLLECTOR_CONTAINER_NAME!r} is reserved for the history collector sidecar",
                    )
                )


ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef")


def _env_source_rules(errs: list[FieldError], base: str, head: dict[str, Any], groups: list[Any]) -> None:
    """An env var takes its value from at most one place, as the Pod API requires (ValidateEnv in
    kubernetes/pkg/apis/core/validation). The CRD schema lets `valueFrom: {}` through; admitted, it makes
    every Pod (and a GCS FT cluster's Redis cleanup Job, which blocks its deletion) fail to be created."""
    templates = [(f"{base}.headGroupSpec", head.get("template"))] + [
        (f"{base}.workerGroupSpecs[{i}]", as_map(g).get("template")) for i, g in enumerate(groups)
    ]
    for gpath, tpl in templates:
        pod_spec = as_map(as_map(tpl).get("spec"))
        for field in ("initContainers", "containers"):
            for j, c in enumerate(as_list(pod_spec.get(field))):
                for k, e in enumerate(as_list(as_map(c).get("env"))):
                    vf = as_map(e).get("valueFrom")
                    if vf is None:
                        continue
                    path = f"{gpath}.template.spec.{field}[{j}].env[{k}]"
                    given = [s for s in ENV_SOURCES if as_map(vf).get(s) is not None]
                    if as_map(e).get("value"):
                        errs.append(
                            invalid(f"{path}.valueFrom", "", "may not be specified when `value` is not empty")
                        )
                    elif not given:
                        errs.append(
                            invalid(
                                f"{path}.valueFrom",
                                "",
                                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, "
                                "`secretKeyRef` or `fileKeyRef`",
                            )
                        )
                    elif len(given) > 1:
                        errs.append(
                            invalid(
                                f"{path}.valueFrom",
                                "",
                                "may not have more than one field specified at a time",
                            )
                        )


def _auth_rules(errs: list[FieldError], spec: dict[str, Any], base: str) -> None:
    auth = as_map(spec.get("authOptions"))
    path = f"{base}.authOptions"
    _enum(errs, f"{path}.mode", auth.get("mode"), AUTH_MODES)
    k8s = k8s_token_auth(spec)
    if auth_enabled(spec):
        rv = as_str(spec.get("rayVersion")) or ""
        parsed = parse_generic_version(rv) if rv else None
        if not rv:
            errs.append(
                required(f"{base}.rayVersion", "must be 2.52.0 or later when authOptions.mode is 'token'")
            )
        elif parsed is None:
            errs.append(
                invalid(
                    f"{base}.rayVersion",
                    rv,
                    "is not a version; authOptions.mode 'token' needs Ray 2.52.0 or later",
                )
            )
        elif not version_at_least(parsed, (2, 52, 0)):
            errs.append(
                invalid(f"{base}.rayVersion", rv, "must be 2.52.0 or later when authOptions.mode is 'token'")
            )
        elif k8s and not version_at_least(parsed, (2, 55, 0)):
            errs.append(
                invalid(
                    f"{base}.rayVersion",
                    rv,
                    "must be 2.55.0 or later when authOptions.enableK8sTokenAuth is true",
                )
            )
        if k8s and as_str(auth.get("secretName")):
            errs.append(forbidden(f"{path}.secretName", "must not be set when enableK8sTokenAuth is true"))
    elif k8s:
        errs.append(invalid(f"{path}.enableK8sTokenAuth", True, "requires authOptions.mode: token"))


def _network_policy_rules(
    errs: list[FieldError], spec: dict[str, Any], base: str, groups: list[Any], gates: Mapping[str, bool]
) -> None:
    np_any = spec.get("networkPolicy")
    if not isinstance(np_any, dict):
        return
    path = f"{base}.networkPolicy"
    if not gates.get(F.RAY_CLUSTER_NETWORK_POLICY, False):
        errs.append(forbidden(path, f"requires the {F.RAY_CLUSTER_NETWORK_POLICY} feature gate"))
    _enum(errs, f"{path}.mode", np_any.get("mode"), NETWORK_POLICY_MODES)
    mode = as_str(np_any.get("mode")) or "DenyAll"

    def rules(p: str, r: dict[str, Any]) -> None:
        if mode == "DenyAllEgress" and as_list(r.get("ingressRules")):
            errs.append(forbidden(f"{p}.ingressRules", f"ingress is not restricted when mode is {mode!r}"))
        if mode == "DenyAllIngress" and as_list(r.get("egressRules")):
            errs.append(forbidden(f"{p}.egressRules", f"egress is not restricted when mode is {mode!r}"))

    rules(f"{path}.head", as_map(np_any.get("head")))
    rules(f"{path}.worker", as_map(np_any.get("worker")))
    names: set[str] = set()
    # Group names become part of NetworkPolicy object names, so they must be DNS labels here.
    for i, g in enumerate(groups):
        name = as_str(as_map(g).get("groupName"))
        if name is None:
            continue
        names.add(name)
        if name:
            for msg in dns1123_label(name):
                errs.append(
                    invalid(
                        f"{base}.workerGroupSpecs[{i}].groupName",
                        name,
                        msg + " (required when networkPolicy is set)",
                    )
                )
    for k, wg_any in enumerate(as_list(np_any.get("workerGroups"))):
        wg = as_map(wg_any)
        wpath = f"{path}.workerGroups[{k}]"
        rules(wpath, wg)
        gname = as_str(wg.get("groupName"))
        if gname is not None and gname not in names:
            errs.append(
                invalid(f"{wpath}.groupName", gname, "does not match any workerGroupSpecs[].groupName")
            )


def _tls_rules(
    errs: list[FieldError],
    spec: dict[str, Any],
    base: str,
    head_c: dict[str, Any],
    head_cpath: str,
    groups: list[Any],
    aopts: dict[str, Any],
    gates: Mapping[str, bool],
) -> None:
    if not isinstance(spec.get("tlsOptions"), dict):
        return
    if not gates.get(F.RAY_CLUSTER_MTLS, False):
        errs.append(forbidden(f"{base}.tlsOptions", f"requires the {F.RAY_CLUSTER_MTLS} feature gate"))
    if not tls_enabled(spec):
        return
    why = "the operator manages TLS when tlsOptions.enabled is true"

    def container(c: dict[str, Any], cpath: str) -> None:
        for i, n, _ in env_entries(c):
            if n in TLS_ENV:
                errs.append(forbidden(f"{cpath}.env[{i}]", f"{n} must not be set; {why}"))
        for j, m in enumerate(as_list(c.get("volumeMounts"))):
            m = as_map(m)
            if m.get("name") == C.RAY_TLS_VOLUME_NAME or m.get("mountPath") == C.RAY_TLS_MOUNT_PATH:
                errs.append(
                    forbidden(
                        f"{cpath}.volumeMounts[{j}]",
                        f"a mount named {C.RAY_TLS_VOLUME_NAME!r} or at {C.RAY_TLS_MOUNT_PATH} is reserved; {why}",
                    )
                )

    if head_c:
        container(head_c, head_cpath)
    for i, g in enumerate(groups):
        wc = ray_container(as_map(g).get("template"))
        if wc:
            container(wc, f"{base}.workerGroupSpecs[{i}].template.spec.containers[{C.RAY_CONTAINER_INDEX}]")
    if aopts:
        container(aopts, f"{base}.autoscalerOptions")


def validate_cluster_update(old_spec: Any, new_spec: Any, base: str) -> list[FieldError]:
    """Update rules KubeRay's CRD enforces with CEL transition rules (docs/compatibility.md#custom-resources)."""
    errs: list[FieldError] = []
    o, n = as_map(old_spec), as_map(new_spec)
    oo, no = o.get("gcsFaultToleranceOptions"), n.get("gcsFaultToleranceOptions")
    # The backend decides where GCS keeps its state; switching it would silently lose that state.
    if isinstance(oo, dict) and isinstance(no, dict):
        ob, nb = as_str(oo.get("backend")) or "redis", as_str(no.get("backend")) or "redis"
        if ob != nb:
            errs.append(
                invalid(f"{base}.gcsFaultToleranceOptions.backend", nb, f"field is immutable (was {ob!r})")
            )
    return errs


def validate_managed_by_update(old_spec: Any, new_spec: Any, path: str) -> list[FieldError]:
    ov, nv = as_map(old_spec).get("managedBy"), as_map(new_spec).get("managedBy")
    if ov != nv:
        return [invalid(path, nv, "field is immutable")]
    return []


def unique_group_names(spec: Any, base: str) -> list[FieldError]:
    """The only spec rule KubeRay's own webhook checks; kept separate for callers that want just it."""
    out: list[FieldError] = []
    seen: set[str] = set()
    for i, g in enumerate(as_list(as_map(spec).get("workerGroupSpecs"))):
        name = as_str(as_map(g).get("groupName"))
        if name is None:
            continue
        if name in seen:
            out.append(duplicate(f"{base}.workerGroupSpecs[{i}].groupName", name))
        seen.add(name)
    return out
