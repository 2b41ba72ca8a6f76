"""Small parsers whose accepted syntax must match what KubeRay (Go) accepts."""

from __future__ import annotations

import re

_GENERIC_VERSION = re.compile(r"^\s*v?([0-9]+(?:\.[0-9]+)+)(.*)$")


def parse_generic_version(text: str) -> tuple[int, ...] | None:
    """Like k8s.io/apimachinery version.ParseGeneric: at least major.minor, optional leading 'v';
    pre-release/build suffixes are ignored for ordering. None when unparsable."""
    m = _GENERIC_VERSION.match(text)
    if not m:
        return None
    extra = m.group(2)
    if extra and extra[0] not in "-+":
        return None
    parts = tuple(int(p) for p in m.group(1).split("."))
    return parts + (0,) * (3 - len(parts)) if len(parts) < 3 else parts


def version_at_least(parsed: tuple[int, ...], minimum: tuple[int, ...]) -> bool:
    n = max(len(parsed), len(minimum))
    a = parsed + (0,) * (n - len(parsed))
    b = minimum + (0,) * (n - len(minimum))
    return a >= b


_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5
    "μs": 1_000,  # U+03BC
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DUR_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-zµμ]+)")


def parse_go_duration(text: str) -> float | None:
    """Seconds for a Go time.ParseDuration string ("1h30m", "-5s", "0"), None when Go would reject it."""
    s = text
    if not s:
        return None
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        return None
    total_ns = 0.0
    pos = 0
    while pos < len(s):
        m = _DUR_PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            return None
        unit = _UNIT_NS.get(m.group(2))
        if unit is None:
            return None
        total_ns += float(m.group(1)) * unit
        pos = m.end()
    return sign * total_ns / 1e9


_GO_ATOI = re.compile(r"^[+-]?[0-9]+$")


def parse_go_atoi(text: str) -> int | None:
    """strconv.Atoi: optional sign, decimal digits only, 64-bit range."""
    if not _GO_ATOI.match(text):
        return None
    v = int(text)
    if not -(2**63) <= v < 2**63:
        return None
    return v
