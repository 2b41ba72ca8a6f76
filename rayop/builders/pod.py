"""Head and worker Pods for a RayCluster, as KubeRay builds them (`ray-operator/controllers/ray/common/pod.go`;
docs/compatibility.md#pod-construction).

The steps run in KubeRay's order (`DefaultHeadPodTemplate`/`DefaultWorkerPodTemplate`, then `BuildPod`, then
the controller's owner reference and annotations) because the order decides the order of env vars, volumes and
mounts, which users and Ray's autoscaler see.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

from rayop.api import constants as C
from rayop.api import features
from rayop.base.objects import clone
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders.options import BuildOptions
from rayop.builders.quantity import QuantityError, canonical, go_float, parse_quantity

HEAD = C.NODE_TYPE_HEAD
WORKER = C.NODE_TYPE_WORKER

# Flags whose explicit `false` must reach `ray start` (all other true/false values are on/off switches).
_EXPLICIT_BOOL_FLAGS = ("log-color", "include-dashboard", "include-log-monitor")
_CUSTOM_ACCELERATORS = {"aws.amazon.com/neuroncore": "neuron_cores", "google.com/tpu": "TPU"}
_MIG = re.compile(r"^nvidia\.com/mig-\d+g\.\d+gb$")

RAY_TOKEN_VOLUME = C.RAY_TOKEN_VOLUME_NAME
RAY_TOKEN_MOUNT_PATH = C.RAY_TOKEN_MOUNT_PATH
PLASMA_DIRECTORY = "plasma-directory"
RAY_HEALTH_PATH = "/api/healthz"
RAYLET_HEALTH_PATH = "api/local_raylet_healthz"
GCS_HEALTH_PATH = "api/gcs_healthz"
SERVE_PROXY_HEALTH_PATH = "-/healthz"
UNIFIED_HEALTH_CHECK_MIN_RAY = (2, 53, 0)
AUTOSCALER_START_CMD = (
    "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"
)


class BuildError(ValueError):
    """The RayCluster cannot be turned into a Pod (no containers, a quantity Kubernetes would reject...)."""


def is_gpu_resource_key(key: str) -> bool:
    return key.endswith("gpu") or bool(_MIG.match(key))


def _fieldref(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _env_exists(name: str, env: list[Obj]) -> bool:
    return any(e.get("name") == name for e in env)


def container_command(opts: BuildOptions) -> list[str]:
    """KubeRay's GetContainerCommand: `/bin/bash -c --`, or `-lc` with ENABLE_LOGIN_SHELL=true."""
    return ["/bin/bash", "-lc" if opts.enable_login_shell else "-c", "--"]


def creator_crd(cluster: Mapping[str, Any], opts: BuildOptions) -> str:
    if opts.creator_crd:
        return opts.creator_crd
    label = ((cluster.get("metadata") or {}).get("labels") or {}).get(C.LABEL_ORIGINATED_FROM_CRD, "")
    return label if label in (C.KIND_RAYJOB, C.KIND_RAYSERVICE) else C.KIND_RAYCLUSTER


# rayStartParams ------------------------------------------------------------------------------------


def _params(group: Mapping[str, Any]) -> dict[str, str]:
    raw = group.get("rayStartParams") or {}
    return {str(k): _str(v) for k, v in raw.items()}


def _str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _q(v: Any) -> Any:
    try:
        return parse_quantity(v)
    except QuantityError as e:
        raise BuildError(str(e)) from e


def _update_params_from_group_resources(params: dict[str, str], resources: Mapping[str, Any] | None) -> None:
    """Group `resources` override Ray's logical resources (cpu, memory, *gpu, anything else as JSON)."""
    if not resources:
        return
    custom: dict[str, float] = {}
    for name, raw in resources.items():
        try:
            q = parse_quantity(raw)
        except QuantityError:
            continue  # KubeRay logs and skips an unparsable entry
        low = str(name).lower()
        if low == "cpu":
            params["num-cpus"] = str(q.int_value())
        elif low == "memory":
            params["memory"] = str(q.int_value())
        elif is_gpu_resource_key(low):
            params["num-gpus"] = str(q.int_value())
        else:
            custom[str(name)] = q.as_float()
    if custom:
        params["resources"] = f"'{_go_json_float_map(custom)}'"


def _go_json_float_map(m: Mapping[str, float]) -> str:
    # Go's json.Marshal of map[string]float64: keys sorted, Go float formatting.
    return "{" + ",".join(f"{json.dumps(k)}:{go_float(m[k])}" for k in sorted(m)) + "}"


