"""In-process stand-ins for a Ray head's dashboard (Jobs + Serve + health), for tests.

`FakeDashboard` is one head. It answers like Ray 2.60 does where the operator cares: duplicate submission
ids get HTTP 500 with Ray's ValueError text, unknown ids 404 with text, stop on a finished job `stopped:
false`, token auth via `x-ray-authorization` (or `Authorization`).

`FakeFleet` is many Ray clusters behind one port, for RayService tests and the chaos campaign:
`/c/<cluster>/...` is that cluster's dashboard (Serve and Jobs), `/p/<pod>/-/healthz` and `/p/<pod>/metrics`
are a pod's Serve proxy and metrics exporter. Serve behaves like Ray 2.60's: a PUT replaces the whole
application set (a new or changed application is DEPLOYING, then RUNNING after `deploy_seconds`; an unchanged
one stays as it is, so a PUT that only changes `target_capacity` leaves RUNNING applications running), an
import path naming a missing module fails with DEPLOY_FAILED and Ray's ModuleNotFoundError message,
`target_capacity` is reported back, and `lose()` forgets everything, as a head restarted without GCS FT does.
An application whose code (import path, args, runtime_env) did not change keeps running through a PUT, with
its deployments' new options (Serve's light update). Deployments are those the config lists (else one
called `D`), each with its target number of replicas, all RUNNING.
Jobs answer as `FakeDashboard`'s do; with `job_seconds` set they also run by themselves: RUNNING at once, then
after `job_seconds` (or the N of a `sleep N` in the entrypoint) SUCCEEDED, or FAILED when the entrypoint says
`exit 1`. Every POST is kept per cluster (`submissions`), duplicates included, so a test counts what reached
Ray.
"""

from __future__ import annotations

import asyncio
import itertools
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


MISSING_MODULE_PREFIX = "nosuch"


@dataclass
class FakeServe:
    """One Ray cluster's Serve, as the dashboard reports it."""

    deploy_seconds: float | None = None
    """Applications turn RUNNING this long after a PUT; None: they stay DEPLOYING until a test says."""
    config: dict[str, Any] | None = None
    apps: dict[str, Any] = field(default_factory=dict)
    puts: list[dict[str, Any]] = field(default_factory=list)
    target_capacity: int | None = None
    put_times: list[float] = field(default_factory=list)
    """Wall-clock time (time.time()) of each PUT."""
    _deployed_at: float = 0.0

    def put(self, body: dict[str, Any]) -> None:
        self.puts.append(body)
        self.put_times.append(time.time())
        before = {a.get("name", "default"): a for a in (self.config or {}).get("applications") or []}
        old_apps = self.apps
        self.config = body
        self.target_capacity = body.get("target_capacity")
        self._deployed_at = time.monotonic()
        old, self.apps = self.apps, {}
        for a in body.get("applications") or []:
            name = a.get("name", "default")
            if before.get(name) == a and name in old_apps:
                self.apps[name] = old_apps[name]
                continue
            code = json.dumps([a.get("import_path"), a.get("args"), a.get("runtime_env")], sort_keys=True)
            prev = old.get(name)
            if prev is not None and prev["_code"] == code and prev["status"] == "RUNNING":
                self.apps[name] = {**prev, "_spec": a, "deployments": _deployments(a)}
                continue
            self.apps[name] = {
                "name": name,
                "route_prefix": a.get("route_prefix", "/"),
                "status": "DEPLOYING",
                "message": "",
                "deployments": {},
                "_import_path": str(a.get("import_path") or ""),
                "_code": code,
                "_spec": a,
            }

    def set_status(self, status: str, message: str = "", app: str | None = None) -> None:
        for name, a in self.apps.items():
            if app is None or name == app:
                a["status"] = status
                a["message"] = message

    def lose(self) -> None:
        """A head restarted without GCS fault tolerance: no Serve at all."""
        self.config = None
        self.apps = {}

    def details(self) -> dict[str, Any]:
        if self.deploy_seconds is not None and time.monotonic() - self._deployed_at >= self.deploy_seconds:
            for a in self.apps.values():
                if a["status"] != "DEPLOYING":
                    continue
                module = a["_import_path"].split(":", 1)[0].split(".", 1)[0]
                if module.startswith(MISSING_MODULE_PREFIX):
                    a["status"] = "DEPLOY_FAILED"
                    a["message"] = (
                        "Deploying application failed:\nTraceback (most recent call last):\n  ...\n"
                        f"ModuleNotFoundError: No module named '{module}'"
                    )
                else:
                    a["status"] = "RUNNING"
                    a["deployments"] = _deployments(a["_spec"])
        apps = {n: {k: v for k, v in a.items() if not k.startswith("_")} for n, a in self.apps.items()}
        return {"applications": apps, "proxy_location": "EveryNode", "target_capacity": self.target_capacity}


