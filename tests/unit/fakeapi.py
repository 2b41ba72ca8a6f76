"""A scriptable fake Kubernetes API for fault-injection tests of the runtime (loopback aiohttp server).

It serves list (with paging) and watch for any `/api/v1/[namespaces/<ns>/]<plural>` path from one
in-memory store, and lets a test script what the next watch requests get: a normal stream, a 410
(as an ERROR event or HTTP status), a 429 with Retry-After, or a stream that never sends anything.
Streams can be cut at any moment with `disconnect_watches()`.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

from aiohttp import web

Obj = dict[str, Any]


class FakeApi:
    def __init__(self) -> None:
        self.rv = 100
        self.objects: dict[tuple[str, str, str], Obj] = {}  # (plural, ns, name)
        self.history: list[tuple[int, str, str, Obj]] = []  # (rv, plural, type, obj)
        self.compacted = 0
        self.plan: deque[Any] = deque()  # directives for the next watch requests
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (kind, path, query)
        self._gen = 0  # bumped to cut every open watch stream
        self.runner: web.AppRunner | None = None
        self.port = 0

    # -- server lifecycle ------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/{plural}", self._collection)
        app.router.add_get("/api/v1/{plural}", self._collection)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.disconnect_watches()
        if self.runner is not None:
            await self.runner.cleanup()

    # -- state changes ---------------------------------------------------------------------------

    def _bump(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, plural: str, obj: Obj, *, notify: bool = True) -> Obj:
        md = obj.setdefault("metadata", {})
        key = (plural, md.get("namespace", ""), md["name"])
        etype = "MODIFIED" if key in self.objects else "ADDED"
        md["resourceVersion"] = str(self._bump())
        md.setdefault("uid", f"uid-{md['name']}-{self.rv}")
        self.objects[key] = json.loads(json.dumps(obj))
        if notify:
            self.history.append((self.rv, plural, etype, self.objects[key]))
        return obj

    def delete(self, plural: str, ns: str, name: str, *, notify: bool = True) -> None:
        obj = self.objects.pop((plural, ns, name))
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self._bump())
        if notify:
            self.history.append((self.rv, plural, "DELETED", obj))

    def compact(self) -> None:
        """Make every resourceVersion up to now too old for a watch (like etcd compaction)."""
        self.compacted = self.rv

    def bookmark(self) -> int:
        """Queue a BOOKMARK at a fresh resourceVersion for all open watches."""
        rv = self._bump()
        self.history.append((rv, "*", "BOOKMARK", {"metadata": {"resourceVersion": str(rv)}}))
        return rv

    def disconnect_watches(self) -> None:
        self._gen += 1

    def count(self, kind: str) -> int:
        return sum(1 for k, _, _ in self.requests if k == kind)

    # -- handlers --------------------------------------------------------------------------------

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        q = dict(request.query)
        plural = request.match_info["plural"]
        ns = request.match_info.get("ns")
        if q.get("watch") in ("true", "1"):
            self.requests.append(("watch", request.path, q))
            return await self._watch(request, plural, ns, q)
        self.requests.append(("list", request.path, q))
        directive = None
        if self.plan and isinstance(self.plan[0], tuple) and self.plan[0][0] == "list-status":
            directive = self.plan.popleft()
        if directive is not None:
            return self._status(directive[1], directive[2] if len(directive) > 2 else 0)
        items = sorted(
            (o for (p, n, _), o in self.objects.items() if p == plural and (ns is None or n == ns)),
            key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]),
        )
        items = [o for o in items if _selected(o, q.get("labelSelector"))]
        start = int(q.get("continue") or 0)
        limit = int(q.get("limit") or 0) or len(items) or 1
        page = items[start : start + limit]
        md: Obj = {"resourceVersion": str(self.rv)}
        if start + limit < len(items):
            md["continue"] = str(start + limit)
        return web.json_response({"kind": "List", "apiVersion": "v1", "metadata": md, "items": page})

    def _status(self, code: int, retry_after: int = 0) -> web.Response:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code}
        headers = {}
        if retry_after:
            body["details"] = {"retryAfterSeconds": retry_after}
            headers["Retry-After"] = str(retry_after)
        body["reason"] = {410: "Expired", 429: "TooManyRequests"}.get(code, "InternalError")
        body["message"] = f"fake {code}"
        return web.json_response(body, status=code, headers=headers)

    async def _watch(
        self, request: web.Request, plural: str, ns: str | None, q: dict[str, str]
    ) -> web.StreamResponse:
        directive = self.plan.popleft() if self.plan else "stream"
        if isinstance(directive, tuple) and directive[0] == "status":
            return self._status(directive[1], directive[2] if len(directive) > 2 else 0)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        gen = self._gen
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(q.get("timeoutSeconds") or 300)
        if directive == "empty":
            return resp
        if directive == "hang":
            while self._gen == gen:  # noqa: ASYNC110 - polling keeps the fake free of lost wake-ups
                await asyncio.sleep(0.02)
            return resp
        since = int(q.get("resourceVersion") or 0)
        if directive == "gone" or since < self.compacted:
            err = {
                "type": "ERROR",
                "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"},
            }
            await resp.write(json.dumps(err).encode() + b"\n")
            return resp
        sent = since
        # Polling keeps the fake simple and free of lost wake-ups between several streams.
        while self._gen == gen and loop.time() < deadline:
            for rv, p, etype, obj in list(self.history):
                if rv <= sent:
                    continue
                sent = rv
                if etype == "BOOKMARK":
                    if q.get("allowWatchBookmarks") != "true":
                        continue
                    ev = {"type": "BOOKMARK", "object": {"kind": "ConfigMap", "metadata": obj["metadata"]}}
                else:
                    if p != plural or (ns is not None and obj["metadata"].get("namespace") != ns):
                        continue
                    if not _selected(obj, q.get("labelSelector")):
                        continue
                    ev = {"type": etype, "object": obj}
                await resp.write(json.dumps(ev).encode() + b"\n")
            await asyncio.sleep(0.02)
        return resp


def _selected(obj: Obj, selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in selector.split(","):
        k, _, v = term.partition("=")
        if labels.get(k) != v:
            return False
    return True