def _update_params_from_group_labels(params: dict[str, str], labels: Mapping[str, Any] | None) -> None:
    if not labels:
        return
    params["labels"] = ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _set_missing_params(params: dict[str, str], node_type: str, port: str, fqdn: str) -> None:
    if node_type == WORKER and "address" not in params:
        params["address"] = f"{fqdn}:{port}"
    if node_type == HEAD and "dashboard-host" not in params:
        # Ray's default `localhost` is unreachable from outside the head pod.
        params["dashboard-host"] = "0.0.0.0"
    params.setdefault("metrics-export-port", str(C.PORT_METRICS))
    # `--block` keeps `ray start` in the foreground so the container lives as long as Ray does.
    params["block"] = "true"
    # The injected probes dial this port, so pin Ray's default explicitly.
    params.setdefault("dashboard-agent-listen-port", str(C.PORT_DASHBOARD_AGENT))


def convert_param_map(params: Mapping[str, str]) -> str:
    """KubeRay's convertParamMap, spacing included: each flag is rendered as ` --k=v ` or ` --k `."""
    out = []
    for key in sorted(params):
        value = params[key]
        if value.lower() in ("true", "false") and key not in _EXPLICIT_BOOL_FLAGS:
            if value.lower() == "true":
                out.append(f" --{key} ")
        else:
            out.append(f" --{key}={value} ")
    return "".join(out)


