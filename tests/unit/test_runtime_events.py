"""EventRecorder: folded repeats reach the API server within a flush interval, without another repeat."""

from __future__ import annotations

from typing import Any

import pytest

from rayop.runtime import events
from rayop.runtime.events import EventRecorder
from tests.helpers import eventually


class RecordingClient:
    """Just the calls EventRecorder makes, kept in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def wait_calm(self, timeout: float) -> None:
        return None

    async def create(self, res: Any, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        self.calls.append(("create", body))
        return body

    async def patch(self, res: Any, name: str, patch: Any, namespace: str | None = None) -> dict[str, Any]:
        self.calls.append(("patch", patch))
        return {}


SUBJECT = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "cm", "namespace": "ns", "uid": "u1"},
}


async def test_a_folded_count_is_written_once_the_repeats_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "SERIES_FLUSH", 0.3)
    client = RecordingClient()
    rec = EventRecorder(client, "kuberay-operator", "test")  # type: ignore[arg-type]
    try:
        for _ in range(3):
            rec.record(SUBJECT, "Warning", "FailedToCreateWorkerPod", "Create", "quota exceeded")
        await eventually(lambda: client.calls, 5, 0.02, what="the first Event")
        assert [c[0] for c in client.calls] == ["create"]
        # No fourth repeat comes: the recorder must still write the count of the two folded ones.
        await eventually(lambda: any(c[0] == "patch" for c in client.calls), 5, 0.02, what="series PATCH")
        patch = next(c[1] for c in client.calls if c[0] == "patch")
        assert patch["series"]["count"] == 3
        assert [c[0] for c in client.calls] == ["create", "patch"], "one PATCH carries both repeats"
    finally:
        await rec.stop()


async def test_a_lone_event_is_never_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "SERIES_FLUSH", 0.1)
    client = RecordingClient()
    rec = EventRecorder(client, "kuberay-operator", "test")  # type: ignore[arg-type]
    try:
        rec.record(SUBJECT, "Normal", "CreatedWorkerPod", "Create", "Created worker Pod x")
        await eventually(lambda: client.calls, 5, 0.02, what="the Event")
        rec.record(SUBJECT, "Normal", "Other", "Create", "something else")
        await eventually(lambda: len(client.calls) == 2, 5, 0.02, what="the second Event")
        await rec.flush(1)
        assert [c[0] for c in client.calls] == ["create", "create"]
    finally:
        await rec.stop()


async def test_normal_events_do_not_use_up_the_warnings_tokens() -> None:
    client = RecordingClient()
    rec = EventRecorder(client, "kuberay-operator", "test")  # type: ignore[arg-type]
    try:
        for i in range(events.SPAM_BURST + 5):
            rec.record(SUBJECT, "Normal", "UpdatedService", "Update", f"update {i}")
        rec.record(SUBJECT, "Warning", "ServeApplicationFailed", "Update", "app is DEPLOY_FAILED")
        assert rec.dropped == 5, "the Normal events beyond the burst are dropped, as client-go does"

        def reasons() -> list[str]:
            return [c[1]["reason"] for c in client.calls if c[0] == "create"]

        await eventually(lambda: "ServeApplicationFailed" in reasons(), 5, 0.02, what="the Warning")
        assert reasons().count("UpdatedService") == events.SPAM_BURST
    finally:
        await rec.stop()
