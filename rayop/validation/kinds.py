"""Entry points: validate a whole RayCluster, RayJob or RayService manifest (create, or update with ``old``).

Every function returns all problems at once as field errors, and never raises, whatever the input.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec

import yaml

from rayop.api import constants as C
from rayop.api import features as F
from rayop.api.spec import autoscaling_enabled
from rayop.validation import _shape as S
from rayop.validation._parse import parse_go_atoi, parse_go_duration
from rayop.validation._shape import as_bool, as_int, as_list, as_map, as_str, str_map
from rayop.validation.cluster import (
    k8s_token_auth,
    validate_cluster_spec,
    validate_cluster_update,
    validate_managed_by_update,
)
from rayop.validation.errors import (
    FieldError,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
    too_long,
)
from rayop.validation.names import dns1035_label

P = ParamSpec("P")

SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
DELETION_POLICIES = ("DeleteCluster", "DeleteWorkers", "DeleteSelf", "DeleteNone")
RULE_JOB_STATUSES = ("SUCCEEDED", "FAILED")
RULE_DEPLOYMENT_STATUSES = ("Failed",)
RC_UPGRADE_TYPES = ("Recreate", "None")
RS_UPGRADE_TYPES = ("NewClusterWithIncrementalUpgrade", "NewCluster", "None")
INCREMENTAL = "NewClusterWithIncrementalUpgrade"
# Generated names: at most 5 random characters follow generateName.
_GENERATED_SUFFIX = 5


def _safe(fn: Callable[P, list[FieldError]]) -> Callable[P, list[FieldError]]:
    """Guard the entry points: a validator that crashes would turn a bad manifest into a webhook 500 and,
    with failurePolicy Fail, block the user with no explanation. Report the crash as a field error."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> list[FieldError]:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # the contract is "never raise"; say what happened instead
            return [invalid("object", None, f"internal validation error ({type(e).__name__}: {e})")]

    return wrapper


def _metadata(obj: Mapping[str, Any], kind: str, limit: int, errs: list[FieldError]) -> dict[str, Any]:
    md_any = obj.get("metadata")
    if md_any is None:
        errs.append(required("metadata"))
        return {}
    S.check(md_any, S.METADATA, "metadata", errs)
    md = as_map(md_any)
    name = as_str(md.get("name"))
    gen = as_str(md.get("generateName"))
    if not name:
        if gen:
            # The API server fills the name before validating admission; this path is for callers that
            # validate a manifest before sending it.
            if len(gen) + _GENERATED_SUFFIX > limit:
                errs.append(
                    too_long(
                        "metadata.generateName",
                        gen,
                        limit - _GENERATED_SUFFIX,
                        f"a {kind} name may not be more than {limit} characters",
                    )
                )
        elif "name" in md or "generateName" not in md:
            errs.append(required("metadata.name", "name or generateName is required"))
        return md
    if len(name) > limit:
        why = (
            "Service names append '-serve-svc' to it"
            if kind == C.KIND_RAYCLUSTER
            else "the operator appends 6 characters to name its RayCluster"
        )
        errs.append(too_long("metadata.name", name, limit, why))
    for msg in dns1035_label(name):
        if msg.startswith("must be no more than"):
            continue  # the kind's tighter limit above already says it
        errs.append(invalid("metadata.name", name, msg))
    return md


def _spec(obj: Mapping[str, Any], schema: S.Schema, errs: list[FieldError]) -> dict[str, Any] | None:
    spec = obj.get("spec")
    if spec is None:
        errs.append(required("spec"))
        return None
    S.check(spec, schema, "spec", errs)
    return spec if isinstance(spec, dict) else None


def _gates(gates: Mapping[str, bool] | None) -> dict[str, bool]:
    return F.resolve_gates(gates)


def _not_a_map(obj: Any) -> list[FieldError] | None:
    if not isinstance(obj, dict):
        return [invalid("object", S.json_type(obj), "must be a JSON object")]
    return None