def _resource_list(resources: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    return dict((resources or {}).get(kind) or {})


def _add_accelerators(params: dict[str, str], limits: Mapping[str, Any]) -> None:
    if not limits:
        return
    existing: dict[str, float] = {}
    if "resources" in params:
        try:
            decoded = json.loads(params["resources"].strip("'\"` "))
            existing = {str(k): float(v) for k, v in decoded.items()}
        except (ValueError, TypeError, AttributeError):
            return  # KubeRay logs the error and adds no accelerator flags at all
    accelerator_added = any(name in existing for name in _CUSTOM_ACCELERATORS.values())
    for key in sorted(limits):
        q = _q(limits[key])
        if "num-gpus" not in params and is_gpu_resource_key(key) and not q.is_zero():
            params["num-gpus"] = str(q.int_value())
        if not accelerator_added and key in _CUSTOM_ACCELERATORS and not q.is_zero():
            ray_name = _CUSTOM_ACCELERATORS[key]
            if ray_name not in existing:
                existing[ray_name] = q.as_float()
                params["resources"] = f"'{_go_json_float_map(existing)}'"
            accelerator_added = True


def generate_ray_start_command(
    node_type: str, ray_start_params: Mapping[str, str], resources: Mapping[str, Any] | None
) -> str:
    """`ray start [--head]` with flags from the params plus num-cpus/memory/num-gpus/accelerators derived from the
    Ray container's resources when the params do not set them."""
    params = dict(ray_start_params)
    limits = _resource_list(resources, "limits")
    requests = _resource_list(resources, "requests")
    if "num-cpus" not in params:
        cpu = _q(limits.get("cpu", 0))
        if cpu.is_zero():
            cpu = _q(requests.get("cpu", 0))
        if not cpu.is_zero():
            params["num-cpus"] = str(cpu.int_value())
    if "memory" not in params:
        mem = _q(limits.get("memory", 0))
        if not mem.is_zero():
            params["memory"] = str(mem.int_value())
    _add_accelerators(params, limits)
    if node_type == HEAD:
        return f"ray start --head {convert_param_map(params)}"
    return f"ray start {convert_param_map(params)}"


# Labels / annotations ------------------------------------------------------------------------------------


def _label_pod(
    node_type: str, cluster_name: str, group_name: str, overrides: Mapping[str, Any]
) -> dict[str, str]:
    labels = {
        C.LABEL_IS_RAY_NODE: "yes",
        C.LABEL_CLUSTER: cluster_name,
        C.LABEL_NODE_TYPE: node_type,
        C.LABEL_GROUP: group_name,
        C.LABEL_IDENTIFIER: cl.check_label(f"{cluster_name}-{node_type}"),
        C.LABEL_APP_NAME: C.APP_NAME_VALUE,
        C.LABEL_CREATED_BY: C.CREATED_BY_VALUE,
    }
    for k, v in overrides.items():
        # The operator selects pods by these three; a template must not be able to change them.
        if k in (C.LABEL_NODE_TYPE, C.LABEL_GROUP, C.LABEL_CLUSTER):
            continue
        labels[str(k)] = _str(v)
    return labels


def _merged_group_labels(group: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(((group.get("template") or {}).get("metadata") or {}).get("labels") or {})
    merged.update(group.get("labels") or {})
    return merged


def _init_template_annotations(cluster: Mapping[str, Any], template: Obj) -> None:
    meta = template.setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    meta["annotations"] = annotations
    cluster_ann = (cluster.get("metadata") or {}).get("annotations") or {}
    if str(cluster_ann.get(C.ANN_OVERWRITE_CONTAINER_CMD, "")).lower() == "true":
        annotations[C.ANN_OVERWRITE_CONTAINER_CMD] = "true"


# GCS fault tolerance, auth ---------------------------------------------------------------------------------


def _configure_gcs_ft(
    cluster: Mapping[str, Any], template: Obj, node_type: str, head_params: dict[str, str]
) -> None:
    ft = cl.gcs_ft_enabled(cluster)
    annotations = template["metadata"]["annotations"]
    if node_type == HEAD:
        annotations[C.ANN_FT_ENABLED] = "true" if ft else "false"
    if not ft:
        return
    container = template["spec"]["containers"][C.RAY_CONTAINER_INDEX]
    env: list[Obj] = container.setdefault("env", [])
    if node_type == WORKER and not _env_exists(C.ENV_GCS_RECONNECT_TIMEOUT, env):
        # Workers must survive a GCS restart (~120 s) instead of Ray's default 60 s.
        env.append({"name": C.ENV_GCS_RECONNECT_TIMEOUT, "value": "600"})
    if node_type != HEAD:
        return
    options = (cluster.get("spec") or {}).get("gcsFaultToleranceOptions")
    if cl.gcs_ft_backend(cluster) == "rocksdb":
        _configure_rocksdb(cluster, template, container, options or {})
    else:
        _configure_redis(cluster, template, container, options, head_params)


def _configure_redis(
    cluster: Mapping[str, Any],
    template: Obj,
    container: Obj,
    options: Mapping[str, Any] | None,
    head_params: dict[str, str],
) -> None:
    env: list[Obj] = container["env"]
    meta = cluster.get("metadata") or {}
    storage_ns = str(meta.get("uid", ""))
    cluster_ann = meta.get("annotations") or {}
    if C.ANN_EXTERNAL_STORAGE_NAMESPACE in cluster_ann:
        storage_ns = str(cluster_ann[C.ANN_EXTERNAL_STORAGE_NAMESPACE])
    if options and options.get("externalStorageNamespace"):
        storage_ns = str(options["externalStorageNamespace"])
    template["metadata"]["annotations"][C.ANN_EXTERNAL_STORAGE_NAMESPACE] = storage_ns
    if not _env_exists(C.ENV_EXTERNAL_STORAGE_NAMESPACE, env):
        env.append({"name": C.ENV_EXTERNAL_STORAGE_NAMESPACE, "value": storage_ns})
    if options is not None:
        env.append(_env_value(C.ENV_REDIS_ADDRESS, options.get("redisAddress")))
        username = options.get("redisUsername")
        if username is not None:
            # Ray ≥ 2.41 reads --redis-username; the value stays in the env so a Secret ref never lands in args.
            head_params["redis-username"] = "$REDIS_USERNAME"
            env.append(_env_from_option(C.ENV_REDIS_USERNAME, username))
        password = options.get("redisPassword")
        if password is not None:
            head_params["redis-password"] = "$REDIS_PASSWORD"
            env.append(_env_from_option(C.ENV_REDIS_PASSWORD, password))
    elif not _env_exists(C.ENV_REDIS_PASSWORD, env) and "redis-password" in head_params:
        # The Redis cleanup Job reads the password from the env, not from rayStartParams.
        env.append({"name": C.ENV_REDIS_PASSWORD, "value": head_params["redis-password"]})


def _env_value(name: str, value: Any) -> Obj:
    out: Obj = {"name": name}
    if value:
        out["value"] = _str(value)
    return out


def _env_from_option(name: str, option: Mapping[str, Any]) -> Obj:
    out = _env_value(name, option.get("value"))
    if option.get("valueFrom") is not None:
        out["valueFrom"] = copy.deepcopy(option["valueFrom"])
    return out


def gcs_storage_pvc_name(cluster: Mapping[str, Any]) -> str:
    storage = ((cluster.get("spec") or {}).get("gcsFaultToleranceOptions") or {}).get("storage") or {}
    if storage.get("claimName"):
        return str(storage["claimName"])
    return f"{(cluster.get('metadata') or {}).get('name', '')}-gcs-pvc"


def _configure_rocksdb(
    cluster: Mapping[str, Any], template: Obj, container: Obj, options: Mapping[str, Any]
) -> None:
    env: list[Obj] = container["env"]
    if not _env_exists(C.ENV_GCS_STORAGE, env):
        env.append({"name": C.ENV_GCS_STORAGE, "value": "rocksdb"})
    if not _env_exists(C.ENV_GCS_STORAGE_PATH, env):
        env.append({"name": C.ENV_GCS_STORAGE_PATH, "value": C.GCS_STORAGE_MOUNT_PATH})
    mount: Obj = {"name": C.GCS_STORAGE_VOLUME_NAME, "mountPath": C.GCS_STORAGE_MOUNT_PATH}
    sub_path = (options.get("storage") or {}).get("subPath")
    if sub_path:
        mount["subPath"] = sub_path
    container.setdefault("volumeMounts", []).append(mount)
    template["spec"].setdefault("volumes", []).append(
        {
            "name": C.GCS_STORAGE_VOLUME_NAME,
            "persistentVolumeClaim": {"claimName": gcs_storage_pvc_name(cluster)},
        }
    )


def auth_secret_name(cluster: Mapping[str, Any]) -> str:
    auth = (cluster.get("spec") or {}).get("authOptions") or {}
    if auth.get("secretName"):
        return str(auth["secretName"])
    return cl.check_name(str((cluster.get("metadata") or {}).get("name", "")))


def set_token_auth_env(cluster: Mapping[str, Any], container: Obj) -> None:
    """RAY_AUTH_MODE=token plus either the token from the Secret or Kubernetes service-account token auth."""
    env: list[Obj] = container.setdefault("env", [])
    if not _env_exists(C.ENV_AUTH_MODE, env):
        env.append({"name": C.ENV_AUTH_MODE, "value": "token"})
    if cl.is_k8s_auth_enabled(cluster):
        if not _env_exists(C.ENV_ENABLE_K8S_TOKEN_AUTH, env):
            env.append({"name": C.ENV_ENABLE_K8S_TOKEN_AUTH, "value": "true"})
        mounts: list[Obj] = container.setdefault("volumeMounts", [])
        if not any(m.get("name") == RAY_TOKEN_VOLUME for m in mounts):
            mounts.append({"name": RAY_TOKEN_VOLUME, "mountPath": RAY_TOKEN_MOUNT_PATH, "readOnly": True})
    elif not _env_exists(C.ENV_AUTH_TOKEN, env):
        env.append(
            {
                "name": C.ENV_AUTH_TOKEN,
                "valueFrom": {
                    "secretKeyRef": {"name": auth_secret_name(cluster), "key": C.AUTH_TOKEN_SECRET_KEY}
                },
            }
        )


def _configure_token_auth(cluster: Mapping[str, Any], template: Obj) -> None:
    spec = template["spec"]
    set_token_auth_env(cluster, spec["containers"][C.RAY_CONTAINER_INDEX])
    if cl.is_k8s_auth_enabled(cluster):
        volumes: list[Obj] = spec.setdefault("volumes", [])
        if not any(v.get("name") == RAY_TOKEN_VOLUME for v in volumes):
            volumes.append(
                {
                    "name": RAY_TOKEN_VOLUME,
                    "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
                }
            )
    for init in spec.get("initContainers") or []:
        if init.get("name") == C.INIT_CONTAINER_WAIT_GCS:
            set_token_auth_env(cluster, init)


# Autoscaler sidecar ----------------------------------------------------------------------------------------


def build_autoscaler_container(cluster: Mapping[str, Any], image: str, opts: BuildOptions) -> Obj:
    """The `autoscaler` sidecar (KubeRay `BuildAutoscalerContainer`), user overrides from `autoscalerOptions`
    merged."""
    container: Obj = {
        "name": C.AUTOSCALER_CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            _fieldref(C.ENV_RAY_CLUSTER_NAME, f"metadata.labels['{C.LABEL_CLUSTER}']"),
            _fieldref(C.ENV_RAY_CLUSTER_NAMESPACE, "metadata.namespace"),
            _fieldref(C.ENV_RAY_HEAD_POD_NAME, "metadata.name"),
            {"name": C.ENV_KUBERAY_CRD_VER, "value": C.VERSION},
            # Lets users who override args still call the generated command.
            {"name": C.ENV_KUBERAY_GEN_AUTOSCALER_START_CMD, "value": AUTOSCALER_START_CMD},
        ],
        "command": container_command(opts),
        "args": [AUTOSCALER_START_CMD],
        "resources": {
            "limits": {"cpu": "500m", "memory": "512Mi"},
            "requests": {"cpu": "500m", "memory": "512Mi"},
        },
    }
    if cl.is_auth_enabled(cluster):
        set_token_auth_env(cluster, container)
    options = (cluster.get("spec") or {}).get("autoscalerOptions")
    if options:
        _merge_autoscaler_overrides(container, options)
    return container


def _merge_autoscaler_overrides(container: Obj, options: Mapping[str, Any]) -> None:
    if options.get("resources") is not None:
        container["resources"] = copy.deepcopy(options["resources"])
    if options.get("image"):
        container["image"] = options["image"]
    if options.get("imagePullPolicy"):
        container["imagePullPolicy"] = options["imagePullPolicy"]
    for key in ("env", "envFrom", "volumeMounts"):
        if options.get(key):
            container.setdefault(key, []).extend(copy.deepcopy(options[key]))
    if options.get("securityContext") is not None:
        container["securityContext"] = copy.deepcopy(options["securityContext"])
    if options.get("command"):
        container["command"] = list(options["command"])
    if options.get("args"):
        container["args"] = list(options["args"])


# Templates ---------------------------------------------------------------------------------------------------


def _template(group: Mapping[str, Any]) -> Obj:
    template = clone(dict(group.get("template") or {}))
    template.setdefault("metadata", {})
    spec = template.setdefault("spec", {})
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], dict):
        raise BuildError("the pod template must have at least one container")
    return template