def _deployments(app: dict[str, Any]) -> dict[str, Any]:
    """What Serve reports of an application's deployments (DeploymentDetails, the fields rayop reads)."""
    listed = [d for d in app.get("deployments") or [] if isinstance(d, dict) and d.get("name")]
    out: dict[str, Any] = {}
    for d in listed or [{"name": "D"}]:
        auto = d.get("autoscaling_config")
        n = d.get("num_replicas")
        target = (auto or {}).get("min_replicas", 1) if auto is not None else n if isinstance(n, int) else 1
        out[d["name"]] = {
            "name": d["name"],
            "status": "HEALTHY",
            "message": "",
            "target_num_replicas": target,
            "deployment_config": {"num_replicas": None if auto else target, "autoscaling_config": auto},
            "replicas": [
                {"replica_id": f"{d['name']}-{i}", "state": "RUNNING", "node_ip": "", "node_instance_id": ""}
                for i in range(target)
            ],
        }
    return out


def serve_put_response(serve: FakeServe, text: str) -> web.Response:
    body = json.loads(text)
    if "applications" not in body:
        return web.Response(
            status=400, text="1 validation error for ServeDeploySchema\napplications\n  field required"
        )
    serve.put(body)
    return web.Response(status=200)


class FakeDashboard:
    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.jobs: dict[str, FakeJob] = {}
        self.submissions: list[dict[str, Any]] = []  # every POST body, duplicates included
        self.serve = FakeServe()
        self.healthy = True
        self.delay = 0.0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def serve_config(self) -> dict[str, Any] | None:
        return self.serve.config

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
        return web.json_response(self.serve.details())

    async def _serve_put(self, request: web.Request) -> web.Response:
        return serve_put_response(self.serve, await request.text())

    async def _serve_delete(self, _: web.Request) -> web.Response:
        self.serve.lose()
        return web.Response(status=200)


@dataclass
class FakePod:
    """One Ray pod as the operator reaches it: its Serve proxy and its metrics exporter."""

    healthy: bool = True
    delay: float = 0.0
    ongoing: int = 0
    metrics_up: bool = True


def _job_seconds(entrypoint: str, default: float) -> float:
    words = entrypoint.replace(";", " ").split()
    for a, b in itertools.pairwise(words):
        if a == "sleep":
            try:
                return float(b)
            except ValueError:
                pass
    return default


class FleetResolver:
    """Where the operator reaches a fleet's dashboards and pods, given only its URL (an operator running in
    another process uses this)."""

    def __init__(self, url: str) -> None:
        self._url = url

    @property
    def url(self) -> str:
        return self._url

    def resolve_dashboard(self, address: str) -> str:
        """`<cluster>-head-svc.<ns>.svc.<domain>:<port>` → that cluster's fake dashboard."""
        host = address.split("://", 1)[-1].split(":", 1)[0].split(".", 1)[0]
        return f"{self.url}/c/{host.removesuffix('-head-svc')}"

    def resolve_pod(self, namespace: str, pod: str, ip: str, port: int) -> str:
        del namespace, ip, port
        return f"{self.url}/p/{pod}"


