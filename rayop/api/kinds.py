"""The registry of kinds: every custom resource rayop serves is declared here, once.

A `KindSpec` holds what the API needs to know about a kind: its group, versions, names, schema,
`kubectl get` columns and subresources (status always; `scale` when declared, with its paths). Every
consumer reads it from here:

- the CRD generator (`rayop.api.crdgen`) renders one CustomResourceDefinition per entry;
- validation (`rayop.validation.registry`) holds the rules of each entry and refuses to import when a
  registered kind has none;
- the admission webhook serves `webhook_path` for each entry and registers it for `plural`;
- controllers and the CLI address objects through `resource`.

How to add a kind: see ARCHITECTURE.md ("Adding a kind").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from rayop.api import constants as C
from rayop.api import schema as S
from rayop.api import servedeployment as SD
from rayop.api import workergroup as W
from rayop.base.resource import Resource

Schema = dict[str, Any]


@dataclass(frozen=True)
class ScaleSubresource:
    """The `scale` subresource of a CRD: where `kubectl scale` and the HPA read and write replicas."""

    spec_replicas_path: str = ".spec.replicas"
    status_replicas_path: str = ".status.replicas"
    label_selector_path: str | None = ".status.selector"

    def to_crd(self) -> dict[str, str]:
        out = {"specReplicasPath": self.spec_replicas_path, "statusReplicasPath": self.status_replicas_path}
        if self.label_selector_path:
            out["labelSelectorPath"] = self.label_selector_path
        return out


@dataclass(frozen=True)
class KindSpec:
    """One custom resource kind. `version` is the stored version; `deprecated_versions` are served with
    the same schema (no conversion webhook needed) and marked deprecated."""

    kind: str
    group: str
    version: str
    plural: str
    schema: Callable[[], Schema]
    printer_columns: tuple[Schema, ...]
    deprecated_versions: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("all",)
    scale: ScaleSubresource | None = None
    namespaced: bool = True
    # Whether the admission webhook validates create and update of this kind.
    admission: bool = True
    # Whether the admission webhook validates writes to the `scale` subresource (`kubectl scale`, the
    # HPA): the request then carries an autoscaling/v1 Scale, not the object.
    scale_admission: bool = False

    @property
    def resource(self) -> Resource:
        return Resource(self.group, self.version, self.plural, namespaced=self.namespaced, kind=self.kind)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def versions(self) -> tuple[str, ...]:
        return (self.version, *self.deprecated_versions)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def crd_file(self) -> str:
        """File name under config/crd/, as KubeRay names its CRD files (`ray.io_rayclusters.yaml`)."""
        return f"{self.group}_{self.plural}.yaml"

    @property
    def webhook_path(self) -> str:
        """KubeRay's (controller-runtime's) path for a validating webhook: `/validate-ray-io-v1-raycluster`."""
        return f"/validate-{self.group.replace('.', '-')}-{self.version}-{self.singular}"

    @property
    def scale_webhook_path(self) -> str:
        """The path that validates writes to the scale subresource."""
        return f"{self.webhook_path}-scale"


def _columns(*cols: Schema) -> tuple[Schema, ...]:
    return tuple(cols)


RAYCLUSTER: Final = KindSpec(
    kind=C.KIND_RAYCLUSTER,
    group=C.GROUP,
    version=C.VERSION,
    deprecated_versions=(C.ALPHA_VERSION,),
    plural=C.PLURAL_RAYCLUSTERS,
    schema=S.ray_cluster_schema,
    # As KubeRay's printcolumn markers (ray-operator/apis/ray/v1/raycluster_types.go).
    printer_columns=_columns(
        {"name": "desired workers", "type": "integer", "jsonPath": ".status.desiredWorkerReplicas"},
        {"name": "available workers", "type": "integer", "jsonPath": ".status.availableWorkerReplicas"},
        {"name": "cpus", "type": "string", "jsonPath": ".status.desiredCPU"},
        {"name": "memory", "type": "string", "jsonPath": ".status.desiredMemory"},
        {"name": "gpus", "type": "string", "jsonPath": ".status.desiredGPU"},
        {"name": "tpus", "type": "string", "jsonPath": ".status.desiredTPU", "priority": 1},
        {"name": "status", "type": "string", "jsonPath": ".status.state"},
        {"name": "age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "head pod IP", "type": "string", "jsonPath": ".status.head.podIP", "priority": 1},
        {"name": "head service IP", "type": "string", "jsonPath": ".status.head.serviceIP", "priority": 1},
    ),
)

RAYJOB: Final = KindSpec(
    kind=C.KIND_RAYJOB,
    group=C.GROUP,
    version=C.VERSION,
    deprecated_versions=(C.ALPHA_VERSION,),
    plural=C.PLURAL_RAYJOBS,
    schema=S.ray_job_schema,
    # ray-operator/apis/ray/v1/rayjob_types.go
    printer_columns=_columns(
        {"name": "job status", "type": "string", "jsonPath": ".status.jobStatus"},
        {"name": "deployment status", "type": "string", "jsonPath": ".status.jobDeploymentStatus"},
        {"name": "ray cluster name", "type": "string", "jsonPath": ".status.rayClusterName"},
        {"name": "start time", "type": "string", "jsonPath": ".status.startTime"},
        {"name": "end time", "type": "string", "jsonPath": ".status.endTime"},
        {"name": "age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
)

RAYSERVICE: Final = KindSpec(
    kind=C.KIND_RAYSERVICE,
    group=C.GROUP,
    version=C.VERSION,
    deprecated_versions=(C.ALPHA_VERSION,),
    plural=C.PLURAL_RAYSERVICES,
    schema=S.ray_service_schema,
    # ray-operator/apis/ray/v1/rayservice_types.go
    printer_columns=_columns(
        {"name": "service status", "type": "string", "jsonPath": ".status.serviceStatus"},
        {"name": "num serve endpoints", "type": "string", "jsonPath": ".status.numServeEndpoints"},
    ),
)

RAYWORKERGROUP: Final = KindSpec(
    kind=W.KIND,
    group=W.GROUP,
    version=W.VERSION,
    plural=W.PLURAL,
    short_names=(W.SHORT_NAME,),
    schema=S.ray_worker_group_schema,
    printer_columns=_columns(
        {"name": "cluster", "type": "string", "jsonPath": ".status.rayClusterName"},
        {"name": "group", "type": "string", "jsonPath": ".spec.groupName"},
        {"name": "desired", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "current", "type": "integer", "jsonPath": ".status.replicas", "priority": 1},
        {"name": "ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "min", "type": "integer", "jsonPath": ".status.minReplicas"},
        {"name": "max", "type": "integer", "jsonPath": ".status.maxReplicas"},
        {"name": "scaled by", "type": "string", "jsonPath": ".status.scaledBy"},
        {"name": "age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    scale=ScaleSubresource(),
    # The operator alone creates and updates these objects (the schema's CEL rules guard the rest);
    # what users write is the scale subresource, which the webhook checks against the owning cluster.
    admission=False,
    scale_admission=True,
)

RAYSERVEDEPLOYMENT: Final = KindSpec(
    kind=SD.KIND,
    group=SD.GROUP,
    version=SD.VERSION,
    plural=SD.PLURAL,
    short_names=(SD.SHORT_NAME,),
    schema=S.ray_serve_deployment_schema,
    printer_columns=_columns(
        {"name": "service", "type": "string", "jsonPath": ".spec.rayServiceName"},
        {"name": "application", "type": "string", "jsonPath": ".spec.applicationName"},
        {"name": "deployment", "type": "string", "jsonPath": ".spec.deploymentName"},
        {"name": "desired", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "current", "type": "integer", "jsonPath": ".status.replicas"},
        {"name": "ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "scaled by", "type": "string", "jsonPath": ".status.scaledBy"},
        {"name": "selector", "type": "string", "jsonPath": ".status.selector", "priority": 1},
        {"name": "age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    scale=ScaleSubresource(),
    # The RayService controller alone creates these objects; users write the scale subresource, which
    # the webhook refuses while Serve's own autoscaler sizes the deployment.
    admission=False,
    scale_admission=True,
)

KINDS: Final[tuple[KindSpec, ...]] = (RAYCLUSTER, RAYJOB, RAYSERVICE, RAYWORKERGROUP, RAYSERVEDEPLOYMENT)

# Where each Ray kind lives in the API, for controllers and clients.
RAYCLUSTERS: Final = RAYCLUSTER.resource
RAYJOBS: Final = RAYJOB.resource
RAYSERVICES: Final = RAYSERVICE.resource
RAYWORKERGROUPS: Final = RAYWORKERGROUP.resource
RAYSERVEDEPLOYMENTS: Final = RAYSERVEDEPLOYMENT.resource


def by_kind(kind: str) -> KindSpec:
    for k in KINDS:
        if k.kind == kind:
            return k
    raise KeyError(f"unknown kind {kind!r}; registered: {', '.join(k.kind for k in KINDS)}")


def admitted() -> Iterator[KindSpec]:
    """The kinds the admission webhook validates."""
    return (k for k in KINDS if k.admission)


def scale_admitted() -> Iterator[KindSpec]:
    """The kinds whose scale subresource the admission webhook validates."""
    return (k for k in KINDS if k.scale is not None and k.scale_admission)