def _add_metrics_port(container: Obj) -> None:
    ports: list[Obj] = container.setdefault("ports", [])
    if not any(p.get("name") == "metrics" for p in ports):
        ports.append({"name": "metrics", "containerPort": C.PORT_METRICS})


def _wait_gcs_script(fqdn: str, port: str) -> str:
    # Quiet for the first 120 s (a starting head is normal), then show health-check errors for troubleshooting.
    address = f"{fqdn}:{port}"
    return (
        "SECONDS=0\n"
        "while true; do\n"
        "  if (( SECONDS <= 120 )); then\n"
        f"    if ray health-check --address {address} > /dev/null 2>&1; then\n"
        '      echo "GCS is ready."\n'
        "      break\n"
        "    fi\n"
        '    echo "$SECONDS seconds elapsed: Waiting for GCS to be ready."\n'
        "  else\n"
        f"    if ray health-check --address {address}; then\n"
        '      echo "GCS is ready. Earlier errors can be ignored."\n'
        "      break\n"
        "    fi\n"
        '    echo "$SECONDS seconds elapsed: Still waiting for GCS to be ready."\n'
        "  fi\n"
        "  sleep 5\n"
        "done\n"
    )


def _wait_gcs_init_container(ray_container: Obj, fqdn: str, port: str, opts: BuildOptions) -> Obj:
    init: Obj = {"name": C.INIT_CONTAINER_WAIT_GCS, "image": ray_container.get("image", "")}
    if ray_container.get("imagePullPolicy"):
        init["imagePullPolicy"] = ray_container["imagePullPolicy"]
    init["command"] = container_command(opts)
    init["args"] = [_wait_gcs_script(fqdn, port)]
    if ray_container.get("securityContext") is not None:
        init["securityContext"] = copy.deepcopy(ray_container["securityContext"])
    # Same env and mounts as Ray (TLS settings may point at mounted files); fixed small resources so GPU
    # requests are not duplicated and namespace ResourceQuotas still admit the pod.
    if ray_container.get("env"):
        init["env"] = copy.deepcopy(ray_container["env"])
    if ray_container.get("volumeMounts"):
        init["volumeMounts"] = copy.deepcopy(ray_container["volumeMounts"])
    init["resources"] = {
        "limits": {"cpu": "200m", "memory": "256Mi"},
        "requests": {"cpu": "200m", "memory": "256Mi"},
    }
    return init


