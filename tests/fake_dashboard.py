"""An in-process stand-in for a Ray head's dashboard (Jobs + Serve + health), for tests.

It answers like Ray 2.60 does where the operator cares: duplicate submission ids get HTTP 500 with Ray's
ValueError text, unknown ids 404 with text, stop on a finished job `stopped: false`, token auth via
`x-ray-authorization` (or `Authorization`).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakeJob:
    submission_id: str
    entrypoint: str
    status: str = "PENDING"
    message: str = "Job has not started yet."
    runtime_env: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)
    start_time: int = 0
    end_time: int = 0
    logs: str = ""

    def details(self) -> dict[str, Any]:
        return {
            "type": "SUBMISSION",
            "job_id": None,
            "submission_id": self.submission_id,
            "status": self.status,
            "entrypoint": self.entrypoint,
            "message": self.message,
            "error_type": None,
            "start_time": self.start_time,
            "end_time": self.end_time or None,
            "metadata": self.metadata,
            "runtime_env": self.runtime_env,
            "driver_exit_code": None,
        }


class FakeDashboard:
    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.jobs: dict[str, FakeJob] = {}
        self.submissions: list[dict[str, Any]] = []  # every POST body, duplicates included
        self.serve_config: dict[str, Any] | None = None
        self.serve_apps: dict[str, Any] = {}
        self.healthy = True
        self.delay = 0.0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # Test controls -------------------------------------------------------------------------------

    def set_status(self, sid: str, status: str, message: str = "") -> None:
        job = self.jobs[sid]
        job.status = status
        job.message = message or f"Job is {status.lower()}."
        now = int(time.time() * 1000)
        if status == "RUNNING" and not job.start_time:
            job.start_time = now
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            job.end_time = now

    # Server --------------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> FakeDashboard:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/api/version", self._version)
        app.router.add_get("/api/gcs_healthz", self._gcs)
        app.router.add_post("/api/jobs/", self._submit)
        app.router.add_get("/api/jobs/", self._list)
        app.router.add_get("/api/jobs/{id}", self._get)
        app.router.add_delete("/api/jobs/{id}", self._delete)
        app.router.add_post("/api/jobs/{id}/stop", self._stop)
        app.router.add_get("/api/jobs/{id}/logs", self._logs)
        app.router.add_get("/api/serve/applications/", self._serve_get)
        app.router.add_put("/api/serve/applications/", self._serve_put)
        app.router.add_delete("/api/serve/applications/", self._serve_delete)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.token:
            got = request.headers.get("x-ray-authorization") or request.headers.get("Authorization") or ""
            if got != f"Bearer {self.token}":
                return web.Response(status=401, text="Unauthorized: missing or invalid token")
        resp: web.StreamResponse = await handler(request)
        return resp

    async def _version(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"version": "4", "ray_version": "2.60.0", "ray_commit": "fake", "session_name": "s"}
        )

    async def _gcs(self, _: web.Request) -> web.Response:
        if not self.healthy:
            return web.Response(status=503, text="GCS is not healthy")
        return web.Response(text="success")

    async def _submit(self, request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        self.submissions.append(body)
        if "entrypoint" not in body:
            return web.Response(status=400, text="TypeError: missing entrypoint")
        sid = body.get("submission_id") or f"raysubmit_{len(self.submissions):016d}"
        if sid in self.jobs:
            return web.Response(
                status=500,
                text=(
                    "Traceback (most recent call last):\n  ...\nValueError: Job with submission_id "
                    f"{sid} already exists. Please use a different submission_id."
                ),
            )
        self.jobs[sid] = FakeJob(
            submission_id=sid,
            entrypoint=body["entrypoint"],
            runtime_env=body.get("runtime_env") or {},
            metadata=body.get("metadata") or {},
            request=body,
        )
        return web.json_response({"job_id": sid, "submission_id": sid})

    async def _list(self, _: web.Request) -> web.Response:
        return web.json_response([j.details() for j in self.jobs.values()])

    def _job(self, request: web.Request) -> FakeJob | None:
        return self.jobs.get(request.match_info["id"])

    def _missing(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text=f"Job {request.match_info['id']} does not exist")

    async def _get(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job is None:
            return self._missing(request)
        return web.json_response(job.details())

    async def _delete(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job is None:
            return self._missing(request)
        if job.status not in ("SUCCEEDED", "FAILED", "STOPPED"):
            return web.Response(status=500, text="Job is not in a terminal state")
        del self.jobs[job.submission_id]
        return web.json_response({"deleted": True})

    async def _stop(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job is None:
            return self._missing(request)
        if job.status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return web.json_response({"stopped": False})
        self.set_status(job.submission_id, "STOPPED", "Job was intentionally stopped.")
        return web.json_response({"stopped": True})

    async def _logs(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job is None:
            return self._missing(request)
        return web.json_response({"logs": job.logs})

    async def _serve_get(self, request: web.Request) -> web.Response:
        if request.query.get("api_type", "declarative") not in ("declarative", "imperative"):
            return web.Response(status=400, text="bad api_type")
        return web.json_response({"applications": self.serve_apps, "proxy_location": "EveryNode"})

    async def _serve_put(self, request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        if "applications" not in body:
            return web.Response(
                status=400, text="1 validation error for ServeDeploySchema\napplications\n  field required"
            )
        self.serve_config = body
        self.serve_apps = {
            a.get("name", "default"): {
                "name": a.get("name", "default"),
                "status": "DEPLOYING",
                "deployments": {},
            }
            for a in body["applications"]
        }
        return web.Response(status=200)

    async def _serve_delete(self, _: web.Request) -> web.Response:
        self.serve_config = None
        self.serve_apps = {}
        return web.Response(status=200)
