"""Kubernetes resource quantities with exact Decimal math, formatted the way apimachinery formats them.

KubeRay feeds quantities into three places where the exact text matters: `ray start` flags (integer
`Quantity.Value()`, which rounds up), the `/dev/shm` sizeLimit and the status fields `desiredCPU`/`desiredMemory`/
`desiredGPU`/`desiredTPU` (Go's canonical `Quantity.String()`). Reproducing Go's canonical form keeps the status
strings identical to KubeRay's, so `kubectl get raycluster` shows the same columns.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Literal

Format = Literal["DecimalSI", "BinarySI", "DecimalExponent"]

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_BY_EXP = {v: k for k, v in _DECIMAL.items()}
_BINARY_BY_EXP = {v // 10: k for k, v in _BINARY.items()}
_RE = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|([eE][+-]?\d+))?$")
_NANO = Decimal("1e-9")


class QuantityError(ValueError):
    """A string that Kubernetes would not accept as a resource quantity."""


@dataclass(frozen=True)
class Quantity:
    """An exact amount plus the suffix family it was written in (which Go keeps when summing)."""

    value: Decimal
    format: Format = "DecimalSI"

    def __add__(self, other: Quantity) -> Quantity:
        # Go's Quantity.Add keeps the receiver's format.
        return Quantity(self.value + other.value, self.format)

    def __mul__(self, n: int) -> Quantity:
        return Quantity(self.value * n, self.format)

    def is_zero(self) -> bool:
        return self.value == 0

    def int_value(self) -> int:
        """Go's `Quantity.Value()`: the value rounded up to an integer."""
        return math.ceil(self.value)

    def as_float(self) -> float:
        """Go's `AsApproximateFloat64()`."""
        return float(self.value)

    def __str__(self) -> str:
        return canonical(self)


def parse_quantity(text: str | int | float | Quantity) -> Quantity:
    """Parse `500m`, `1Gi`, `2`, `1e3`, `0.5`; ints and floats are taken as plain numbers."""
    if isinstance(text, Quantity):
        return text
    if isinstance(text, bool):
        raise QuantityError(f"not a quantity: {text!r}")
    if isinstance(text, int):
        return Quantity(Decimal(text))
    if isinstance(text, float):
        if text != text or text in (float("inf"), float("-inf")):
            raise QuantityError(f"not a quantity: {text!r}")
        return _round_nano(Quantity(Decimal(repr(text))))
    if not isinstance(text, str):
        raise QuantityError(f"not a quantity: {text!r}")
    return _parse_text(text)


# The same few strings ("1", "2Gi", ...) are parsed for every pod and every status pass; Quantity is
# immutable, so the results can be shared. Failures are not cached (they raise).
@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> Quantity:
    s = text.strip()
    m = _RE.match(s)
    if not m:
        raise QuantityError(f"quantities must match the regular expression: {text!r}")
    try:
        return _parse_match(m.group(1), m.group(2), m.group(3))
    except ArithmeticError as e:
        # The schema's pattern admits values like 1e400 that exceed any exact arithmetic; a bad
        # quantity must surface as a field problem, not as a decimal exception deep in a builder.
        raise QuantityError(f"quantity out of range: {text!r}") from e


def _parse_match(number: str, suffix: str | None, exponent: str | None) -> Quantity:
    base = Decimal(number)
    if exponent is not None:
        return _round_nano(Quantity(base.scaleb(int(exponent[1:])), "DecimalExponent"))
    suffix = suffix or ""
    if suffix in _BINARY:
        return _round_nano(Quantity(base * (Decimal(2) ** _BINARY[suffix]), "BinarySI"))
    return _round_nano(Quantity(base.scaleb(_DECIMAL[suffix]), "DecimalSI"))


def _round_nano(q: Quantity) -> Quantity:
    # apimachinery keeps at most nano precision and rounds any finer amount up (away from zero).
    if q.value == q.value.quantize(_NANO, rounding=ROUND_CEILING):
        return q
    with localcontext() as ctx:
        ctx.prec = 60
        sign = -1 if q.value < 0 else 1
        v = abs(q.value).quantize(_NANO, rounding=ROUND_CEILING) * sign
    return Quantity(v, q.format)


def _mantissa_exponent(value: Decimal) -> tuple[int, int]:
    """Integer mantissa and base-10 exponent with every trailing zero moved into the exponent."""
    sign, digits, exp = value.normalize().as_tuple()
    assert isinstance(exp, int)
    mantissa = int("".join(map(str, digits)) or "0")
    return (-mantissa if sign else mantissa), exp


@functools.lru_cache(maxsize=4096)
def canonical(q: Quantity) -> str:
    """Go's `Quantity.String()` (CanonicalizeBytes)."""
    if q.value == 0:
        return "0"
    fmt = q.format
    # Small or fractional binary amounts are shown in decimal to avoid rounding, as Go does.
    if fmt == "BinarySI" and (-1024 < q.value < 1024 or q.value != q.value.to_integral_value()):
        fmt = "DecimalSI"
    if fmt == "BinarySI":
        amount = int(q.value)
        exp = 0
        while amount % 1024 == 0 and exp < 6:
            amount //= 1024
            exp += 1
        return f"{amount}{_BINARY_BY_EXP.get(exp, '')}"
    mantissa, exp = _mantissa_exponent(q.value)
    # The exponent must be a multiple of three: move the remainder back into the mantissa.
    rem = exp % 3
    mantissa *= 10**rem
    exp -= rem
    if fmt == "DecimalExponent":
        return f"{mantissa}" if exp == 0 else f"{mantissa}e{exp}"
    if exp in _DECIMAL_BY_EXP:
        return f"{mantissa}{_DECIMAL_BY_EXP[exp]}"
    if exp > 18:
        return f"{mantissa * 10 ** (exp - 18)}E"
    return f"{mantissa}e{exp}"


def canonical_str(text: str | int | float) -> str:
    return canonical(parse_quantity(text))


def go_float(f: float) -> str:
    """How Go's encoding/json writes a float64 (used for the `--resources` JSON)."""
    if f != f or f in (float("inf"), float("-inf")):
        raise QuantityError("non-finite float")
    if f == int(f) and abs(f) < 1e21:
        return str(int(f))
    a = abs(f)
    if 1e-6 <= a < 1e21:
        return repr(f)
    s = f"{f:e}"
    # Go: shortest repr in 'e' form with a two-digit minimum exponent (e.g. 1e-07, 1e+21).
    mant, _, e = repr(f).partition("e")
    if not e:
        mant, _, e = s.partition("e")
    sign = "-" if e.startswith("-") else "+"
    digits = e.lstrip("+-").lstrip("0") or "0"
    return f"{mant}e{sign}{digits.zfill(2)}"