def _head_template(
    cluster: Mapping[str, Any], params: dict[str, str], pod_name: str, opts: BuildOptions
) -> Obj:
    spec = cluster.get("spec") or {}
    head = spec.get("headGroupSpec") or {}
    meta = cluster.get("metadata") or {}
    template = _template(head)
    tmeta = template["metadata"]
    if opts.deterministic_head_pod_name:
        tmeta["name"] = pod_name
    else:
        tmeta["generateName"] = pod_name
    tmeta["namespace"] = meta.get("namespace", "")
    _update_params_from_group_resources(params, head.get("resources"))
    _update_params_from_group_labels(params, head.get("labels"))
    tmeta["labels"] = _label_pod(HEAD, meta.get("name", ""), C.HEAD_GROUP_NAME, _merged_group_labels(head))
    _set_missing_params(params, HEAD, cl.head_port(params), "")
    _init_template_annotations(cluster, template)
    pod_spec = template["spec"]
    containers: list[Obj] = pod_spec["containers"]
    ray = containers[C.RAY_CONTAINER_INDEX]
    if cl.is_autoscaling_enabled(cluster):
        # The in-head monitor cannot scale on Kubernetes; the sidecar replaces it.
        params["no-monitor"] = "true"
        pod_spec["serviceAccountName"] = cl.check_name(autoscaler_service_account_name(cluster))
        containers.append(build_autoscaler_container(cluster, str(ray.get("image", "")), opts))
        version = cl.autoscaler_version(cluster)
        if version == "v2":
            ray.setdefault("env", []).append({"name": C.ENV_ENABLE_AUTOSCALER_V2, "value": "true"})
            # A restarted container would re-register under the same instance id
            # (docs/compatibility.md#ray-autoscaler).
            pod_spec["restartPolicy"] = "Never"
        elif version == "v1":
            ray.setdefault("env", []).append({"name": C.ENV_ENABLE_AUTOSCALER_V2, "value": "false"})
    _configure_gcs_ft(cluster, template, HEAD, params)
    _add_metrics_port(ray)
    if cl.is_auth_enabled(cluster):
        _configure_token_auth(cluster, template)
    return template


def autoscaler_service_account_name(cluster: Mapping[str, Any]) -> str:
    head_spec = (((cluster.get("spec") or {}).get("headGroupSpec") or {}).get("template") or {}).get(
        "spec"
    ) or {}
    return str(head_spec.get("serviceAccountName") or (cluster.get("metadata") or {}).get("name", ""))


