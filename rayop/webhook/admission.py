"""AdmissionReview (admission.k8s.io/v1) in, AdmissionReview out: the webhook's decision, as plain dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rayop.api import kinds
from rayop.validation import (
    FieldError,
    ScaleContext,
    aggregate_message,
    validate,
    validate_scale,
    warnings_for,
)

ADMISSION_API_VERSION = "admission.k8s.io/v1"
# The API server may truncate longer warnings; keep each one readable in full.
MAX_WARNING_CHARS = 256
MAX_WARNINGS = 20

# The path the webhook serves for each kind it admits (from the kind registry).
PATHS: dict[str, str] = {k.kind: k.webhook_path for k in kinds.admitted()}
# The path that judges writes to a kind's scale subresource.
SCALE_PATHS: dict[str, str] = {k.kind: k.scale_webhook_path for k in kinds.scale_admitted()}
SCALE_KIND = {"group": "autoscaling", "version": "v1", "kind": "Scale"}


class BadReview(ValueError):
    """The request body is not an AdmissionReview we can answer."""


def _clip(text: str) -> str:
    return text if len(text) <= MAX_WARNING_CHARS else text[: MAX_WARNING_CHARS - 3] + "..."


def invalid_status(kind: str, name: str, errors: list[FieldError]) -> dict[str, Any]:
    """A metav1.Status like apierrors.NewInvalid builds: 422, reason Invalid, one cause per field error."""
    group = kinds.by_kind(kind).group
    return {
        "metadata": {},
        "status": "Failure",
        "message": f'{kind}.{group} "{name}" is invalid: {aggregate_message(errors)}',
        "reason": "Invalid",
        "code": 422,
        "details": {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": e.cause_type, "message": e.body(), "field": e.path} for e in errors],
        },
    }


def _request(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadReview("the body must be a JSON object")
    if body.get("kind") != "AdmissionReview" or body.get("apiVersion") != ADMISSION_API_VERSION:
        raise BadReview(f"expected kind AdmissionReview, apiVersion {ADMISSION_API_VERSION}")
    req = body.get("request")
    if not isinstance(req, dict) or not isinstance(req.get("uid"), str):
        raise BadReview("request.uid is missing")
    return req


def review(kind: str, body: Any, gates: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """Answer one AdmissionReview for ``kind``. Raises BadReview when ``body`` is not a v1 AdmissionReview."""
    req = _request(body)
    uid = req["uid"]
    resp: dict[str, Any] = {"uid": uid, "allowed": True}
    out = {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": resp}
    op = req.get("operation")
    if op not in ("CREATE", "UPDATE"):
        return out
    rk = req.get("kind")
    req_kind: dict[str, Any] = rk if isinstance(rk, dict) else {}
    if req_kind.get("kind") not in (None, kind):
        resp["allowed"] = False
        resp["status"] = {
            "metadata": {},
            "status": "Failure",
            "code": 400,
            "reason": "BadRequest",
            "message": f"this webhook validates {kind}, not {req_kind.get('kind')}",
        }
        return out
    obj = req.get("object")
    old = req.get("oldObject") if op == "UPDATE" else None
    errors = validate(kind, obj, gates=gates, old=old)
    warnings = [w for w in warnings_for(kind, obj, old) if w]
    spec = kinds.by_kind(kind)
    if not warnings and req_kind.get("version") in spec.deprecated_versions:
        warnings = [f"{spec.group}/{req_kind['version']} {kind} is deprecated; use {spec.api_version}"]
    if warnings:
        resp["warnings"] = [_clip(w) for w in dict.fromkeys(warnings)][:MAX_WARNINGS]
    if errors:
        name = ""
        if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
            name = str(obj["metadata"].get("name") or req.get("name") or "")
        resp["allowed"] = False
        resp["status"] = invalid_status(kind, name, errors)
    return out


def scale_target(body: Any) -> tuple[str, str]:
    """(namespace, name) of the object whose scale subresource an AdmissionReview writes, for the caller
    to read what `review_scale` needs. Raises BadReview like `review`."""
    req = _request(body)
    return str(req.get("namespace") or ""), str(req.get("name") or "")


def review_scale(kind: str, body: Any, ctx: ScaleContext) -> dict[str, Any]:
    """Answer one AdmissionReview of a write to ``kind``'s scale subresource (an autoscaling/v1 Scale)."""
    req = _request(body)
    resp: dict[str, Any] = {"uid": req["uid"], "allowed": True}
    out = {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": resp}
    rk = req.get("kind")
    if req.get("operation") != "UPDATE" or req.get("subResource") != "scale":
        return out
    if not isinstance(rk, dict) or rk.get("kind") != SCALE_KIND["kind"]:
        resp["allowed"] = False
        resp["status"] = {
            "metadata": {},
            "status": "Failure",
            "code": 400,
            "reason": "BadRequest",
            "message": f"this webhook validates the Scale of {kind}, not {rk}",
        }
        return out
    verdict = validate_scale(kind, req.get("object"), req.get("oldObject"), ctx)
    if verdict.warnings:
        resp["warnings"] = [_clip(w) for w in dict.fromkeys(verdict.warnings)][:MAX_WARNINGS]
    if verdict.errors:
        resp["allowed"] = False
        resp["status"] = invalid_status(kind, str(req.get("name") or ""), verdict.errors)
    return out