def _raycluster(obj: Any, gates: Mapping[str, bool] | None, old: Any) -> list[FieldError]:
    """All errors of a RayCluster; with ``old``, also the update rules."""
    bad = _not_a_map(obj)
    if bad:
        return bad
    g = _gates(gates)
    errs: list[FieldError] = []
    md = _metadata(obj, C.KIND_RAYCLUSTER, C.MAX_RAYCLUSTER_NAME_LENGTH, errs)
    annotations = str_map(md.get("annotations"))
    labels = str_map(md.get("labels"))
    spec = _spec(obj, S.RAYCLUSTER_SPEC, errs)
    if spec is None:
        return errs
    errs += validate_cluster_spec(spec, annotations, "spec", g)
    up = as_map(spec.get("upgradeStrategy"))
    utype = up.get("type")
    if isinstance(utype, str):
        if utype not in RC_UPGRADE_TYPES:
            errs.append(not_supported("spec.upgradeStrategy.type", utype, RC_UPGRADE_TYPES))
        creator = labels.get(C.LABEL_ORIGINATED_FROM_CRD, "")
        if creator in (C.KIND_RAYJOB, C.KIND_RAYSERVICE):
            errs.append(
                forbidden(
                    "spec.upgradeStrategy.type",
                    f"must not be set on a RayCluster created by a {creator}; the {creator} decides how its cluster is replaced",
                )
            )
    if old is not None:
        old_spec = as_map(as_map(old).get("spec"))
        errs += validate_managed_by_update(old_spec, spec, "spec.managedBy")
        errs += validate_cluster_update(old_spec, spec, "spec")
    return errs


@_safe
def validate_raycluster_status(obj: Any) -> list[FieldError]:
    """Status invariant the RayCluster controller relies on (never both Suspending and Suspended)."""
    conds = as_list(as_map(as_map(obj).get("status")).get("conditions"))
    true = {as_str(as_map(c).get("type")) for c in conds if as_map(c).get("status") == "True"}
    if C.COND_SUSPENDING in true and C.COND_SUSPENDED in true:
        return [
            invalid(
                "status.conditions",
                None,
                f"{C.COND_SUSPENDING} and {C.COND_SUSPENDED} must not both be true",
            )
        ]
    return []


# libyaml parses a serve config ~10x faster than the pure-Python loader; admission latency is per request.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YAML_LOADER)


@functools.lru_cache(maxsize=128)
def parse_runtime_env_yaml(text: str) -> tuple[Any, str | None]:
    """(parsed, error) for runtimeEnvYAML; KubeRay unmarshals it into a map, so a non-map is an error."""
    if not text.strip():
        return None, None
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as e:
        return None, f"is not valid YAML: {str(e).splitlines()[0]}"
    except Exception as e:  # yaml can raise e.g. RecursionError on adversarial input
        return None, f"is not valid YAML: {type(e).__name__}"
    if data is None:
        return None, None
    if not isinstance(data, dict):
        return data, f"must be a YAML mapping (got {S.json_type(data)})"
    return data, None


# Cached: validation and warnings both parse the same text for one admission. Callers must not mutate.
@functools.lru_cache(maxsize=128)
def parse_serve_config(text: str) -> tuple[Any, str | None]:
    if not text.strip():
        return None, None
    try:
        return _load_yaml(text), None
    except yaml.YAMLError as e:
        return None, f"is not valid YAML: {str(e).splitlines()[0]}"
    except Exception as e:
        return None, f"is not valid YAML: {type(e).__name__}"


