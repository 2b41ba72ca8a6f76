"""The rules of each registered kind: its validator and its warner, keyed by the kind registry.

`rayop.api.kinds` declares the kinds; the rules live here because checking an object is this layer's
work. Importing this module fails when a kind the webhook admits has no rules, so a new kind cannot
reach the webhook or a controller unchecked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from rayop.api import kinds as K
from rayop.validation.errors import FieldError, not_supported
from rayop.validation.kinds import validate_raycluster, validate_rayjob, validate_rayservice
from rayop.validation.scale import (
    ScaleContext,
    ScaleVerdict,
    check_serve_deployment_scale,
    check_worker_group_scale,
)
from rayop.validation.warnings import warnings_raycluster, warnings_rayjob, warnings_rayservice


class Validator(Protocol):
    """Every error of an object; with `old` (an update) only the problems the update introduces."""

    def __call__(
        self, obj: Any, *, gates: Mapping[str, bool] | None = None, old: Any = None
    ) -> list[FieldError]: ...


class Warner(Protocol):
    """Admission warnings: things that are allowed but will likely bite later."""

    def __call__(self, obj: Any, old: Any = None) -> list[str]: ...


@dataclass(frozen=True)
class KindRules:
    validate: Validator
    warn: Warner


RULES: Mapping[str, KindRules] = {
    K.RAYCLUSTER.kind: KindRules(validate_raycluster, warnings_raycluster),
    K.RAYJOB.kind: KindRules(validate_rayjob, warnings_rayjob),
    K.RAYSERVICE.kind: KindRules(validate_rayservice, warnings_rayservice),
}


class ScaleRule(Protocol):
    """A write to the scale subresource (`scale` and `old` are autoscaling/v1 Scale objects), judged
    against the objects the webhook read for it."""

    def __call__(self, scale: Any, old: Any, ctx: ScaleContext) -> ScaleVerdict: ...


SCALE_RULES: Mapping[str, ScaleRule] = {
    K.RAYWORKERGROUP.kind: check_worker_group_scale,
    K.RAYSERVEDEPLOYMENT.kind: check_serve_deployment_scale,
}

_missing = sorted(k.kind for k in K.admitted() if k.kind not in RULES)
_missing += sorted(f"{k.kind}/scale" for k in K.scale_admitted() if k.kind not in SCALE_RULES)
if _missing:
    raise ImportError(f"kinds registered for admission without validation rules: {', '.join(_missing)}")


def validate(
    kind: str, obj: Any, *, gates: Mapping[str, bool] | None = None, old: Any = None
) -> list[FieldError]:
    rules = RULES.get(kind)
    if rules is None:
        return [not_supported("kind", kind, tuple(RULES))]
    return rules.validate(obj, gates=gates, old=old)


def warnings_for(kind: str, obj: Any, old: Any = None) -> list[str]:
    rules = RULES.get(kind)
    return rules.warn(obj, old) if rules else []


def validate_scale(kind: str, scale: Any, old: Any, ctx: ScaleContext) -> ScaleVerdict:
    rule = SCALE_RULES.get(kind)
    if rule is None:
        return ScaleVerdict([not_supported("kind", kind, tuple(SCALE_RULES))])
    return rule(scale, old, ctx)
