"""Field errors rendered the way Kubernetes renders them (`k8s.io/apimachinery/pkg/util/validation/field`).

``str(err)`` gives ``<path>: <Type>[: <value>][: <detail>]``, e.g.
``spec.workerGroupSpecs[1].minReplicas: Invalid value: 5: must be less than or equal to maxReplicas (3)``.
Users who know ``kubectl`` errors recognise the shape, and tools that parse Status causes get one cause per
error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["Invalid", "Required", "Forbidden", "Duplicate", "TooLong", "NotSupported"]

# The words Kubernetes prints for each error type (field.ErrorType.String()).
_TYPE_WORDS: dict[str, str] = {
    "Invalid": "Invalid value",
    "Required": "Required value",
    "Forbidden": "Forbidden",
    "Duplicate": "Duplicate value",
    "TooLong": "Too long",
    "NotSupported": "Unsupported value",
}
# Types whose rendering never includes the bad value (as in ErrorBody()).
_NO_VALUE = {"Required", "Forbidden", "TooLong"}
# The Status cause type (metav1.CauseType) for each kind.
CAUSE_TYPES: dict[str, str] = {
    "Invalid": "FieldValueInvalid",
    "Required": "FieldValueRequired",
    "Forbidden": "FieldValueForbidden",
    "Duplicate": "FieldValueDuplicate",
    "TooLong": "FieldValueTooLong",
    "NotSupported": "FieldValueNotSupported",
}
_MAX_VALUE_CHARS = 200


def format_value(value: Any) -> str:
    """Render a bad value like Go's ErrorBody: numbers and booleans bare, strings quoted, null for None."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    # A whole pod template as "the bad value" would drown the message; keep the start.
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 3] + "..."
    return text


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: where (path), what was there (value), why (message), of which kind."""

    path: str
    value: Any
    message: str
    kind: Kind = "Invalid"

    def body(self) -> str:
        word = _TYPE_WORDS.get(self.kind, self.kind)
        s = word if self.kind in _NO_VALUE else f"{word}: {format_value(self.value)}"
        if self.message:
            s += f": {self.message}"
        return s

    def __str__(self) -> str:
        return f"{self.path}: {self.body()}"

    @property
    def cause_type(self) -> str:
        return CAUSE_TYPES.get(self.kind, "FieldValueInvalid")


def invalid(path: str, value: Any, message: str) -> FieldError:
    return FieldError(path, value, message, "Invalid")


def required(path: str, message: str = "") -> FieldError:
    return FieldError(path, None, message, "Required")


def forbidden(path: str, message: str) -> FieldError:
    return FieldError(path, None, message, "Forbidden")


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError(path, value, "", "Duplicate")


def too_long(path: str, value: Any, limit: int, why: str = "") -> FieldError:
    msg = f"may not be more than {limit} characters"
    return FieldError(path, value, f"{msg} ({why})" if why else msg, "TooLong")


def not_supported(path: str, value: Any, supported: list[str] | tuple[str, ...]) -> FieldError:
    values = ", ".join(json.dumps(s) for s in supported)
    return FieldError(path, value, f"supported values: {values}", "NotSupported")


def aggregate_message(errors: list[FieldError]) -> str:
    """Join like utilerrors.Aggregate: one error alone, several as ``[a, b]`` (duplicates dropped)."""
    seen: list[str] = []
    for e in errors:
        s = str(e)
        if s not in seen:
            seen.append(s)
    if len(seen) == 1:
        return seen[0]
    return "[" + ", ".join(seen) + "]"