def _rayjob(obj: Any, gates: Mapping[str, bool] | None, old: Any) -> list[FieldError]:
    """All errors of a RayJob (KubeRay ``ValidateRayJobSpec``, ``utils/validation.go``)."""
    bad = _not_a_map(obj)
    if bad:
        return bad
    g = _gates(gates)
    errs: list[FieldError] = []
    md = _metadata(obj, C.KIND_RAYJOB, C.MAX_RAYJOB_NAME_LENGTH, errs)
    annotations = str_map(md.get("annotations"))
    spec = _spec(obj, S.RAYJOB_SPEC, errs)
    if spec is None:
        return errs
    mode = as_str(spec.get("submissionMode")) or "K8sJobMode"
    if isinstance(spec.get("submissionMode"), str) and spec["submissionMode"] not in SUBMISSION_MODES:
        errs.append(not_supported("spec.submissionMode", spec["submissionMode"], SUBMISSION_MODES))
    shutdown = as_bool(spec.get("shutdownAfterJobFinishes")) is True
    suspend = as_bool(spec.get("suspend")) is True
    selector = str_map(spec.get("clusterSelector"))
    selector_mode = bool(as_map(spec.get("clusterSelector")))
    rc_any = spec.get("rayClusterSpec")
    rc = as_map(rc_any)
    backoff = as_int(spec.get("backoffLimit"))

    # KubeRay accepts an empty entrypoint and then fails the submission; only InteractiveMode needs none.
    if mode != "InteractiveMode" and not (as_str(spec.get("entrypoint")) or "").strip():
        errs.append(required("spec.entrypoint", f"must be set in {mode}"))
    if suspend and not shutdown:
        errs.append(
            forbidden("spec.suspend", "a RayJob can be suspended only when shutdownAfterJobFinishes is true")
        )
    ttl = as_int(spec.get("ttlSecondsAfterFinished"))
    if ttl is not None and ttl < 0:
        errs.append(invalid("spec.ttlSecondsAfterFinished", ttl, "must be greater than or equal to 0"))
    if ttl is not None and ttl > 0 and not shutdown:
        errs.append(invalid("spec.ttlSecondsAfterFinished", ttl, "requires shutdownAfterJobFinishes: true"))
    _deletion_strategy(errs, spec, shutdown, selector_mode, autoscaling_enabled(rc), g)

    if suspend and selector_mode:
        errs.append(forbidden("spec.suspend", "a RayJob that uses clusterSelector cannot be suspended"))
    if rc_any is None and not selector_mode:
        errs.append(required("spec.rayClusterSpec", "one of rayClusterSpec or clusterSelector must be set"))
    if selector_mode:
        if not selector.get(C.LABEL_CLUSTER):
            errs.append(
                required(
                    f"spec.clusterSelector[{C.LABEL_CLUSTER}]", "must name the RayCluster to run the job on"
                )
            )
        if mode == "SidecarMode":
            errs.append(forbidden("spec.submissionMode", "SidecarMode cannot be used with clusterSelector"))
        if backoff is not None and backoff > 0:
            errs.append(forbidden("spec.backoffLimit", "retries are not supported with clusterSelector"))
    # Retries would keep spec.jobId and skip the Waiting state (KubeRay issue #3525).
    if mode == "InteractiveMode" and backoff is not None and backoff > 0:
        errs.append(forbidden("spec.backoffLimit", "retries are not supported in InteractiveMode"))
    if mode == "SidecarMode":
        if spec.get("submitterPodTemplate") is not None:
            errs.append(forbidden("spec.submitterPodTemplate", "is not used in SidecarMode"))
        if spec.get("submitterConfig") is not None:
            errs.append(forbidden("spec.submitterConfig", "is not used in SidecarMode"))
        rp = as_str(
            as_map(as_map(as_map(rc.get("headGroupSpec")).get("template")).get("spec")).get("restartPolicy")
        )
        if rp and rp != "Never":
            errs.append(
                invalid(
                    "spec.rayClusterSpec.headGroupSpec.template.spec.restartPolicy",
                    rp,
                    "must be Never or unset in SidecarMode",
                )
            )
    if isinstance(rc_any, dict):
        if k8s_token_auth(rc):
            errs.append(
                forbidden(
                    "spec.rayClusterSpec.authOptions.enableK8sTokenAuth",
                    "Kubernetes token auth is not supported for RayJob",
                )
            )
        errs += validate_cluster_spec(rc, annotations, "spec.rayClusterSpec", g)
    renv = as_str(spec.get("runtimeEnvYAML"))
    if renv:
        _, err = parse_runtime_env_yaml(renv)
        if err:
            errs.append(invalid("spec.runtimeEnvYAML", renv, err))
    for field in ("activeDeadlineSeconds", "preRunningDeadlineSeconds"):
        v = as_int(spec.get(field))
        if v is not None and v <= 0:
            errs.append(invalid(f"spec.{field}", v, "must be greater than 0"))
    if backoff is not None and backoff < 0:
        errs.append(invalid("spec.backoffLimit", backoff, "must be greater than or equal to 0"))
    sub_backoff = as_int(as_map(spec.get("submitterConfig")).get("backoffLimit"))
    if sub_backoff is not None and sub_backoff < 0:
        errs.append(
            invalid("spec.submitterConfig.backoffLimit", sub_backoff, "must be greater than or equal to 0")
        )
    er = as_str(spec.get("entrypointResources"))
    if er:
        try:
            parsed = json.loads(er)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in parsed.values()
        ):
            errs.append(
                invalid(
                    "spec.entrypointResources",
                    er,
                    'must be a JSON object of resource names to numbers, e.g. {"custom": 1}',
                )
            )
    for field in ("entrypointNumCpus", "entrypointNumGpus"):
        v = spec.get(field)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
            errs.append(invalid(f"spec.{field}", v, "must be greater than or equal to 0"))
    _enum_managed_by(errs, spec)
    if old is not None:
        old_spec = as_map(as_map(old).get("spec"))
        errs += validate_managed_by_update(old_spec, spec, "spec.managedBy")
        errs += validate_cluster_update(as_map(old_spec.get("rayClusterSpec")), rc, "spec.rayClusterSpec")
    return errs


