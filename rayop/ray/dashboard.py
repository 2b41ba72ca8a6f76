"""Async client for the Ray dashboard's REST API (Jobs, Serve, health, and the state of Ray's nodes).

The same calls KubeRay makes (docs/compatibility.md#ray-dashboard), with two differences on purpose:
every failure is an exception that carries the method, URL, HTTP status and response body, and the
"submission id already used" answer is its own exception type so callers can treat it as "already submitted".

Two ways to reach a head: straight to the head Service (`http://<svc>.<ns>.svc.<domain>:8265`), or through the
API server's service proxy (`<apiserver>/api/v1/namespaces/<ns>/services/<svc>:dashboard/proxy`), like KubeRay's
`--use-kubernetes-proxy`; the proxy reuses an ApiClient's session and credentials.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from rayop.base.types import Obj
from rayop.runtime.client import ApiClient

# KubeRay's HTTP client timeouts (utils/constant.go): the proxy adds an API-server hop.
DIRECT_TIMEOUT_SECONDS = 2.0
PROXY_TIMEOUT_SECONDS = 10.0

AUTH_HEADER = "x-ray-authorization"
JOBS_PATH = "/api/jobs/"
PACKAGES_PATH = "/api/packages/"
SERVE_APPLICATIONS_PATH = "/api/serve/applications/"
GCS_HEALTHZ_PATH = "/api/gcs_healthz"
VERSION_PATH = "/api/version"
# The dashboard's node view (python/ray/dashboard/modules/node/node_head.py) and Ray's state API
# (python/ray/dashboard/modules/state/state_head.py).
NODES_PATH = "/nodes"
STATE_PATH = "/api/v0/"
# The state API's own ceiling (RAY_MAX_LIMIT_FROM_API_SERVER); it answers with fewer rows by default.
STATE_LIST_LIMIT = 10000

# The text Ray's job manager raises for a reused submission id (HTTP 500 in Ray 2.60, 400 in some older
# versions); KubeRay matches the same substring.
DUPLICATE_SUBMISSION_MARKER = "Please use a different submission_id"

JOB_TERMINAL = frozenset({"STOPPED", "SUCCEEDED", "FAILED"})
_BODY_IN_MESSAGE = 2000


def _apiserver_status(text: str) -> bool:
    """A Kubernetes Status body: the API server's proxy answered (e.g. the head Service is gone), not Ray.
    Its 404 says nothing about the job."""
    if not text.startswith("{"):
        return False
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("kind") == "Status" and body.get("apiVersion") == "v1"


class DashboardError(Exception):
    """A call to the Ray dashboard failed. `status` is None when no HTTP answer arrived."""

    def __init__(self, method: str, url: str, status: int | None, body: str, detail: str = "") -> None:
        self.method = method
        self.url = url
        self.status = status
        self.body = body
        self.detail = detail
        what = f"HTTP {status}" if status is not None else (detail or "no response")
        text = body if len(body) <= _BODY_IN_MESSAGE else body[:_BODY_IN_MESSAGE] + "..."
        msg = f"{method} {url}: {what}"
        if text:
            msg += f": {text.strip()}"
        elif detail and status is not None:
            msg += f": {detail}"
        super().__init__(msg)


class DashboardUnavailable(DashboardError):
    """No HTTP answer: connection refused, DNS failure, timeout."""


class JobNotFound(DashboardError):
    """The dashboard answered 404 for a job id."""


class DuplicateSubmission(DashboardError):
    """The submission id is already taken: the job was submitted before (maybe by us, before a restart)."""

    def __init__(self, method: str, url: str, status: int | None, body: str, submission_id: str) -> None:
        super().__init__(method, url, status, body, f"submission id {submission_id!r} already used")
        self.submission_id = submission_id


@dataclass(frozen=True)
class JobInfo:
    """The fields of Ray's JobDetails the operator reads; `raw` keeps the whole answer."""

    status: str
    message: str = ""
    submission_id: str = ""
    job_id: str = ""
    entrypoint: str = ""
    start_time: int = 0
    end_time: int = 0
    error_type: str = ""
    driver_exit_code: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    raw: Obj = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in JOB_TERMINAL

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> JobInfo:
        return cls(
            status=str(d.get("status") or ""),
            message=str(d.get("message") or ""),
            submission_id=str(d.get("submission_id") or ""),
            job_id=str(d.get("job_id") or ""),
            entrypoint=str(d.get("entrypoint") or ""),
            start_time=int(d.get("start_time") or 0),
            end_time=int(d.get("end_time") or 0),
            error_type=str(d.get("error_type") or ""),
            driver_exit_code=d.get("driver_exit_code"),
            metadata=dict(d.get("metadata") or {}),
            raw=dict(d),
        )


