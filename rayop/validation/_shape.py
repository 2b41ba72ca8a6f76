"""Type checks for the parts of a manifest that validation reads, and lenient readers.

Validation runs on whatever the API server (or a controller's cache) hands over, and must never raise.
The checker below reports each wrongly typed field once, as a field error; the rule code then reads fields
through the lenient helpers, which treat a wrongly typed value as absent, so one bad type does not cascade
into exceptions or duplicate errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rayop.validation.errors import FieldError, invalid

Schema = tuple[Any, ...]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

STR: Schema = ("str",)
INT32: Schema = ("int32",)
INT64: Schema = ("int64",)
BOOL: Schema = ("bool",)
NUM: Schema = ("num",)
ANY: Schema = ("any",)
OBJ_ANY: Schema = ("objany",)
QUANTITY: Schema = ("quantity",)


def obj(**props: Schema) -> Schema:
    return ("obj", props)


def lst(item: Schema) -> Schema:
    return ("list", item)


def mp(value: Schema) -> Schema:
    return ("map", value)


_JSON_TYPE = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    dict: "object",
    list: "array",
    type(None): "null",
}


def json_type(v: Any) -> str:
    return _JSON_TYPE.get(type(v), type(v).__name__)


def check(value: Any, schema: Schema, path: str, errs: list[FieldError]) -> None:
    """Append one error per field whose JSON type does not match ``schema``. ``None`` counts as absent,
    as the API server drops nulls on non-nullable fields."""
    if value is None:
        return
    kind = schema[0]
    if kind == "any":
        return
    if kind == "str":
        if not isinstance(value, str):
            errs.append(invalid(path, json_type(value), "must be of type string"))
    elif kind in ("int32", "int64"):
        if not is_int(value):
            errs.append(invalid(path, json_type(value), "must be of type integer"))
        elif kind == "int32" and not INT32_MIN <= value <= INT32_MAX:
            errs.append(invalid(path, value, "must fit in a 32-bit signed integer"))
    elif kind == "bool":
        if not isinstance(value, bool):
            errs.append(invalid(path, json_type(value), "must be of type boolean"))
    elif kind == "num":
        if not (is_int(value) or isinstance(value, float)):
            errs.append(invalid(path, json_type(value), "must be of type number"))
    elif kind == "quantity":
        if not (isinstance(value, str) or is_int(value)):
            errs.append(invalid(path, json_type(value), "must be of type integer or string"))
    elif kind == "objany":
        if not isinstance(value, dict):
            errs.append(invalid(path, json_type(value), "must be of type object"))
    elif kind == "obj":
        if not isinstance(value, dict):
            errs.append(invalid(path, json_type(value), "must be of type object"))
            return
        props: Mapping[str, Schema] = schema[1]
        for key, sub in props.items():
            if key in value:
                check(value[key], sub, f"{path}.{key}", errs)
    elif kind == "list":
        if not isinstance(value, list):
            errs.append(invalid(path, json_type(value), "must be of type array"))
            return
        for i, item in enumerate(value):
            check(item, schema[1], f"{path}[{i}]", errs)
    elif kind == "map":
        if not isinstance(value, dict):
            errs.append(invalid(path, json_type(value), "must be of type object"))
            return
        for key, item in value.items():
            check(item, schema[1], f"{path}[{key}]", errs)


# Lenient readers: the wrong type reads as "absent"; check() has already reported it.


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def as_map(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def as_str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def as_int(v: Any) -> int | None:
    return v if is_int(v) else None


def as_bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def str_map(v: Any) -> dict[str, str]:
    """A map[string]string, keeping only string values (others were reported by check())."""
    return {str(k): x for k, x in as_map(v).items() if isinstance(x, str)}


# ---- Shapes of the fields rayop reads (a subset of KubeRay's CRD schema, `ray-operator/apis/ray/v1/`).

ENV_VAR = obj(name=STR, value=STR, valueFrom=OBJ_ANY)
VOLUME_MOUNT = obj(name=STR, mountPath=STR, subPath=STR, readOnly=BOOL)
CONTAINER = obj(
    name=STR,
    image=STR,
    command=lst(STR),
    args=lst(STR),
    env=lst(ENV_VAR),
    envFrom=lst(OBJ_ANY),
    volumeMounts=lst(VOLUME_MOUNT),
    ports=lst(obj(name=STR, containerPort=INT32, protocol=STR)),
    resources=obj(limits=mp(QUANTITY), requests=mp(QUANTITY)),
)
POD_TEMPLATE = obj(
    metadata=obj(labels=mp(STR), annotations=mp(STR), name=STR, namespace=STR),
    spec=obj(
        containers=lst(CONTAINER),
        initContainers=lst(CONTAINER),
        volumes=lst(obj(name=STR)),
        restartPolicy=STR,
        serviceAccountName=STR,
    ),
)
RESOURCE_REQUIREMENTS = obj(limits=mp(QUANTITY), requests=mp(QUANTITY))
NETWORK_POLICY_RULES = dict(ingressRules=lst(OBJ_ANY), egressRules=lst(OBJ_ANY))

RAYCLUSTER_SPEC = obj(
    upgradeStrategy=obj(type=STR),
    authOptions=obj(enableK8sTokenAuth=BOOL, secretName=STR, mode=STR),
    suspend=BOOL,
    managedBy=STR,
    autoscalerOptions=obj(
        resources=RESOURCE_REQUIREMENTS,
        image=STR,
        imagePullPolicy=STR,
        securityContext=OBJ_ANY,
        idleTimeoutSeconds=INT32,
        upscalingMode=STR,
        version=STR,
        env=lst(ENV_VAR),
        envFrom=lst(OBJ_ANY),
        volumeMounts=lst(VOLUME_MOUNT),
        command=lst(STR),
        args=lst(STR),
    ),
    headServiceAnnotations=mp(STR),
    enableInTreeAutoscaling=BOOL,
    gcsFaultToleranceOptions=obj(
        backend=STR,
        redisUsername=obj(value=STR, valueFrom=OBJ_ANY),
        redisPassword=obj(value=STR, valueFrom=OBJ_ANY),
        externalStorageNamespace=STR,
        redisAddress=STR,
        storage=obj(
            claimName=STR,
            size=QUANTITY,
            storageClassName=STR,
            accessModes=lst(STR),
            subPath=STR,
            deletionPolicy=STR,
        ),
    ),
    historyServerOptions=obj(
        collectorOptions=obj(
            image=STR, imagePullPolicy=STR, resources=RESOURCE_REQUIREMENTS, env=lst(ENV_VAR)
        )
    ),
    networkPolicy=obj(
        mode=STR,
        head=obj(**NETWORK_POLICY_RULES),
        worker=obj(**NETWORK_POLICY_RULES),
        workerGroups=lst(obj(groupName=STR, **NETWORK_POLICY_RULES)),
    ),
    tlsOptions=obj(enabled=BOOL),
    headGroupSpec=obj(
        template=POD_TEMPLATE,
        headService=obj(metadata=obj(name=STR, labels=mp(STR), annotations=mp(STR)), spec=OBJ_ANY),
        enableIngress=BOOL,
        ingressOptions=obj(host=STR, path=STR, pathType=STR, tls=lst(OBJ_ANY)),
        resources=mp(STR),
        labels=mp(STR),
        rayStartParams=mp(STR),
        serviceType=STR,
    ),
    rayVersion=STR,
    workerGroupSpecs=lst(
        obj(
            suspend=BOOL,
            groupName=STR,
            replicas=INT32,
            minReplicas=INT32,
            maxReplicas=INT32,
            idleTimeoutSeconds=INT32,
            priority=INT32,
            resources=mp(STR),
            labels=mp(STR),
            rayStartParams=mp(STR),
            template=POD_TEMPLATE,
            scaleStrategy=obj(workersToDelete=lst(STR)),
            numOfHosts=INT32,
        )
    ),
)

DELETION_POLICY = obj(policy=STR)
RAYJOB_SPEC = obj(
    activeDeadlineSeconds=INT32,
    preRunningDeadlineSeconds=INT32,
    backoffLimit=INT32,
    rayClusterSpec=RAYCLUSTER_SPEC,
    submitterPodTemplate=POD_TEMPLATE,
    metadata=mp(STR),
    clusterSelector=mp(STR),
    submitterConfig=obj(backoffLimit=INT32),
    managedBy=STR,
    deletionStrategy=obj(
        onSuccess=DELETION_POLICY,
        onFailure=DELETION_POLICY,
        deletionRules=lst(
            obj(policy=STR, condition=obj(jobStatus=STR, jobDeploymentStatus=STR, ttlSeconds=INT32))
        ),
    ),
    entrypoint=STR,
    runtimeEnvYAML=STR,
    jobId=STR,
    submissionMode=STR,
    entrypointResources=STR,
    entrypointNumCpus=NUM,
    entrypointNumGpus=NUM,
    ttlSecondsAfterFinished=INT32,
    shutdownAfterJobFinishes=BOOL,
    suspend=BOOL,
)

RAYSERVICE_SPEC = obj(
    serveConfigV2=STR,
    rayClusterConfig=RAYCLUSTER_SPEC,
    upgradeStrategy=obj(
        type=STR,
        clusterUpgradeOptions=obj(
            maxSurgePercent=INT32, stepSizePercent=INT32, intervalSeconds=INT32, gatewayClassName=STR
        ),
    ),
    rayClusterDeletionDelaySeconds=INT32,
    serveService=obj(metadata=obj(name=STR), spec=OBJ_ANY),
    excludeHeadPodFromServeSvc=BOOL,
    suspend=BOOL,
    managedBy=STR,
    serviceUnhealthySecondThreshold=INT32,
    deploymentUnhealthySecondThreshold=INT32,
)

METADATA = obj(
    name=STR, generateName=STR, namespace=STR, labels=mp(STR), annotations=mp(STR), resourceVersion=STR
)