def _enum_managed_by(errs: list[FieldError], spec: Mapping[str, Any]) -> None:
    mb = spec.get("managedBy")
    allowed = (C.MANAGED_BY_KUBERAY, C.MANAGED_BY_MULTIKUEUE)
    if isinstance(mb, str) and mb not in allowed:
        errs.append(not_supported("spec.managedBy", mb, allowed))


def _deletion_strategy(
    errs: list[FieldError],
    spec: Mapping[str, Any],
    shutdown: bool,
    selector_mode: bool,
    autoscaling: bool,
    gates: Mapping[str, bool],
) -> None:
    ds_any = spec.get("deletionStrategy")
    if not isinstance(ds_any, dict):
        return
    path = "spec.deletionStrategy"
    if not gates.get(F.RAY_JOB_DELETION_POLICY, False):
        errs.append(forbidden(path, f"requires the {F.RAY_JOB_DELETION_POLICY} feature gate"))
    on_s, on_f = ds_any.get("onSuccess"), ds_any.get("onFailure")
    legacy = on_s is not None or on_f is not None
    rules = as_list(ds_any.get("deletionRules"))
    if "deletionRules" in ds_any and isinstance(ds_any.get("deletionRules"), list) and not rules:
        errs.append(required(f"{path}.deletionRules", "must have at least 1 item when set"))
    if rules and shutdown:
        errs.append(
            forbidden(
                f"{path}.deletionRules", "must not be used together with shutdownAfterJobFinishes: true"
            )
        )
    if rules and legacy:
        errs.append(forbidden(path, "legacy onSuccess/onFailure and deletionRules cannot be used together"))
    if legacy and not rules:
        policies: dict[str, str] = {}
        for key, val in (("onSuccess", on_s), ("onFailure", on_f)):
            if val is None:
                errs.append(
                    required(f"{path}.{key}", "onSuccess and onFailure must both be set when either is")
                )
                continue
            pol = as_map(val).get("policy")
            if pol is None:
                errs.append(required(f"{path}.{key}.policy"))
            elif isinstance(pol, str):
                if pol not in DELETION_POLICIES:
                    errs.append(not_supported(f"{path}.{key}.policy", pol, DELETION_POLICIES))
                else:
                    policies[key] = pol
        for key, pol in policies.items():
            when = "on success" if key == "onSuccess" else "on failure"
            if selector_mode and pol in ("DeleteCluster", "DeleteWorkers"):
                errs.append(
                    forbidden(f"{path}.{key}.policy", f"{pol} {when} is not supported with clusterSelector")
                )
            if autoscaling and pol == "DeleteWorkers":
                errs.append(
                    forbidden(
                        f"{path}.{key}.policy",
                        "DeleteWorkers is not supported while enableInTreeAutoscaling is true",
                    )
                )
            if shutdown and pol == "DeleteNone":
                errs.append(
                    invalid(f"{path}.{key}.policy", pol, "contradicts shutdownAfterJobFinishes: true")
                )
    elif not legacy and not rules:
        errs.append(required(path, "set both onSuccess and onFailure, or a non-empty deletionRules list"))
    if not rules or legacy:
        return
    # (condition kind, condition value) -> policy -> (rule index, ttl)
    groups: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
    for i, r_any in enumerate(rules):
        rp = f"{path}.deletionRules[{i}]"
        r = as_map(r_any)
        pol = r.get("policy")
        if pol is None:
            errs.append(required(f"{rp}.policy"))
        elif isinstance(pol, str) and pol not in DELETION_POLICIES:
            errs.append(not_supported(f"{rp}.policy", pol, DELETION_POLICIES))
        cond_any = r.get("condition")
        cond = as_map(cond_any)
        js, ds = cond.get("jobStatus"), cond.get("jobDeploymentStatus")
        ttl = as_int(cond.get("ttlSeconds"))
        ok = True
        if cond_any is None:
            errs.append(required(f"{rp}.condition"))
            ok = False
        elif js is not None and ds is not None:
            errs.append(forbidden(f"{rp}.condition", "jobStatus and jobDeploymentStatus cannot both be set"))
            ok = False
        elif js is None and ds is None:
            errs.append(
                required(f"{rp}.condition", "exactly one of jobStatus or jobDeploymentStatus must be set")
            )
            ok = False
        if isinstance(js, str) and js not in RULE_JOB_STATUSES:
            errs.append(not_supported(f"{rp}.condition.jobStatus", js, RULE_JOB_STATUSES))
            ok = False
        if isinstance(ds, str) and ds not in RULE_DEPLOYMENT_STATUSES:
            errs.append(not_supported(f"{rp}.condition.jobDeploymentStatus", ds, RULE_DEPLOYMENT_STATUSES))
            ok = False
        if ttl is not None and ttl < 0:
            errs.append(invalid(f"{rp}.condition.ttlSeconds", ttl, "must be greater than or equal to 0"))
            ok = False
        if not isinstance(pol, str) or pol not in DELETION_POLICIES:
            continue
        if selector_mode and pol in ("DeleteCluster", "DeleteWorkers"):
            errs.append(forbidden(f"{rp}.policy", f"{pol} is not supported with clusterSelector"))
            continue
        if autoscaling and pol == "DeleteWorkers":
            errs.append(
                forbidden(
                    f"{rp}.policy", "DeleteWorkers is not supported while enableInTreeAutoscaling is true"
                )
            )
            continue
        if not ok:
            continue
        ckey = ("jobStatus", str(js)) if js is not None else ("jobDeploymentStatus", str(ds))
        per = groups.setdefault(ckey, {})
        if pol in per:
            errs.append(duplicate(f"{rp}", {"policy": pol, ckey[0]: ckey[1]}))
            continue
        per[pol] = (i, ttl or 0)
    # Deleting workers must not come after deleting the cluster, nor the cluster after the RayJob itself.
    order = ("DeleteWorkers", "DeleteCluster", "DeleteSelf")
    for (ckind, cval), per in groups.items():
        prev: tuple[str, int] | None = None
        for pol in order:
            if pol not in per:
                continue
            idx, ttl = per[pol]
            if prev is not None and ttl < prev[1]:
                errs.append(
                    invalid(
                        f"{path}.deletionRules[{idx}].condition.ttlSeconds",
                        ttl,
                        f"must be greater than or equal to the {prev[0]} ttlSeconds ({prev[1]}) for {ckind} {cval}",
                    )
                )
            prev = (pol, ttl)


