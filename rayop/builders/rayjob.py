"""Pure builders for RayJob: the submitter command and Job, the per-attempt RayCluster, the HTTP submit body.

Byte-compatible with KubeRay's `common/job.go` (BuildJobSubmitCommand, GetSubmitterTemplate) and the
RayJob controller's constructRayClusterForRayJob / createNewK8sJob (docs/compatibility.md#rayjob-submitter),
so a submitter pod looks the same whichever operator made it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, Final

import yaml

from rayop.api import constants as C
from rayop.base.objects import owner_reference as base_owner_reference
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders.pod import set_token_auth_env
from rayop.builders.service import build_head_service

K8S_JOB_MODE: Final = "K8sJobMode"
HTTP_MODE: Final = "HTTPMode"
INTERACTIVE_MODE: Final = "InteractiveMode"
SIDECAR_MODE: Final = "SidecarMode"
SUBMISSION_MODES: Final = (K8S_JOB_MODE, HTTP_MODE, INTERACTIVE_MODE, SIDECAR_MODE)

DEFAULT_SUBMITTER_BACKOFF_LIMIT: Final = 2
GCS_HEALTH_PATH: Final = "api/gcs_healthz"
GCS_HEALTH_TIMEOUT_SECONDS: Final = 10
ENV_PYTHONUNBUFFERED: Final = "PYTHONUNBUFFERED"
ENV_RAY_DASHBOARD_ADDRESS: Final = "RAY_DASHBOARD_ADDRESS"
ENV_RAY_JOB_SUBMISSION_ID: Final = "RAY_JOB_SUBMISSION_ID"
SUBMITTER_RESOURCES: Final[Obj] = {
    "limits": {"cpu": "1", "memory": "1Gi"},
    "requests": {"cpu": "500m", "memory": "200Mi"},
}


class JobSpecError(ValueError):
    """The RayJob spec cannot be turned into a submission (bad runtimeEnvYAML, entrypointResources...)."""


# Small Go-compatibility helpers ---------------------------------------------------------------------


def go_quote(s: str) -> str:
    """Go's strconv.Quote: a double-quoted literal, escaping quotes, backslashes and non-printables."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\v":
            out.append("\\v")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif o >= 0x80 and not ch.isprintable():
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_json(value: Any) -> str:
    """encoding/json.Marshal: compact, map keys sorted, HTML characters and U+2028/9 escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for a, b in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(a, b)
    return text


def go_float(x: float) -> str:
    """fmt's %f."""
    return f"{x:f}"


def runtime_env_yaml_to_json(text: str) -> str:
    """runtimeEnvYAML → the JSON string KubeRay passes to --runtime-env-json (sigs.k8s.io/yaml.YAMLToJSON)."""
    return go_json(runtime_env_yaml_to_dict(text))


