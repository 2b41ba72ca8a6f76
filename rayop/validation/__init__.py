"""Pure validation of RayCluster, RayJob and RayService manifests (docs/compatibility.md#validation).

Shared by the admission webhook (which rejects at create/update) and the controllers (which must still
guard when the webhook is off). No I/O; gates come in as a plain dict.

kinds      entry points: a whole RayCluster, RayJob or RayService (create, or update with the old object)
cluster    the RayCluster spec rules 1-19, shared by the three kinds
warnings   admission warnings: accepted manifests that will probably not do what their author meant
registry   each registered kind's validator and warner, keyed by the kind registry
errors     field errors rendered as Kubernetes renders them
names      Kubernetes name and label syntax
_shape     type checks of the fields validation reads, and lenient readers
_parse     parsers that accept exactly what KubeRay's Go code accepts (versions, durations, integers)
"""

from rayop.validation.errors import FieldError, aggregate_message
from rayop.validation.kinds import (
    validate_raycluster,
    validate_raycluster_status,
    validate_rayjob,
    validate_rayjob_status,
    validate_rayservice,
)
from rayop.validation.registry import RULES, SCALE_RULES, KindRules, validate, validate_scale, warnings_for
from rayop.validation.scale import ScaleContext, ScaleVerdict
from rayop.validation.warnings import (
    warnings_raycluster,
    warnings_rayjob,
    warnings_rayservice,
)

__all__ = [
    "RULES",
    "SCALE_RULES",
    "FieldError",
    "KindRules",
    "ScaleContext",
    "ScaleVerdict",
    "aggregate_message",
    "validate",
    "validate_raycluster",
    "validate_raycluster_status",
    "validate_rayjob",
    "validate_rayjob_status",
    "validate_rayservice",
    "validate_scale",
    "warnings_for",
    "warnings_raycluster",
    "warnings_rayjob",
    "warnings_rayservice",
]
