"""The validation step of a RayCluster reconcile (KubeRay `ValidateRayClusterMetadata`, `...Spec` and
`...Status`, `ray-operator/controllers/ray/utils/validation.go`).

The rules themselves are `rayop.validation`'s, shared with the admission webhook; this step runs them on
objects that reached the API server without the webhook (or under older rules), reports a refusal as
KubeRay does (a Warning event and the `.status.reason`), and stops the reconcile. A refused object is not
requeued: the next edit brings it back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from rayop.api import constants as C
from rayop.base.objects import condition_true, meta, ref, spec_of
from rayop.base.types import Obj
from rayop.controllers.common import ACT_VALIDATE, WARNING
from rayop.controllers.raycluster.step import DEFAULT_REQUEUE, ReconcilePass, StepServices
from rayop.runtime.protocols import Result
from rayop.validation import FieldError

log = logging.getLogger("rayop.controllers.raycluster")


class Validate(Protocol):
    def __call__(
        self, obj: Any, *, gates: Mapping[str, bool] | None = None, old: Any = None
    ) -> list[FieldError]: ...


@dataclass(frozen=True)
class Refusal:
    """The reconcile stops here with `result`; `status_reason`, when set, goes to `.status.reason`."""

    result: Result
    status_reason: str | None = None


class ValidationStep:
    def __init__(self, services: StepServices, validate: Validate) -> None:
        self.s = services
        self.validate = validate
        # (namespace, name) -> (fingerprint of metadata and spec, errors): most reconciles are caused by
        # pod and status events and see an unchanged spec, so the rules need not run again.
        self._validated: dict[tuple[str, str], tuple[bytes, list[FieldError | str]]] = {}

    def forget(self, key: tuple[str, str]) -> None:
        self._validated.pop(key, None)

    def check(self, p: ReconcilePass) -> Refusal | None:
        """None when the cluster may be reconciled; else why not (the event is already recorded)."""
        rc = p.cluster
        errors = self._errors(rc)
        if errors:
            meta_errs = [e for e in errors if str(getattr(e, "path", "") or e).startswith("metadata")]
            reason = (
                C.EV_INVALID_METADATA if meta_errs and len(meta_errs) == len(errors) else C.EV_INVALID_SPEC
            )
            what = "metadata" if reason == C.EV_INVALID_METADATA else "spec"
            text = "; ".join(str(e) for e in errors)
            msg = (
                f"The RayCluster {what} is invalid {meta(rc).get('namespace')}/{meta(rc).get('name')}: {text}"
            )
            log.info("%s", msg)
            self.s.writer.event(rc, WARNING, reason, ACT_VALIDATE, msg)
            # No requeue (as KubeRay): the next edit of the object brings it back.
            return Refusal(Result(), status_reason=f"{reason}: {text}")
        if condition_true(rc, C.COND_SUSPENDING) and condition_true(rc, C.COND_SUSPENDED):
            msg = (
                f"The RayCluster status is invalid {meta(rc).get('namespace')}/{meta(rc).get('name')}, "
                "RayClusterSuspending and RayClusterSuspended conditions should not be both true"
            )
            self.s.writer.event(rc, WARNING, C.EV_INVALID_STATUS, ACT_VALIDATE, msg)
            return Refusal(Result(DEFAULT_REQUEUE))
        return None

    def _errors(self, rc: Obj) -> list[FieldError | str]:
        md = meta(rc)
        key = (str(md.get("namespace")), str(md.get("name")))
        try:
            stable = {k: v for k, v in md.items() if k != "resourceVersion"}
            fingerprint = orjson.dumps([stable, spec_of(rc)])
        except TypeError:
            fingerprint = b""  # not JSON (never from the API server): validate every time
        hit = self._validated.get(key)
        if fingerprint and hit is not None and hit[0] == fingerprint:
            return hit[1]
        try:
            errors: list[FieldError | str] = list(self.validate(rc, gates=dict(self.s.settings.gates)))
        except Exception as e:
            # Validation is pure and total by contract; if it still trips on some input, refuse the
            # object visibly rather than reconcile what could not be checked.
            log.warning("%s: validation failed: %r", ref(rc), e, exc_info=True)
            errors = [f"spec: Invalid value: {e!r}"]
        if fingerprint:
            self._validated[key] = (fingerprint, errors)
        return errors