def runtime_env_yaml_to_dict(text: str) -> Obj:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise JobSpecError(f"runtimeEnvYAML is not valid YAML: {e}") from e
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise JobSpecError(f"runtimeEnvYAML must be a YAML mapping, got {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def entrypoint_resources(spec: Mapping[str, Any]) -> dict[str, float] | None:
    raw = spec.get("entrypointResources") or ""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise JobSpecError(f"entrypointResources is not valid JSON: {e}") from e
    if not isinstance(value, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()
    ):
        raise JobSpecError("entrypointResources must be a JSON object of resource name to number")
    return {str(k): float(v) for k, v in value.items()}


# Names ----------------------------------------------------------------------------------------------


def suffixed_name(base: str, suffix: str) -> str:
    """`<base>-<suffix>`: KubeRay's generated job ids and RayJob cluster names (suffix = 5 random chars)."""
    return f"{base}-{suffix}"


def head_service_name(cluster: Mapping[str, Any]) -> str:
    """The head Service name: `spec.headGroupSpec.headService.metadata.name` or `<cluster>-head-svc`."""
    return cl.head_service_name(cluster)


def dashboard_url_from_service(
    service: Mapping[str, Any], cluster_domain: str = C.DEFAULT_CLUSTER_DOMAIN
) -> str:
    """FetchHeadServiceURL: `<svc>.<ns>.svc.<domain>:<port named dashboard>`; "" without such a port."""
    md = service.get("metadata") or {}
    for p in (service.get("spec") or {}).get("ports") or []:
        if p.get("name") == "dashboard":
            return f"{md.get('name')}.{md.get('namespace')}.svc.{cluster_domain}:{p.get('port')}"
    return ""


def owner_reference(owner: Mapping[str, Any]) -> Obj:
    """The controller reference to a RayJob (or the RayService/RayJob whose kind the owner names)."""
    return base_owner_reference(
        owner,
        api_version=str(owner.get("apiVersion") or C.API_VERSION),
        kind=str(owner.get("kind") or C.KIND_RAYJOB),
    )


def _head_container(cluster_spec: Mapping[str, Any]) -> Mapping[str, Any]:
    containers = (((cluster_spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or [{}]
    c: Mapping[str, Any] = containers[C.RAY_CONTAINER_INDEX]
    return c


def _dashboard_port(container: Mapping[str, Any]) -> int:
    for p in container.get("ports") or []:
        if p.get("name") == "dashboard" and p.get("containerPort"):
            return int(p["containerPort"])
    return C.PORT_DASHBOARD


# The submitter command ------------------------------------------------------------------------------


def _health_command(url: str) -> str:
    # Only the standard library: submitter images are Ray images, which always have python.
    return (
        'python -c "import sys, urllib.request; '
        f"sys.exit(0 if b'success' in urllib.request.urlopen('{url}', timeout={GCS_HEALTH_TIMEOUT_SECONDS}).read() "
        'else 1)"'
    )


def build_submitter_command(
    rayjob: Mapping[str, Any], mode: str | None = None, *, sidecar_restart: bool = False
) -> list[str]:
    """BuildJobSubmitCommand: the shell words (joined with spaces, run by `bash -ce`).

    Wait until GCS is healthy, then (K8sJobMode, or SidecarMode with SidecarSubmitterRestart) submit only if
    `ray job status` does not know the id yet, with --no-wait, and follow the logs; a plain blocking
    `ray job submit` otherwise. The status check is what makes submitter retries idempotent (KubeRay #2154).
    """
    spec = rayjob.get("spec") or {}
    status = rayjob.get("status") or {}
    mode = mode or spec.get("submissionMode") or K8S_JOB_MODE
    if mode == SIDECAR_MODE:
        port = _dashboard_port(_head_container(spec.get("rayClusterSpec") or {}))
        address = f"http://127.0.0.1:{port}"
        health_url = f"http://localhost:{port}/{GCS_HEALTH_PATH}"
    elif mode == K8S_JOB_MODE:
        address = str(status.get("dashboardURL") or "")
        if not address.startswith("http://"):
            address = "http://" + address
        health_url = f"{address}/{GCS_HEALTH_PATH}"
    else:
        raise JobSpecError(f"unsupported submission mode for job submit command: {mode}")

    job_id = str(status.get("jobId") or "")
    entrypoint = str(spec.get("entrypoint") or "").strip()
    cmd: list[str] = [
        "until",
        _health_command(health_url),
        ">/dev/null",
        "2>&1",
        ";",
        "do",
        "echo",
        go_quote(f"Waiting for Ray Dashboard GCS to become healthy at {address} ..."),
        ";",
        "sleep",
        "2",
        ";",
        "done",
        ";",
    ]
    check = mode == K8S_JOB_MODE or (mode == SIDECAR_MODE and sidecar_restart)
    if check:
        cmd += [
            "if",
            "!",
            "ray",
            "job",
            "status",
            "--address",
            address,
            job_id,
            ">/dev/null",
            "2>&1",
            ";",
            "then",
        ]
    cmd += ["ray", "job", "submit", "--address", address]
    if check:
        cmd.append("--no-wait")
    if spec.get("runtimeEnvYAML"):
        cmd += ["--runtime-env-json", go_quote(runtime_env_yaml_to_json(spec["runtimeEnvYAML"]))]
    if spec.get("metadata"):
        cmd += ["--metadata-json", go_quote(go_json(_metadata(rayjob)))]
    if job_id:
        cmd += ["--submission-id", job_id]
    if float(spec.get("entrypointNumCpus") or 0) > 0:
        cmd += ["--entrypoint-num-cpus", go_float(float(spec["entrypointNumCpus"]))]
    if float(spec.get("entrypointNumGpus") or 0) > 0:
        cmd += ["--entrypoint-num-gpus", go_float(float(spec["entrypointNumGpus"]))]
    if spec.get("entrypointResources"):
        cmd += ["--entrypoint-resources", go_quote(str(spec["entrypointResources"]))]
    cmd += ["--", entrypoint, ";"]
    if check:
        cmd += ["fi", ";", "ray", "job", "logs", "--address", address, "--follow", job_id]
    return cmd


def _metadata(rayjob: Mapping[str, Any]) -> dict[str, str]:
    spec = rayjob.get("spec") or {}
    rv = str((spec.get("rayClusterSpec") or {}).get("rayVersion") or "")
    if rv and _version_tuple(rv) < (2, 6, 0):
        raise JobSpecError("the Ray version must be at least 2.6.0 to use the metadata field")
    return {str(k): str(v) for k, v in (spec.get("metadata") or {}).items()}


def _version_tuple(v: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in v.lstrip("v").split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            raise JobSpecError(f"failed to parse Ray version: {v}")
        parts.append(int(digits))
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


def container_command(login_shell: bool = False) -> list[str]:
    """utils.GetContainerCommand(["e"]): `-e` so a failing step fails the submitter."""
    return ["/bin/bash", "-lce" if login_shell else "-ce", "--"]


# The submitter Job ----------------------------------------------------------------------------------


def default_submitter_template(cluster: Mapping[str, Any]) -> Obj:
    spec = cluster.get("spec") or {}
    head = _head_container(spec)
    container: Obj = {
        "name": C.SUBMITTER_CONTAINER_NAME,
        # The head's image, so the `ray` CLI matches the cluster's Ray version.
        "image": head.get("image", ""),
        "resources": copy.deepcopy(SUBMITTER_RESOURCES),
    }
    if head.get("imagePullPolicy"):
        container["imagePullPolicy"] = head["imagePullPolicy"]
    pod_spec: Obj = {"containers": [container], "restartPolicy": "Never"}
    secrets = (((spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}).get(
        "imagePullSecrets"
    )
    if secrets:
        pod_spec["imagePullSecrets"] = copy.deepcopy(secrets)
    return {"spec": pod_spec}


def build_submitter_template(
    rayjob: Mapping[str, Any], cluster: Mapping[str, Any], *, login_shell: bool = False
) -> Obj:
    """getSubmitterTemplate: the user's submitterPodTemplate or the default; command only if none given."""
    spec = rayjob.get("spec") or {}
    status = rayjob.get("status") or {}
    user = spec.get("submitterPodTemplate")
    template: Obj = copy.deepcopy(dict(user)) if user else default_submitter_template(cluster)
    pod_spec = template.setdefault("spec", {})
    containers = pod_spec.setdefault("containers", [])
    if not containers:
        containers.append(default_submitter_template(cluster)["spec"]["containers"][0])
    if not pod_spec.get("restartPolicy"):
        # A Job's pods must not restart in place; the Job's own backoffLimit retries instead.
        pod_spec["restartPolicy"] = "Never"
    c = containers[C.RAY_CONTAINER_INDEX]
    if not c.get("command"):
        c["command"] = container_command(login_shell)
        c["args"] = [" ".join(build_submitter_command(rayjob, K8S_JOB_MODE))]
    env = c.setdefault("env", [])
    env.append({"name": ENV_PYTHONUNBUFFERED, "value": "1"})
    # Users' own commands can use these to submit idempotently.
    env.append({"name": ENV_RAY_DASHBOARD_ADDRESS, "value": str(status.get("dashboardURL") or "")})
    env.append({"name": ENV_RAY_JOB_SUBMISSION_ID, "value": str(status.get("jobId") or "")})
    if cl.is_auth_enabled(cluster):
        # The `ray job` CLI reads RAY_AUTH_TOKEN when the head requires token auth.
        set_token_auth_env(cluster, c)
    return template


def build_submitter_job(
    rayjob: Mapping[str, Any], cluster: Mapping[str, Any], *, login_shell: bool = False
) -> Obj:
    """createNewK8sJob: batch/v1 Job named like the RayJob, owned by it."""
    md = rayjob["metadata"]
    spec = rayjob.get("spec") or {}
    backoff = (spec.get("submitterConfig") or {}).get("backoffLimit")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": md["name"],
            "namespace": md.get("namespace", ""),
            "labels": {
                C.LABEL_ORIGINATED_FROM_CR_NAME: md["name"],
                C.LABEL_ORIGINATED_FROM_CRD: C.KIND_RAYJOB,
                C.LABEL_CREATED_BY: C.CREATED_BY_VALUE,
            },
            "ownerReferences": [owner_reference(rayjob)],
        },
        "spec": {
            "backoffLimit": DEFAULT_SUBMITTER_BACKOFF_LIMIT if backoff is None else int(backoff),
            "template": build_submitter_template(rayjob, cluster, login_shell=login_shell),
        },
    }


# The RayCluster of one attempt ----------------------------------------------------------------------


def build_sidecar_container(rayjob: Mapping[str, Any], *, sidecar_restart: bool = False) -> Obj:
    spec = rayjob.get("spec") or {}
    status = rayjob.get("status") or {}
    head = _head_container(spec.get("rayClusterSpec") or {})
    port = _dashboard_port(head)
    c: Obj = {
        "name": C.SUBMITTER_CONTAINER_NAME,
        "image": head.get("image", ""),
        "resources": copy.deepcopy(SUBMITTER_RESOURCES),
        "command": container_command(),
        "args": [" ".join(build_submitter_command(rayjob, SIDECAR_MODE, sidecar_restart=sidecar_restart))],
        "env": [
            {"name": ENV_PYTHONUNBUFFERED, "value": "1"},
            {"name": ENV_RAY_DASHBOARD_ADDRESS, "value": f"127.0.0.1:{port}"},
            {"name": ENV_RAY_JOB_SUBMISSION_ID, "value": str(status.get("jobId") or "")},
        ],
    }
    if head.get("imagePullPolicy"):
        c["imagePullPolicy"] = head["imagePullPolicy"]
    if sidecar_restart:
        c["restartPolicy"] = "OnFailure"
    return c


def build_rayjob_cluster(
    rayjob: Mapping[str, Any], cluster_name: str, *, sidecar_restart: bool = False
) -> Obj:
    """constructRayClusterForRayJob: the RayCluster for this attempt, from spec.rayClusterSpec."""
    md = rayjob["metadata"]
    spec = rayjob.get("spec") or {}
    mode = spec.get("submissionMode") or K8S_JOB_MODE
    labels = dict(md.get("labels") or {})
    labels[C.LABEL_ORIGINATED_FROM_CR_NAME] = md["name"]
    labels[C.LABEL_ORIGINATED_FROM_CRD] = C.KIND_RAYJOB
    labels[C.LABEL_JOB_SUBMISSION_MODE] = mode
    annotations = dict(md.get("annotations") or {})
    cluster_spec = copy.deepcopy(dict(spec.get("rayClusterSpec") or {}))
    if mode == SIDECAR_MODE:
        annotations[C.ANN_DISABLE_PROVISIONED_HEAD_RESTART] = "true"
        pod_spec = (
            cluster_spec.setdefault("headGroupSpec", {}).setdefault("template", {}).setdefault("spec", {})
        )
        pod_spec.setdefault("containers", []).append(
            build_sidecar_container(rayjob, sidecar_restart=sidecar_restart)
        )
        # The submitter runs once per attempt; a restarted head would run it again.
        pod_spec["restartPolicy"] = "Never"
    out: Obj = {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND_RAYCLUSTER,
        "metadata": {
            "name": cluster_name,
            "namespace": md.get("namespace", ""),
            "labels": labels,
            "ownerReferences": [owner_reference(rayjob)],
        },
        "spec": cluster_spec,
    }
    if annotations:
        out["metadata"]["annotations"] = annotations
    if mode == SIDECAR_MODE and cl.is_auth_enabled(out):
        set_token_auth_env(out, cluster_spec["headGroupSpec"]["template"]["spec"]["containers"][-1])
    return out


# The RayJob's own head Service -------------------------------------------------------------------------


def rayjob_head_service_name(rayjob: Mapping[str, Any]) -> str:
    return f"{rayjob['metadata']['name']}-head-svc"


def build_rayjob_head_service(
    rayjob: Mapping[str, Any], cluster: Mapping[str, Any], *, head_cluster_ip_service: bool = False
) -> Obj:
    """BuildHeadServiceForRayJob: `<rayjob>-head-svc`, the cluster's head Service under a name that stays the
    same across retries (each attempt has a new RayCluster); the selector follows the current cluster."""
    from rayop.builders.options import BuildOptions

    svc = build_head_service(cluster, BuildOptions(head_cluster_ip_service=head_cluster_ip_service))
    md = rayjob["metadata"]
    svc["metadata"] = {
        "name": rayjob_head_service_name(rayjob),
        "namespace": md.get("namespace", ""),
        "labels": {
            C.LABEL_ORIGINATED_FROM_CR_NAME: md["name"],
            C.LABEL_ORIGINATED_FROM_CRD: C.KIND_RAYJOB,
            C.LABEL_NODE_TYPE: C.NODE_TYPE_HEAD,
            C.LABEL_IDENTIFIER: cl.check_label(f"{md['name']}-{C.NODE_TYPE_HEAD}"),
        },
        "ownerReferences": [owner_reference(rayjob)],
    }
    return svc


# HTTPMode --------------------------------------------------------------------------------------------


def build_submit_request(rayjob: Mapping[str, Any], job_id: str) -> Obj:
    """ConvertRayJobToReq: the JobSubmitRequest body for POST /api/jobs/."""
    spec = rayjob.get("spec") or {}
    req: Obj = {"entrypoint": str(spec.get("entrypoint") or ""), "submission_id": job_id}
    if spec.get("metadata"):
        req["metadata"] = {str(k): str(v) for k, v in spec["metadata"].items()}
    if spec.get("runtimeEnvYAML"):
        env = runtime_env_yaml_to_dict(spec["runtimeEnvYAML"])
        if env:
            req["runtime_env"] = env
    if float(spec.get("entrypointNumCpus") or 0) > 0:
        req["entrypoint_num_cpus"] = float(spec["entrypointNumCpus"])
    if float(spec.get("entrypointNumGpus") or 0) > 0:
        req["entrypoint_num_gpus"] = float(spec["entrypointNumGpus"])
    res = entrypoint_resources(spec)
    if res:
        req["entrypoint_resources"] = res
    return req