def _worker_template(
    cluster: Mapping[str, Any],
    group: Mapping[str, Any],
    params: dict[str, str],
    pod_name: str,
    fqdn: str,
    port: str,
    opts: BuildOptions,
    replica_index: int | None,
    replica_name: str | None,
    host_index: int | None,
) -> Obj:
    meta = cluster.get("metadata") or {}
    template = _template(group)
    tmeta = template["metadata"]
    tmeta["generateName"] = pod_name
    tmeta["namespace"] = meta.get("namespace", "")
    pod_spec = template["spec"]
    ray = pod_spec["containers"][C.RAY_CONTAINER_INDEX]
    if opts.enable_init_container_injection:
        # Built from the Ray container as the user wrote it, before any injected env or mounts.
        pod_spec.setdefault("initContainers", []).append(_wait_gcs_init_container(ray, fqdn, port, opts))
    # Several replicas share one template: a fixed name would collide.
    tmeta.pop("name", None)
    _update_params_from_group_resources(params, group.get("resources"))
    _update_params_from_group_labels(params, group.get("labels"))
    labels = _label_pod(
        WORKER, meta.get("name", ""), str(group.get("groupName", "")), _merged_group_labels(group)
    )
    if opts.gate(features.RAY_MULTI_HOST_INDEXING):
        if replica_index is not None:
            labels[C.LABEL_WORKER_GROUP_REPLICA_INDEX] = str(replica_index)
        if cl.num_of_hosts(group) > 1:
            if replica_name is not None:
                labels[C.LABEL_WORKER_GROUP_REPLICA_NAME] = replica_name
            if host_index is not None:
                labels[C.LABEL_REPLICA_HOST_INDEX] = str(host_index)
    tmeta["labels"] = labels
    _set_missing_params(params, WORKER, port, fqdn)
    _init_template_annotations(cluster, template)
    _configure_gcs_ft(cluster, template, WORKER, params)
    _add_metrics_port(ray)
    if cl.is_autoscaling_enabled(cluster) and cl.autoscaler_version(cluster) == "v2":
        pod_spec["restartPolicy"] = "Never"
    if cl.is_auth_enabled(cluster):
        _configure_token_auth(cluster, template)
    return template


# BuildPod ------------------------------------------------------------------------------------------------------


def _memory_size_limit(container: Mapping[str, Any]) -> str | None:
    resources = container.get("resources") or {}
    for kind in ("limits", "requests"):
        value = (resources.get(kind) or {}).get("memory")
        if value is not None:
            return canonical(_q(value))
    return None


def _add_empty_dir(container: Obj, pod_spec: Obj, name: str, path: str, *, memory: bool) -> None:
    mounts: list[Obj] = container.get("volumeMounts") or []
    if any(m.get("mountPath") == path for m in mounts):
        return
    volumes: list[Obj] = pod_spec.setdefault("volumes", [])
    if not any(v.get("name") == name for v in volumes):
        empty_dir: Obj = {}
        if memory:
            empty_dir["medium"] = "Memory"
            size = _memory_size_limit(container)
            if size is not None:
                empty_dir["sizeLimit"] = size
        volumes.append({"name": name, "emptyDir": empty_dir})
    mounts.append({"name": name, "mountPath": path})
    container["volumeMounts"] = mounts


def _cmd_to_string(parts: list[Any]) -> str:
    return "".join(f" {p} " for p in parts)


def _set_init_container_env(container: Obj, fqdn: str) -> None:
    env: list[Obj] = container.setdefault("env", [])
    env.append({"name": C.ENV_FQ_RAY_IP, "value": fqdn})
    env.append({"name": C.ENV_RAY_IP, "value": fqdn.split(".")[0]})


def _set_container_env(
    container: Obj, node_type: str, fqdn: str, port: str, ray_start_cmd: str, creator: str, opts: BuildOptions
) -> None:
    env: list[Obj] = container.setdefault("env", [])
    for default in opts.default_container_envs:
        if not _env_exists(str(default.get("name")), env):
            env.append(copy.deepcopy(default))
    ip = "127.0.0.1"
    if node_type == WORKER:
        ip = fqdn
        env.append({"name": C.ENV_FQ_RAY_IP, "value": fqdn})
        env.append({"name": C.ENV_RAY_IP, "value": fqdn.split(".")[0]})
    env.append(_fieldref(C.ENV_RAY_CLUSTER_NAME, f"metadata.labels['{C.LABEL_CLUSTER}']"))
    env.append(_fieldref(C.ENV_RAY_CLUSTER_NAMESPACE, "metadata.namespace"))
    # Autoscaler v2 joins Ray nodes to pods by this id
    # (Ray `python/ray/autoscaler/v2/instance_manager/reconciler.py`).
    env.append(_fieldref(C.ENV_RAY_CLOUD_INSTANCE_ID, "metadata.name"))
    env.append(_fieldref(C.ENV_RAY_NODE_TYPE_NAME, f"metadata.labels['{C.LABEL_GROUP}']"))
    env.append({"name": C.ENV_KUBERAY_GEN_RAY_START_CMD, "value": ray_start_cmd})
    if not _env_exists(C.ENV_RAY_PORT, env):
        env.append({"name": C.ENV_RAY_PORT, "value": port})
    if creator == C.KIND_RAYSERVICE:
        for name, value in (
            ("RAY_timeout_ms_task_wait_for_death_info", "0"),
            ("RAY_gcs_server_request_timeout_seconds", "5"),
            ("RAY_SERVE_KV_TIMEOUT_S", "5"),
        ):
            if not _env_exists(name, env):
                env.append({"name": name, "value": value})
    if not _env_exists(C.ENV_RAY_ADDRESS, env):
        env.append({"name": C.ENV_RAY_ADDRESS, "value": f"{ip}:{port}"})
    if not _env_exists(C.ENV_USAGE_STATS_KUBERAY_IN_USE, env):
        env.append({"name": C.ENV_USAGE_STATS_KUBERAY_IN_USE, "value": "1"})
    if node_type == HEAD:
        env.append(
            {
                "name": C.ENV_USAGE_STATS_EXTRA_TAGS,
                "value": f"kuberay_version={opts.kuberay_version};kuberay_crd={creator}",
            }
        )
    if not _env_exists(C.ENV_DASHBOARD_ENABLE_K8S_DISK_USAGE, env):
        env.append({"name": C.ENV_DASHBOARD_ENABLE_K8S_DISK_USAGE, "value": "1"})


