"""events.k8s.io/v1 Events, recorded without blocking or failing the caller.

`record()` only puts the event on a bounded in-memory queue; a background task writes it. Repeats of
the same (object, type, reason, action, message) within the series window are folded into the first
Event as `series.count`, like client-go's events broadcaster, and each object gets a token bucket
(burst 25, then one per 5 minutes, client-go's spam filter) so a hot loop cannot flood etcd. Unlike
client-go, Normal and Warning events of an object draw from separate buckets: a long-lived object's
routine Normal events (a RayService records a handful per upgrade) must not use up the tokens of the
Warning that says what went wrong (docs/compatibility.md). Failures
to write are logged at debug level and dropped: an event is a courtesy, never a reason to fail a
reconcile. For the same reason an event waits (at most MAX_DEFER_SECONDS after it was recorded) while
the client has a burst of requests in flight, rather than compete with the writes it describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from dataclasses import dataclass

from rayop.base.times import format_micro_time
from rayop.base.types import Obj
from rayop.runtime.client import EVENTS, ApiClient, ApiError

log = logging.getLogger("rayop.runtime.events")


NOTE_MAX = 1024  # events.k8s.io/v1 rejects longer notes
SERIES_WINDOW = 6 * 60.0  # client-go folds repeats seen within 6 minutes into a series
SERIES_FLUSH = 30.0  # at most one series PATCH per event per this many seconds
SPAM_BURST = 25
SPAM_REFILL_SECONDS = 300.0
# How long an event may wait for the client to calm down (see _run); bounded so Events stay timely
# and a busy operator drains its backlog at full speed once events are that old.
MAX_DEFER_SECONDS = 5.0


def micro_time(t: float | None = None) -> str:
    return format_micro_time(time.time() if t is None else t)


@dataclass
class _Series:
    name: str | None
    namespace: str
    count: int
    first: float
    last: float
    written_count: int
    last_write: float


@dataclass
class _Pending:
    key: tuple[str, ...]
    regarding: Obj
    namespace: str
    type_: str
    reason: str
    action: str
    note: str
    at: float


class EventRecorder:
    """Writes Events for one reporting controller/instance. See the module docstring."""

    def __init__(
        self,
        client: ApiClient,
        component: str = "kuberay-operator",
        instance: str | None = None,
        *,
        max_queue: int = 1000,
    ) -> None:
        self.client = client
        self.component = component
        self.instance = instance or socket.gethostname()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._max_queue = max_queue
        self._task: asyncio.Task[None] | None = None
        self._series: dict[tuple[str, ...], _Series] = {}
        self._unwritten: set[tuple[str, ...]] = set()  # series whose count has folded repeats not yet written
        self._buckets: dict[str, tuple[float, float]] = {}  # object/type -> (tokens, last refill)
        self.dropped = 0
        self.written = 0

    # -- caller side -----------------------------------------------------------------------------

    def record(self, obj: Obj, type_: str, reason: str, action: str, message: str) -> None:
        """Queue an event about obj ("Normal"|"Warning"); never blocks, never raises."""
        try:
            self._record(obj, type_, reason, action, message)
        except Exception:
            log.exception("dropping event %s for an object that could not be described", reason)

    def _record(self, obj: Obj, type_: str, reason: str, action: str, message: str) -> None:
        md = obj.get("metadata") or {}
        uid = str(md.get("uid") or "")
        if not self._take_token(f"{uid or md.get('namespace')}/{md.get('name')}/{type_}"):
            self.dropped += 1
            log.debug("event rate limit: dropping %s %s for %s", type_, reason, md.get("name"))
            return
        regarding = {
            "apiVersion": obj.get("apiVersion", ""),
            "kind": obj.get("kind", ""),
            "name": md.get("name", ""),
            "namespace": md.get("namespace", ""),
            "uid": uid,
            "resourceVersion": md.get("resourceVersion", ""),
        }
        regarding = {k: v for k, v in regarding.items() if v}
        note = message if len(message) <= NOTE_MAX else message[: NOTE_MAX - 3] + "..."
        key = (uid, str(md.get("namespace") or ""), str(md.get("name") or ""), type_, reason, action, note)
        pending = _Pending(
            key, regarding, md.get("namespace") or "default", type_, reason, action, note, time.time()
        )
        queue = self._ensure_started()
        try:
            queue.put_nowait(pending)
        except asyncio.QueueFull:
            self.dropped += 1

    def _take_token(self, who: str) -> bool:
        now = time.monotonic()
        tokens, last = self._buckets.get(who, (float(SPAM_BURST), now))
        tokens = min(float(SPAM_BURST), tokens + (now - last) / SPAM_REFILL_SECONDS)
        if tokens < 1:
            self._buckets[who] = (tokens, now)
            return False
        self._buckets[who] = (tokens - 1, now)
        if len(self._buckets) > 10000:
            # Forget the fullest buckets (they would refill anyway) so the map stays bounded.
            for k in [k for k, (t, _) in self._buckets.items() if t >= SPAM_BURST - 1][:5000]:
                del self._buckets[k]
        return True

    def _ensure_started(self) -> asyncio.Queue[_Pending]:
        if self._queue is None:
            self._queue = asyncio.Queue(self._max_queue)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-recorder")
        return self._queue

    # -- writer side -----------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            try:
                # Wake up at least once per flush interval, so the count of a series that stopped
                # repeating still reaches the API server (not only with the next repeat).
                p = await asyncio.wait_for(self._queue.get(), SERIES_FLUSH)
            except TimeoutError:
                await self._write_folded()
                continue
            try:
                # An Event is a courtesy: while the operator has a burst of requests in flight (a large
                # scale-up), it waits a little so it does not take API server time from that work.
                await self.client.wait_calm(p.at + MAX_DEFER_SECONDS - time.time())
                await self._write(p)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                log.debug("event %s not written: %s", p.reason, e)
            except Exception as e:
                log.debug("event %s not written: %r", p.reason, e)
            finally:
                self._queue.task_done()
            if self._unwritten:
                await self._write_folded()

    async def _write_folded(self) -> None:
        """PATCH the counts of series that folded repeats and were last written a flush interval ago."""
        now = time.time()
        for key in list(self._unwritten):
            s = self._series.get(key)
            if s is None or s.name is None or s.count <= s.written_count:
                self._unwritten.discard(key)
                continue
            if now - s.last_write < SERIES_FLUSH:
                continue
            try:
                await self._patch_series(s)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                s.last_write = now  # try again after another interval, not in a tight loop
                log.debug("event series count not written: %r", e)
                continue
            self._unwritten.discard(key)

    async def _write(self, p: _Pending) -> None:
        s = self._series.get(p.key)
        now = time.time()
        self._gc(now)
        if s is not None and s.name and now - s.last <= SERIES_WINDOW:
            s.count += 1
            s.last = p.at
            if now - s.last_write < SERIES_FLUSH and s.count - s.written_count < 100:
                self._unwritten.add(p.key)  # folded; written within a flush interval (_write_folded)
                return
            await self._patch_series(s)
            self._unwritten.discard(p.key)
            return
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {
                "name": f"{p.regarding.get('name', 'unknown')}.{secrets.token_hex(8)}",
                "namespace": p.namespace,
            },
            "eventTime": micro_time(p.at),
            "reportingController": self.component,
            "reportingInstance": self.instance,
            "action": p.action,
            "reason": p.reason,
            "regarding": p.regarding,
            "note": p.note,
            "type": p.type_,
        }
        created = await self.client.create(EVENTS, body, p.namespace)
        self.written += 1
        self._series[p.key] = _Series(
            created["metadata"]["name"], p.namespace, 1, p.at, p.at, written_count=1, last_write=now
        )

    async def _patch_series(self, s: _Series) -> None:
        assert s.name is not None
        patch = {"series": {"count": s.count, "lastObservedTime": micro_time(s.last)}}
        try:
            await self.client.patch(EVENTS, s.name, patch, s.namespace)
        except ApiError as e:
            if e.not_found:
                s.name = None  # expired by the API server's event TTL; the next repeat starts anew
                return
            raise
        s.written_count = s.count
        s.last_write = time.time()
        self.written += 1

    def _gc(self, now: float) -> None:
        if len(self._series) < 2000:
            return
        for k in [k for k, s in self._series.items() if now - s.last > SERIES_WINDOW]:
            del self._series[k]
            self._unwritten.discard(k)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until queued events are written, and write folded series counts (for shutdown, tests)."""
        if self._queue is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._queue.join()
                for s in list(self._series.values()):
                    if s.name and s.count > s.written_count:
                        with contextlib.suppress(ApiError):
                            await self._patch_series(s)

    async def stop(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