class DashboardClient:
    """Calls one Ray head's dashboard. Cheap to create; share the aiohttp session between clients."""

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        token: str | None = None,
        timeout: float = DIRECT_TIMEOUT_SECONDS,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._extra_headers = dict(headers or {})
        self._session = session
        self._owns_session = session is None

    # Construction --------------------------------------------------------------------------------

    @classmethod
    def direct(
        cls,
        dashboard_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        token: str | None = None,
        timeout: float = DIRECT_TIMEOUT_SECONDS,
    ) -> DashboardClient:
        """`dashboard_url` as RayJob.status.dashboardURL holds it (`host:port`, no scheme) or a full URL."""
        url = dashboard_url if "://" in dashboard_url else f"http://{dashboard_url}"
        return cls(url, session=session, token=token, timeout=timeout)

    @classmethod
    def via_proxy(
        cls,
        api: ApiClient,
        namespace: str,
        service: str,
        *,
        port: str = "dashboard",
        token: str | None = None,
        timeout: float = PROXY_TIMEOUT_SECONDS,
    ) -> DashboardClient:
        """Through the API server's service proxy, with the ApiClient's TLS session and credentials."""
        base = (
            f"{api.config.server}/api/v1/namespaces/{quote(namespace)}/services/{quote(service)}:{port}/proxy"
        )
        headers: dict[str, str] = {"User-Agent": api.user_agent}
        bearer = api.config.bearer()
        if bearer:
            # The API server consumes Authorization; Ray's token travels in x-ray-authorization.
            headers["Authorization"] = f"Bearer {bearer}"
        return cls(base, session=api.session, token=token, timeout=timeout, headers=headers)

    async def __aenter__(self) -> DashboardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # Plumbing ------------------------------------------------------------------------------------

    def _headers(self, json_body: bool) -> dict[str, str]:
        h = {"Accept": "application/json", **self._extra_headers}
        if self.token:
            h[AUTH_HEADER] = f"Bearer {self.token}"
        if json_body:
            h["Content-Type"] = "application/json"
        return h

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, str, str]:
        """One HTTP round trip; returns (status, text, url). Raises DashboardUnavailable without an answer."""
        url = self.base_url + path
        if params:
            url += "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in params.items())
        data = None if body is None else json.dumps(body)
        try:
            async with self.session.request(
                method,
                url,
                data=data,
                headers=self._headers(body is not None),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                text = await resp.text(errors="replace")
                return resp.status, text, url
        except TimeoutError as e:
            raise DashboardUnavailable(method, url, None, "", f"timed out after {self.timeout:g}s") from e
        except aiohttp.ClientError as e:
            raise DashboardUnavailable(method, url, None, "", f"{type(e).__name__}: {e}") from e

    def _json(self, method: str, url: str, status: int, text: str) -> Any:
        try:
            return json.loads(text) if text else None
        except ValueError as e:
            raise DashboardError(method, url, status, text, "response is not JSON") from e

    async def _request_json(
        self, method: str, path: str, *, body: Any = None, not_found: type[DashboardError] | None = None
    ) -> Any:
        status, text, url = await self._call(method, path, body=body)
        if status == 404 and not_found is not None and not _apiserver_status(text):
            raise not_found(method, url, status, text)
        if status >= 300:
            raise DashboardError(method, url, status, text)
        return self._json(method, url, status, text)

    @staticmethod
    def _job_path(job_id: str, sub: str = "") -> str:
        p = JOBS_PATH + quote(job_id, safe="")
        return f"{p}/{sub}" if sub else p

    # Health --------------------------------------------------------------------------------------

    async def version(self) -> Obj:
        """GET /api/version: {"version": "4", "ray_version", "ray_commit", "session_name"}."""
        result = await self._request_json("GET", VERSION_PATH)
        return dict(result or {})

    async def gcs_healthz(self) -> None:
        """Raise unless the head's GCS answers healthy (200 with `success`)."""
        status, text, url = await self._call("GET", GCS_HEALTHZ_PATH)
        if status != 200 or "success" not in text:
            raise DashboardError("GET", url, status, text, "GCS not healthy")

    async def gcs_healthy(self) -> bool:
        try:
            await self.gcs_healthz()
        except DashboardError:
            return False
        return True

    # Jobs ----------------------------------------------------------------------------------------

    async def submit_job(self, request: Mapping[str, Any]) -> str:
        """POST /api/jobs/ with a JobSubmitRequest; returns the submission id.

        Raises DuplicateSubmission when the id is taken (callers decide whether that means "ours, already
        submitted").
        """
        status, text, url = await self._call("POST", JOBS_PATH, body=dict(request))
        if status >= 300:
            if DUPLICATE_SUBMISSION_MARKER in text or ("already exists" in text and "submission_id" in text):
                raise DuplicateSubmission("POST", url, status, text, str(request.get("submission_id", "")))
            raise DashboardError("POST", url, status, text)
        answer = self._json("POST", url, status, text) or {}
        return str(answer.get("submission_id") or answer.get("job_id") or request.get("submission_id") or "")

    async def get_job(self, job_id: str) -> JobInfo:
        """GET /api/jobs/<id>; JobNotFound on 404."""
        result = await self._request_json("GET", self._job_path(job_id), not_found=JobNotFound)
        if not isinstance(result, dict):
            raise DashboardError("GET", self.base_url + self._job_path(job_id), 200, str(result), "not a job")
        return JobInfo.from_json(result)

    async def list_jobs(self) -> list[JobInfo]:
        result = await self._request_json("GET", JOBS_PATH)
        return [JobInfo.from_json(j) for j in (result or []) if isinstance(j, dict)]

    async def stop_job(self, job_id: str) -> bool:
        """POST /api/jobs/<id>/stop. Returns whether this call stopped it.

        Like KubeRay: `stopped: false` is fine when the job is already terminal; otherwise it is an error.
        """
        path = self._job_path(job_id, "stop")
        result = await self._request_json("POST", path, not_found=JobNotFound)
        if isinstance(result, dict) and result.get("stopped"):
            return True
        info = await self.get_job(job_id)
        if not info.terminal:
            raise DashboardError(
                "POST", self.base_url + path, 200, json.dumps(result), f"job still {info.status} after stop"
            )
        return False

    async def delete_job(self, job_id: str) -> bool:
        """DELETE /api/jobs/<id> (only for terminal jobs). Returns Ray's `deleted`."""
        result = await self._request_json("DELETE", self._job_path(job_id), not_found=JobNotFound)
        return bool(isinstance(result, dict) and result.get("deleted"))

    async def get_job_logs(self, job_id: str) -> str:
        result = await self._request_json("GET", self._job_path(job_id, "logs"), not_found=JobNotFound)
        return str((result or {}).get("logs") or "")

    # State API -----------------------------------------------------------------------------------

    async def list_alive_nodes(self, limit: int = 10_000) -> list[Obj]:
        """GET /api/v0/nodes, ALIVE ones: each with `node_id`, `node_ip`, `is_head_node` and `labels`
        (on Pods KubeRay builds, `ray.io/node-group` names the worker group, from RAY_NODE_TYPE_NAME)."""
        params = {
            "limit": str(limit),
            "detail": "false",
            "filter_keys": "state",
            "filter_predicates": "=",
            "filter_values": "ALIVE",
        }
        status, text, url = await self._call("GET", STATE_PATH + "nodes", params=params)
        if status >= 300:
            raise DashboardError("GET", url, status, text)
        body = self._json("GET", url, status, text)
        result = ((body or {}).get("data") or {}).get("result") if isinstance(body, dict) else None
        nodes = result.get("result") if isinstance(result, dict) else None
        return [n for n in nodes or [] if isinstance(n, dict)]

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """The driver's output as it is written (GET /api/jobs/<id>/logs/tail, a WebSocket), until the job
        ends. Raises DashboardUnavailable when the WebSocket cannot be opened."""
        url = self.base_url + self._job_path(job_id, "logs/tail")
        try:
            ws = await self.session.ws_connect(
                url, headers=self._headers(False), max_msg_size=0, heartbeat=None
            )
        except aiohttp.WSServerHandshakeError as e:
            if e.status == 404:
                raise JobNotFound("GET", url, e.status, e.message) from e
            raise DashboardUnavailable("GET", url, e.status, e.message, "log tail refused") from e
        except aiohttp.ClientError as e:
            raise DashboardUnavailable("GET", url, None, "", f"{type(e).__name__}: {e}") from e
        async with ws:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    yield str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    yield bytes(msg.data).decode(errors="replace")
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    raise DashboardUnavailable("GET", url, None, "", f"log tail broke: {ws.exception()}")

    # Runtime-env packages (working_dir) ---------------------------------------------------------------

    async def package_exists(self, protocol: str, name: str) -> bool:
        """GET /api/packages/<protocol>/<name>: 200 when the GCS has it (and pins it for a while)."""
        status, text, url = await self._call("GET", f"{PACKAGES_PATH}{quote(protocol)}/{quote(name)}")
        if status == 404 and not _apiserver_status(text):
            return False
        if status >= 300:
            raise DashboardError("GET", url, status, text)
        return True

    async def upload_package(self, protocol: str, name: str, data: bytes) -> None:
        """PUT /api/packages/<protocol>/<name> with the zip's bytes."""
        url = f"{self.base_url}{PACKAGES_PATH}{quote(protocol)}/{quote(name)}"
        headers = {k: v for k, v in self._headers(False).items() if k != "Accept"}
        headers["Content-Type"] = "application/octet-stream"
        try:
            async with self.session.put(
                url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=max(self.timeout, 300.0))
            ) as resp:
                text = await resp.text(errors="replace")
                if resp.status >= 300:
                    raise DashboardError("PUT", url, resp.status, text)
        except TimeoutError as e:
            raise DashboardUnavailable("PUT", url, None, "", "upload timed out") from e
        except aiohttp.ClientError as e:
            raise DashboardUnavailable("PUT", url, None, "", f"{type(e).__name__}: {e}") from e

    # Serve ---------------------------------------------------------------------------------------

    async def get_serve_applications(self) -> Obj:
        """GET /api/serve/applications/?api_type=declarative: Serve's ServeInstanceDetails."""
        status, text, url = await self._call(
            "GET", SERVE_APPLICATIONS_PATH, params={"api_type": "declarative"}
        )
        if status >= 300:
            raise DashboardError("GET", url, status, text)
        return dict(self._json("GET", url, status, text) or {})

    async def put_serve_applications(self, config: Mapping[str, Any]) -> None:
        """PUT /api/serve/applications/ with a ServeDeploySchema (declarative: absent apps are deleted)."""
        status, text, url = await self._call("PUT", SERVE_APPLICATIONS_PATH, body=dict(config))
        if status >= 300:
            raise DashboardError("PUT", url, status, text)

    async def delete_serve_applications(self) -> None:
        status, text, url = await self._call("DELETE", SERVE_APPLICATIONS_PATH)
        if status >= 300:
            raise DashboardError("DELETE", url, status, text)

    # State of Ray's nodes ---------------------------------------------------------------------------

    async def node_summary(self) -> list[Obj]:
        """GET /nodes?view=summary: per node, the raylet's view (`nodeId`, `instanceId` = the Pod name
        KubeRay gives RAY_CLOUD_INSTANCE_ID, `nodeManagerAddress`, `state`, `storeStats`, ...)."""
        status, text, url = await self._call("GET", NODES_PATH, params={"view": "summary"})
        if status >= 300:
            raise DashboardError("GET", url, status, text)
        body = self._json("GET", url, status, text) or {}
        rows = ((body.get("data") or {}).get("summary")) if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise DashboardError("GET", url, status, text[:500], "no data.summary in the answer")
        return [dict(r.get("raylet") or {}) for r in rows if isinstance(r, dict)]

    async def list_state(self, resource: str, filters: Sequence[tuple[str, str, str]] = ()) -> list[Obj]:
        """GET /api/v0/<resource> (tasks, actors, nodes, ...) with the state API's AND-ed filters
        (key, "=" or "!=", value). Raises when Ray answers with an error. A list Ray truncated (more
        than STATE_LIST_LIMIT rows) is returned as it is."""
        params: list[tuple[str, str]] = [("limit", str(STATE_LIST_LIMIT))]
        for key, predicate, value in filters:
            params += [("filter_keys", key), ("filter_predicates", predicate), ("filter_values", value)]
        path = STATE_PATH + resource + "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in params)
        status, text, url = await self._call("GET", path)
        if status >= 300:
            raise DashboardError("GET", url, status, text)
        body = self._json("GET", url, status, text) or {}
        if not isinstance(body, dict) or not body.get("result"):
            raise DashboardError("GET", url, status, text[:500], "the state API reported an error")
        data = (body.get("data") or {}).get("result") or {}
        rows = data.get("result")
        if not isinstance(rows, list):
            raise DashboardError("GET", url, status, text[:500], "no data.result.result in the answer")
        return [dict(r) for r in rows if isinstance(r, dict)]
