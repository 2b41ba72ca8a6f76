"""AdmissionReview (admission.k8s.io/v1) in, AdmissionReview out: the webhook's decision, as plain dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rayop.api import kinds
from rayop.validation import FieldError, aggregate_message, validate, warnings_for

ADMISSION_API_VERSION = "admission.k8s.io/v1"
# The API server may truncate longer warnings; keep each one readable in full.
MAX_WARNING_CHARS = 256
MAX_WARNINGS = 20

# The path the webhook serves for each kind it admits (from the kind registry).
PATHS: dict[str, str] = {k.kind: k.webhook_path for k in kinds.admitted()}


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


def review(kind: str, body: Any, gates: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """Answer one AdmissionReview for ``kind``. Raises BadReview when ``body`` is not a v1 AdmissionReview."""
    if not isinstance(body, dict):
        raise BadReview("the body must be a JSON object")
    if body.get("kind") != "AdmissionReview" or body.get("apiVersion") != ADMISSION_API_VERSION:
        raise BadReview(f"expected kind AdmissionReview, apiVersion {ADMISSION_API_VERSION}")
    req = body.get("request")
    if not isinstance(req, dict) or not isinstance(req.get("uid"), str):
        raise BadReview("request.uid is missing")
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
