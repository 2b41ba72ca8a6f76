"""Pure validation of RayCluster, RayJob and RayService manifests (docs/compatibility.md#validation).

Shared by the admission webhook (which rejects at create/update) and the controllers (which must still
guard when the webhook is off). No I/O; gates come in as a plain dict.
"""

from rayop.validation.errors import FieldError, aggregate_message
from rayop.validation.kinds import (
    validate_raycluster,
    validate_raycluster_status,
    validate_rayjob,
    validate_rayjob_status,
    validate_rayservice,
)
from rayop.validation.registry import RULES, KindRules, validate, warnings_for
from rayop.validation.warnings import (
    warnings_raycluster,
    warnings_rayjob,
    warnings_rayservice,
)

__all__ = [
    "RULES",
    "FieldError",
    "KindRules",
    "aggregate_message",
    "validate",
    "validate_raycluster",
    "validate_raycluster_status",
    "validate_rayjob",
    "validate_rayjob_status",
    "validate_rayservice",
    "warnings_for",
    "warnings_raycluster",
    "warnings_rayjob",
    "warnings_rayservice",
]