@_safe
def validate_rayjob_status(obj: Any) -> list[FieldError]:
    spec, status = as_map(as_map(obj).get("spec")), as_map(as_map(obj).get("status"))
    if status.get("jobDeploymentStatus") == "Waiting" and spec.get("submissionMode") != "InteractiveMode":
        return [invalid("status.jobDeploymentStatus", "Waiting", "is only valid in InteractiveMode")]
    return []


def _initializing_timeout(annotations: Mapping[str, str], errs: list[FieldError]) -> None:
    v = annotations.get(C.ANN_INITIALIZING_TIMEOUT)
    if not v:
        return
    path = f"metadata.annotations[{C.ANN_INITIALIZING_TIMEOUT}]"
    d = parse_go_duration(v)
    if d is not None:
        if d <= 0:
            errs.append(invalid(path, v, "must be a positive duration"))
        return
    n = parse_go_atoi(v)
    if n is not None:
        if n <= 0:
            errs.append(invalid(path, v, "must be a positive integer (seconds)"))
        return
    errs.append(
        invalid(path, v, "must be a Go duration such as '5m' or '1h', or a positive number of seconds")
    )


def _drain_timeout(annotations: Mapping[str, str], errs: list[FieldError]) -> None:
    """rayop's `rayop.io/serve-drain-timeout`: how long an old cluster may finish in-flight requests."""
    v = annotations.get(C.ANN_SERVE_DRAIN_TIMEOUT)
    if v is None:
        return
    path = f"metadata.annotations[{C.ANN_SERVE_DRAIN_TIMEOUT}]"
    d = parse_go_duration(v)
    if d is None:
        n = parse_go_atoi(v)
        d = float(n) if n is not None else None
    if d is None:
        errs.append(invalid(path, v, "must be a Go duration such as '90s' or '2m', or a number of seconds"))
    elif d < 0:
        errs.append(invalid(path, v, "must not be negative"))