def _parse_version(v: str) -> tuple[int, ...] | None:
    m = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", v.strip())
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def supports_unified_health_check(ray_version: str | None) -> bool:
    parsed = _parse_version(ray_version or "")
    return parsed is not None and parsed >= UNIFIED_HEALTH_CHECK_MIN_RAY


def _wget(timeout: int, port: int, path: str) -> str:
    return f"wget --tries 1 -T {timeout} -q -O- http://localhost:{port}/{path} | grep success"


def _param_port(params: Mapping[str, str], key: str, default: int) -> int:
    try:
        value = int(params[key])
    except (KeyError, ValueError):
        return default
    return value if -(2**31) <= value < 2**31 else default


def _container_port(container: Mapping[str, Any], name: str, default: int) -> int:
    for p in container.get("ports") or []:
        if p.get("name") == name:
            return cl.as_int(p.get("containerPort"), default)
    return default


def _init_probes(
    container: Obj, node_type: str, creator: str, params: Mapping[str, str], ray_version: str
) -> None:
    agent_port = _param_port(params, "dashboard-agent-listen-port", C.PORT_DASHBOARD_AGENT)
    http = supports_unified_health_check(ray_version)
    commands = [_wget(2, agent_port, RAYLET_HEALTH_PATH)]
    if node_type == HEAD:
        commands.append(_wget(10, _param_port(params, "dashboard-port", C.PORT_DASHBOARD), GCS_HEALTH_PATH))

    def action() -> Obj:
        if http:
            return {"httpGet": {"path": RAY_HEALTH_PATH, "port": agent_port}}
        return {"exec": {"command": ["bash", "-c", " && ".join(commands)]}}

    timeout = 5 if node_type == HEAD else 2
    if container.get("livenessProbe") is None:
        container["livenessProbe"] = {
            **action(),
            "initialDelaySeconds": 30,
            "timeoutSeconds": timeout,
            "periodSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 120,
        }
    if container.get("readinessProbe") is None:
        probe: Obj = {
            **action(),
            "initialDelaySeconds": 10,
            "timeoutSeconds": timeout,
            "periodSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 10,
        }
        if creator == C.KIND_RAYSERVICE and node_type == WORKER:
            # A serving worker is ready only when its Serve proxy is; the head's readiness for traffic is a
            # label the RayService controller flips instead.
            serve_port = _container_port(container, "serve", C.PORT_SERVE)
            cmd = " && ".join([*commands, _wget(10, serve_port, SERVE_PROXY_HEALTH_PATH)])
            probe.pop("httpGet", None)
            probe["exec"] = {"command": ["bash", "-c", cmd]}
            probe["failureThreshold"] = 1
        container["readinessProbe"] = probe


