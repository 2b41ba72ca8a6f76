"""RFC 3339 timestamps as Kubernetes writes them (`metav1.Time`: seconds, `MicroTime`: microseconds)."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(t: dt.datetime | float) -> dt.datetime:
    if isinstance(t, dt.datetime):
        return t.astimezone(dt.UTC) if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(t, dt.UTC)


def format_time(t: dt.datetime | float) -> str:
    """`2024-05-01T12:00:00Z`: a `metav1.Time` (whole seconds, as the API server stores it)."""
    return _utc(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(t: dt.datetime | float) -> str:
    """`2024-05-01T12:00:00.123456Z`: a `metav1.MicroTime` (Leases, events.k8s.io Events)."""
    return _utc(t).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: object) -> dt.datetime | None:
    """A timestamp in any RFC 3339 form Kubernetes writes (`Z` or an offset, with or without fractions);
    None for anything else, so a malformed value in a user-edited status never raises."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def parse_timestamp(text: object) -> float | None:
    """`parse_time` as seconds since the epoch."""
    t = parse_time(text)
    return t.timestamp() if t is not None else None