class FakeFleet(FleetResolver):
    """Many Ray clusters' dashboards and pods on one port (see the module docstring)."""

    def __init__(self, deploy_seconds: float | None = 0.3, job_seconds: float | None = None) -> None:
        super().__init__("")
        self.deploy_seconds = deploy_seconds
        self.job_seconds = job_seconds
        self.clusters: dict[str, FakeServe] = {}
        self.jobs: dict[str, dict[str, FakeJob]] = {}  # cluster -> submission id -> job
        self.submissions: dict[str, list[dict[str, Any]]] = {}  # cluster -> every POST body
        self._submitted_at: dict[tuple[str, str], float] = {}
        self.pods: dict[str, FakePod] = {}
        self.down: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cluster(self, name: str) -> FakeServe:
        if name not in self.clusters:
            self.clusters[name] = FakeServe(deploy_seconds=self.deploy_seconds)
        return self.clusters[name]

    def pod(self, name: str) -> FakePod:
        return self.pods.setdefault(name, FakePod())

    def puts(self, cluster: str | None = None) -> int:
        return sum(len(s.puts) for n, s in self.clusters.items() if cluster in (None, n))

    async def start(self) -> FakeFleet:
        app = web.Application()
        app.router.add_route("*", "/c/{cluster}/{tail:.*}", self._dashboard)
        app.router.add_get("/p/{pod}/-/healthz", self._healthz)
        app.router.add_get("/p/{pod}/metrics", self._metrics)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _dashboard(self, request: web.Request) -> web.Response:
        name, tail = request.match_info["cluster"], "/" + request.match_info["tail"]
        self.requests.append((request.method, f"/c/{name}{tail}"))
        if name in self.down:
            raise web.HTTPServiceUnavailable(text="dashboard down")
        serve = self.cluster(name)
        if tail == "/api/version":
            return web.json_response({"version": "4", "ray_version": "2.60.0", "ray_commit": "fake"})
        if tail == "/api/gcs_healthz":
            return web.Response(text="success")
        if tail == "/api/serve/applications/":
            if request.method == "GET":
                return web.json_response(serve.details())
            if request.method == "PUT":
                return serve_put_response(serve, await request.text())
            if request.method == "DELETE":
                serve.lose()
                return web.Response(status=200)
        if tail.startswith("/api/jobs/"):
            return await self._jobs(name, request.method, tail.removeprefix("/api/jobs/"), request)
        raise web.HTTPNotFound(text=f"no route {request.method} {tail}")

    # Jobs ---------------------------------------------------------------------------------------

    def submitted(self, cluster: str) -> list[str]:
        """The submission ids a cluster's Ray knows, in submission order."""
        return list(self.jobs.get(cluster, {}))

    def job(self, cluster: str, sid: str) -> FakeJob | None:
        job = self.jobs.get(cluster, {}).get(sid)
        if job is not None:
            self._progress(cluster, job)
        return job

    def _progress(self, cluster: str, job: FakeJob) -> None:
        if self.job_seconds is None or job.status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return
        age = time.monotonic() - self._submitted_at[(cluster, job.submission_id)]
        now = int(time.time() * 1000)
        if job.status == "PENDING":
            job.status, job.message, job.start_time = "RUNNING", "Job is currently running.", now
        if age >= _job_seconds(job.entrypoint, self.job_seconds):
            failed = "exit 1" in job.entrypoint
            job.status = "FAILED" if failed else "SUCCEEDED"
            job.message = "Job entrypoint command failed with exit code 1" if failed else "Job finished."
            job.end_time = now

    async def _jobs(self, cluster: str, method: str, rest: str, request: web.Request) -> web.Response:
        jobs = self.jobs.setdefault(cluster, {})
        sid, _, action = rest.partition("/")
        if method == "POST" and not sid:
            body = json.loads(await request.text())
            self.submissions.setdefault(cluster, []).append(body)
            sid = body.get("submission_id") or f"raysubmit_{len(self.submissions[cluster]):016d}"
            if sid in jobs:
                return web.Response(
                    status=500,
                    text=(
                        "Traceback (most recent call last):\n  ...\nValueError: Job with submission_id "
                        f"{sid} already exists. Please use a different submission_id."
                    ),
                )
            jobs[sid] = FakeJob(
                submission_id=sid,
                entrypoint=str(body.get("entrypoint", "")),
                runtime_env=body.get("runtime_env") or {},
                metadata=body.get("metadata") or {},
                request=body,
            )
            self._submitted_at[(cluster, sid)] = time.monotonic()
            return web.json_response({"job_id": sid, "submission_id": sid})
        if method == "GET" and not sid:
            for j in jobs.values():
                self._progress(cluster, j)
            return web.json_response([j.details() for j in jobs.values()])
        job = self.job(cluster, sid)
        if job is None:
            return web.Response(status=404, text=f"Job {sid} does not exist")
        if method == "GET" and not action:
            return web.json_response(job.details())
        if method == "GET" and action == "logs":
            return web.json_response({"logs": job.logs})
        if method == "POST" and action == "stop":
            if job.status in ("SUCCEEDED", "FAILED", "STOPPED"):
                return web.json_response({"stopped": False})
            job.status, job.message = "STOPPED", "Job was intentionally stopped."
            job.end_time = int(time.time() * 1000)
            return web.json_response({"stopped": True})
        if method == "DELETE" and not action:
            if job.status not in ("SUCCEEDED", "FAILED", "STOPPED"):
                return web.Response(status=500, text="Job is not in a terminal state")
            del jobs[sid]
            return web.json_response({"deleted": True})
        raise web.HTTPNotFound(text=f"no route {method} /api/jobs/{rest}")

    async def _healthz(self, request: web.Request) -> web.Response:
        pod = self.pod(request.match_info["pod"])
        self.requests.append(("GET", f"/p/{request.match_info['pod']}/-/healthz"))
        if pod.delay:
            await asyncio.sleep(pod.delay)
        if not pod.healthy:
            return web.Response(status=503, text="Route table is not populated yet.")
        return web.Response(text="success")

    async def _metrics(self, request: web.Request) -> web.Response:
        pod = self.pod(request.match_info["pod"])
        if not pod.metrics_up:
            raise web.HTTPServiceUnavailable(text="metrics exporter down")
        labels = f'Component="core_worker",node_id="{request.match_info["pod"]}",node_ip_address="10.1.0.1"'
        return web.Response(
            text=(
                "# HELP ray_serve_num_ongoing_http_requests The number of ongoing requests in this HTTP proxy.\n"
                "# TYPE ray_serve_num_ongoing_http_requests gauge\n"
                f"ray_serve_num_ongoing_http_requests{{{labels}}} {float(pod.ongoing)}\n"
                "# HELP ray_node_cpu_utilization Total CPU usage.\n"
                "# TYPE ray_node_cpu_utilization gauge\n"
                f"ray_node_cpu_utilization{{{labels}}} 12.5\n"
            ),
            content_type="text/plain",
        )
