"""Reading the Events an operator wrote about an object.

The operator's event recorder writes Events in the background and paces them while its client is busy
(rayop/runtime/events.py), so an Event lands some time after the change it reports. A test that checks
an Event therefore waits for it (`wait_event`, `wait_reasons`) instead of reading the list once.
"""

from __future__ import annotations

from rayop.runtime.client import EVENTS, ApiClient
from tests.helpers import eventually


async def events_of(kube: ApiClient, ns: str, name: str) -> list[tuple[str, str]]:
    """(reason, note) of every Event in `ns` about the object called `name`."""
    evs = (await kube.list(EVENTS, ns))["items"]
    return [
        (e.get("reason", ""), e.get("note", ""))
        for e in evs
        if (e.get("regarding") or {}).get("name") == name
    ]


async def event_reasons(kube: ApiClient, ns: str, name: str) -> list[str]:
    return [r for r, _ in await events_of(kube, ns, name)]


async def wait_event(
    kube: ApiClient, ns: str, name: str, reason: str, text: str = "", timeout: float = 60
) -> str:
    """The note of the first Event `reason` about `name` that contains `text`."""

    async def found() -> str:
        return next((n for r, n in await events_of(kube, ns, name) if r == reason and text in n), "")

    note: str = await eventually(found, timeout, 0.3, what=f"event {reason} on {name} with {text!r}")
    return note


async def wait_reasons(kube: ApiClient, ns: str, name: str, *reasons: str, timeout: float = 60) -> set[str]:
    """Wait until Events with all of `reasons` exist about `name`; return every reason seen."""

    async def found() -> set[str]:
        seen = set(await event_reasons(kube, ns, name))
        return seen if set(reasons) <= seen else set()

    seen: set[str] = await eventually(found, timeout, 0.3, what=f"events {sorted(reasons)} on {name}")
    return seen