def _rayservice(obj: Any, gates: Mapping[str, bool] | None, old: Any) -> list[FieldError]:
    """All errors of a RayService (KubeRay ``ValidateRayServiceMetadata`` and ``ValidateRayServiceSpec``)."""
    bad = _not_a_map(obj)
    if bad:
        return bad
    g = _gates(gates)
    errs: list[FieldError] = []
    md = _metadata(obj, C.KIND_RAYSERVICE, C.MAX_RAYSERVICE_NAME_LENGTH, errs)
    annotations = str_map(md.get("annotations"))
    _initializing_timeout(annotations, errs)
    _drain_timeout(annotations, errs)
    spec = _spec(obj, S.RAYSERVICE_SPEC, errs)
    if spec is None:
        return errs
    rc_any = spec.get("rayClusterConfig")
    rc = as_map(rc_any)
    if k8s_token_auth(rc):
        errs.append(
            forbidden(
                "spec.rayClusterConfig.authOptions.enableK8sTokenAuth",
                "Kubernetes token auth is not supported for RayService",
            )
        )
    errs += validate_cluster_spec(rc_any, annotations, "spec.rayClusterConfig", g)
    hs_name = as_map(as_map(as_map(rc.get("headGroupSpec")).get("headService")).get("metadata")).get("name")
    if hs_name:
        errs.append(
            forbidden(
                "spec.rayClusterConfig.headGroupSpec.headService.metadata.name",
                "must not be set; each cluster of a RayService needs its own head Service name",
            )
        )
    up = as_map(spec.get("upgradeStrategy"))
    utype = up.get("type")
    if isinstance(utype, str) and utype not in RS_UPGRADE_TYPES:
        errs.append(not_supported("spec.upgradeStrategy.type", utype, RS_UPGRADE_TYPES))
    delay = as_int(spec.get("rayClusterDeletionDelaySeconds"))
    if delay is not None and delay < 0:
        errs.append(
            invalid("spec.rayClusterDeletionDelaySeconds", delay, "must be greater than or equal to 0")
        )
    if utype == INCREMENTAL and g.get(F.RAY_SERVICE_INCREMENTAL_UPGRADE, False):
        _incremental(errs, spec, rc)
    scv = as_str(spec.get("serveConfigV2"))
    if scv:
        _, err = parse_serve_config(scv)
        if err:
            errs.append(invalid("spec.serveConfigV2", scv, err))
    _enum_managed_by(errs, spec)
    if old is not None:
        old_spec = as_map(as_map(old).get("spec"))
        errs += validate_managed_by_update(old_spec, spec, "spec.managedBy")
        errs += validate_cluster_update(as_map(old_spec.get("rayClusterConfig")), rc, "spec.rayClusterConfig")
    return errs