def _build_pod(
    template: Obj,
    node_type: str,
    params: dict[str, str],
    port: str,
    autoscaling: bool,
    creator: str,
    fqdn: str,
    ray_version: str,
    opts: BuildOptions,
) -> Obj:
    meta = template["metadata"]
    if creator == C.KIND_RAYSERVICE:
        meta["labels"][C.LABEL_SERVE] = "false" if node_type == HEAD else "true"
    pod: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}
    spec = pod["spec"]
    containers: list[Obj] = spec["containers"]
    ray = containers[C.RAY_CONTAINER_INDEX]
    if PLASMA_DIRECTORY not in params:
        # Ray's object store lives in /dev/shm; Docker's 64 MB default would spill it to disk.
        _add_empty_dir(ray, spec, C.SHM_VOLUME_NAME, C.SHM_MOUNT_PATH, memory=True)
    if node_type == HEAD and autoscaling:
        # The autoscaler writes monitor logs and events that the head's dashboard reads.
        autoscaler = next(c for c in containers if c.get("name") == C.AUTOSCALER_CONTAINER_NAME)
        _add_empty_dir(ray, spec, C.RAY_LOGS_VOLUME_NAME, C.RAY_LOGS_MOUNT_PATH, memory=False)
        _add_empty_dir(autoscaler, spec, C.RAY_LOGS_VOLUME_NAME, C.RAY_LOGS_MOUNT_PATH, memory=False)
    cmd = ""
    if ray.get("command"):
        cmd = _cmd_to_string(list(ray["command"]))
    if ray.get("args"):
        cmd += _cmd_to_string(list(ray["args"]))
    ray_start_cmd = generate_ray_start_command(node_type, params, ray.get("resources"))
    overwrite = str((meta.get("annotations") or {}).get(C.ANN_OVERWRITE_CONTAINER_CMD, "")).lower() == "true"
    if not overwrite and "ray start" not in cmd:
        generated = f"{C.DEFAULT_ULIMIT_CMD}; {ray_start_cmd}"
        ray["command"] = container_command(opts)
        # User commands run first: `ray start --block` never returns.
        ray["args"] = [f"{cmd} && {generated}" if cmd else generated]
    for init in spec.get("initContainers") or []:
        _set_init_container_env(init, fqdn)
    _set_container_env(ray, node_type, fqdn, port, ray_start_cmd, creator, opts)
    if opts.enable_probes_injection:
        _init_probes(ray, node_type, creator, params, ray_version)
    return pod


def _finish(pod: Obj, cluster: Mapping[str, Any], opts: BuildOptions) -> Obj:
    meta = pod["metadata"]
    meta["ownerReferences"] = [cl.owner_reference(cluster)]
    labels = meta.setdefault("labels", {})
    for k, v in opts.default_pod_labels.items():
        labels.setdefault(k, v)
    annotations = meta.get("annotations") or {}
    for k, v in opts.default_pod_annotations.items():
        annotations.setdefault(k, v)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return pod


def build_head_pod(cluster: Mapping[str, Any], opts: BuildOptions) -> Obj:
    """The head Pod (generateName `<cluster[:50]>-head-`, or `<cluster>-head` with deterministic names)."""
    spec = cluster.get("spec") or {}
    head = spec.get("headGroupSpec") or {}
    name = pod_name_for_head(cluster, opts)
    fqdn = cl.fqdn_ray_ip(cluster, opts.cluster_domain)
    params = _params(head)
    port = cl.head_port(params)
    template = _head_template(cluster, params, name, opts)
    template["spec"]["containers"].extend(copy.deepcopy(opts.head_sidecar_containers))
    pod = _build_pod(
        template,
        HEAD,
        params,
        port,
        cl.is_autoscaling_enabled(cluster),
        creator_crd(cluster, opts),
        fqdn,
        str(spec.get("rayVersion") or ""),
        opts,
    )
    # Stamped on every head pod so a later `upgradeStrategy: Recreate` can tell which spec made it, and an
    # operator upgrade can be told apart from a spec change.
    annotations = pod["metadata"].setdefault("annotations", {})
    annotations[C.ANN_UPGRADE_RECREATE_HASH] = cl.upgrade_recreate_hash(spec)
    annotations[C.ANN_KUBERAY_VERSION] = opts.kuberay_version
    return _finish(pod, cluster, opts)


def pod_name_for_head(cluster: Mapping[str, Any], opts: BuildOptions) -> str:
    name = str((cluster.get("metadata") or {}).get("name", ""))
    return cl.pod_name(name, HEAD, generate=not opts.deterministic_head_pod_name)


def build_worker_pod(
    cluster: Mapping[str, Any],
    group: Mapping[str, Any],
    opts: BuildOptions,
    *,
    replica_index: int | None = None,
    replica_name: str | None = None,
    host_index: int | None = None,
) -> Obj:
    """One worker Pod of `group` (generateName `<(cluster-group)[:50]>-worker-`).

    `replica_index`, `replica_name` (`<group>-<5 random>` for multi-host groups) and `host_index` are chosen by
    the caller: builders take no randomness of their own.
    """
    spec = cluster.get("spec") or {}
    meta = cluster.get("metadata") or {}
    head_params = _params(spec.get("headGroupSpec") or {})
    port = cl.head_port(head_params)
    fqdn = cl.fqdn_ray_ip(cluster, opts.cluster_domain)
    name = cl.pod_name(f"{meta.get('name', '')}-{group.get('groupName', '')}", WORKER, generate=True)
    params = _params(group)
    template = _worker_template(
        cluster, group, params, name, fqdn, port, opts, replica_index, replica_name, host_index
    )
    template["spec"]["containers"].extend(copy.deepcopy(opts.worker_sidecar_containers))
    pod = _build_pod(
        template,
        WORKER,
        params,
        port,
        cl.is_autoscaling_enabled(cluster),
        creator_crd(cluster, opts),
        fqdn,
        str(spec.get("rayVersion") or ""),
        opts,
    )
    return _finish(pod, cluster, opts)