def _incremental(errs: list[FieldError], spec: Mapping[str, Any], rc: Mapping[str, Any]) -> None:
    path = "spec.upgradeStrategy"
    if not autoscaling_enabled(rc):
        errs.append(
            forbidden(
                f"{path}.type", f"{INCREMENTAL} requires spec.rayClusterConfig.enableInTreeAutoscaling: true"
            )
        )
    opts_any = as_map(spec.get("upgradeStrategy")).get("clusterUpgradeOptions")
    opath = f"{path}.clusterUpgradeOptions"
    if not isinstance(opts_any, dict):
        errs.append(required(opath, f"is required for {INCREMENTAL}"))
        return
    surge = as_int(opts_any.get("maxSurgePercent"))
    surge_eff = 100 if surge is None else surge
    if surge is not None and not 0 <= surge <= 100:
        errs.append(invalid(f"{opath}.maxSurgePercent", surge, "must be between 0 and 100"))
    step = as_int(opts_any.get("stepSizePercent"))
    if opts_any.get("stepSizePercent") is None:
        errs.append(required(f"{opath}.stepSizePercent"))
    elif step is not None:
        if not 0 <= step <= 100:
            errs.append(invalid(f"{opath}.stepSizePercent", step, "must be between 0 and 100"))
        elif 0 <= surge_eff <= 100 and step > surge_eff:
            errs.append(
                invalid(
                    f"{opath}.stepSizePercent",
                    step,
                    f"must be less than or equal to maxSurgePercent ({surge_eff})",
                )
            )
    interval = as_int(opts_any.get("intervalSeconds"))
    if opts_any.get("intervalSeconds") is None:
        errs.append(required(f"{opath}.intervalSeconds"))
    elif interval is not None and interval <= 0:
        errs.append(invalid(f"{opath}.intervalSeconds", interval, "must be greater than 0"))
    if not as_str(opts_any.get("gatewayClassName")):
        errs.append(required(f"{opath}.gatewayClassName", f"is required for {INCREMENTAL}"))


def _being_deleted(obj: Any) -> bool:
    return bool(as_map(as_map(obj).get("metadata")).get("deletionTimestamp"))


def _ratchet(
    check: Callable[[Any, Mapping[str, bool] | None, Any], list[FieldError]],
    obj: Any,
    gates: Mapping[str, bool] | None,
    old: Any,
) -> list[FieldError]:
    """On update, report only problems the update introduces (Kubernetes' "ratcheting").

    Objects created before a rule existed (or while the webhook was off, or under other feature gates)
    must stay updatable: the Ray autoscaler patches replicas, controllers add and remove finalizers, and
    a deletion must never be blocked. An object being deleted is always admitted.
    """
    errs = check(obj, gates, old)
    if old is None or not errs:
        return errs
    if _being_deleted(obj):
        return []
    before = {str(e) for e in check(old, gates, None)}
    return [e for e in errs if str(e) not in before]


@_safe
def validate_raycluster(
    obj: Any, *, gates: Mapping[str, bool] | None = None, old: Any = None
) -> list[FieldError]:
    """All errors of a RayCluster; with ``old`` (an update), the update rules and only new problems."""
    return _ratchet(_raycluster, obj, gates, old)


@_safe
def validate_rayjob(
    obj: Any, *, gates: Mapping[str, bool] | None = None, old: Any = None
) -> list[FieldError]:
    """All errors of a RayJob (KubeRay ``ValidateRayJobSpec``, ``utils/validation.go``); see validate_raycluster."""
    return _ratchet(_rayjob, obj, gates, old)


@_safe
def validate_rayservice(
    obj: Any, *, gates: Mapping[str, bool] | None = None, old: Any = None
) -> list[FieldError]:
    """All errors of a RayService (KubeRay ``ValidateRayServiceMetadata``/``Spec``); see validate_raycluster."""
    return _ratchet(_rayservice, obj, gates, old)
