"""The node agent's kubelet API: what the API server and metrics-server call on a node.

HTTPS on the node's InternalIP, at the port its Node object advertises (`status.daemonEndpoints`), like a
kubelet started with `--authentication-token-webhook --authorization-mode=Webhook --client-ca-file`:

- callers authenticate by a client certificate from the plane's client CA (the API server's
  `--kubelet-client-certificate`) or by a bearer token, checked with a TokenReview (metrics-server's
  service-account token);
- each request is authorized by a SubjectAccessReview on `nodes/<subresource>` of this node, the mapping
  of pkg/kubelet/server/auth.go (`/metrics/*` -> metrics, `/stats/*` -> stats, `/logs/*` -> log, the rest
  -> proxy), answers cached as the kubelet caches them.

Endpoints: `/healthz`, `/pods`, `/containerLogs/<ns>/<pod>/<container>` (`kubectl logs` and its flags),
`/metrics/resource` (metrics-server; see stats.py), and `/exec` and `/portForward` over WebSocket
(streaming.py). Streaming over SPDY is not served: see docs/local-plane.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import aiohttp
from aiohttp import web

from rayop.base import pki
from rayop.base.types import Obj
from rayop.node import streaming
from rayop.node.logs import LogOptionError, LogOptions, LogReader
from rayop.node.stats import ContainerUsage, NodeUsage, render_resource_metrics
from rayop.runtime.client import ApiClient, ApiError

if TYPE_CHECKING:
    from rayop.node.pod import ContainerRun, PodWorker

log = logging.getLogger("rayop.node.kubelet")

# How long answers of the API server are trusted, as the kubelet's defaults
# (--authentication-token-webhook-cache-ttl, --authorization-webhook-cache-authorized-ttl/-unauthorized-ttl).
TOKEN_TTL = 120.0
ALLOWED_TTL = 300.0
DENIED_TTL = 30.0
FOLLOW_POLL = 0.2


@dataclass(frozen=True)
class Caller:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class KubeletHost(streaming.StreamHost, Protocol):
    """What the server needs from the node agent."""

    @property
    def node_name(self) -> str: ...

    @property
    def api(self) -> ApiClient: ...

    def pod_objects(self) -> list[Obj]: ...

    def resource_usage(self) -> tuple[NodeUsage | None, list[ContainerUsage]]: ...


# --- authorization attributes (pkg/kubelet/server/auth.go) ------------------------------------------

VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def request_attributes(method: str, path: str) -> tuple[str, list[str]]:
    """The verb and the `nodes` subresources a request is authorized for: allowed if any one is."""
    verb = VERBS.get(method, "")
    subs: list[str] = []
    # Fine-grained subresources (KubeletFineGrainedAuthz, on by default since 1.33) come first; a caller
    # with nodes/proxy may still call them.
    if _under(path, "/pods") or _under(path, "/runningpods"):
        subs.append("pods")
    elif _under(path, "/healthz"):
        subs.append("healthz")
    elif _under(path, "/configz"):
        subs.append("configz")
    if _under(path, "/stats"):
        subs.append("stats")
    elif _under(path, "/metrics"):
        subs.append("metrics")
    elif _under(path, "/logs"):
        subs.append("log")
    elif _under(path, "/checkpoint"):
        subs.append("checkpoint")
    else:
        subs.append("proxy")
    return verb, subs


def caller_from_peercert(cert: object) -> Caller | None:
    """The user a verified client certificate names: CN the user, each O a group (as the API server reads
    it)."""
    if not isinstance(cert, dict):
        return None
    cn, orgs = "", []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    return Caller(cn, groups=tuple(orgs)) if cn else None


# --- TLS ---------------------------------------------------------------------------------------------


@dataclass
class KubeletTLS:
    """Serving certificate and key files (None: a self-signed pair is made at start, so the API server
    must not verify it), and the CA whose client certificates are accepted (None: tokens only)."""

    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    sans: list[str] = field(default_factory=list)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        else:
            ca, ca_key = pki.make_ca("rayop-node-self-signed")
            cert, key = pki.make_leaf(
                ca, ca_key, self.sans[0] if self.sans else "rayop-node", sans=self.sans, server=True
            )
            pki.load_chain(ctx, pki.pem(cert) + pki.pem(ca), pki.key_pem(key))
        if self.client_ca_file:
            ctx.load_verify_locations(str(self.client_ca_file))
            # Optional: metrics-server and other in-cluster callers bring a token instead.
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx


# --- the server ----------------------------------------------------------------------------------------


class KubeletServer:
    def __init__(self, host: KubeletHost, tls: KubeletTLS, address: str, port: int) -> None:
        self.host = host
        self.tls = tls
        self.address = address
        self.port = port
        self._runner: web.AppRunner | None = None
        self._tokens: dict[str, tuple[float, Caller | None]] = {}
        self._decisions: dict[tuple[Caller, str, str], tuple[float, bool]] = {}
        self.app = web.Application(middlewares=[self._auth])
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/pods", self.pods)
        self.app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        self.app.router.add_get("/metrics/resource", self.metrics_resource)
        for verb in ("GET", "POST"):
            self.app.router.add_route(
                verb, "/exec/{namespace}/{pod}/{container}", streaming.exec_handler(host)
            )
            self.app.router.add_route(
                verb, "/exec/{namespace}/{pod}/{uid}/{container}", streaming.exec_handler(host)
            )
            self.app.router.add_route(
                verb, "/portForward/{namespace}/{pod}", streaming.port_forward_handler(host)
            )
            self.app.router.add_route(
                verb, "/portForward/{namespace}/{pod}/{uid}", streaming.port_forward_handler(host)
            )

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.address, self.port, ssl_context=self.tls.context(), reuse_address=True
        )
        await site.start()
        log.info("kubelet API on https://%s:%d", self.address, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- authentication and authorization --------------------------------------------------------------

    async def authenticate(self, request: web.Request) -> Caller | None:
        caller = caller_from_peercert(
            request.transport.get_extra_info("peercert") if request.transport else None
        )
        if caller is not None:
            return caller
        auth = request.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        token = auth[7:].strip()
        now = time.monotonic()
        hit = self._tokens.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        res = await self.host.api.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=review)
        st = res.get("status") or {}
        user = st.get("user") or {}
        found = None
        if st.get("authenticated") and user.get("username"):
            extra = tuple(sorted((k, tuple(v)) for k, v in (user.get("extra") or {}).items()))
            found = Caller(user["username"], user.get("uid", ""), tuple(user.get("groups") or ()), extra)
        if len(self._tokens) > 1000:
            self._tokens = {k: v for k, v in self._tokens.items() if v[0] > now}
        self._tokens[token] = (now + TOKEN_TTL, found)
        return found

    async def authorize(self, caller: Caller, verb: str, subresource: str) -> bool:
        key = (caller, verb, subresource)
        now = time.monotonic()
        hit = self._decisions.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        spec: Obj = {
            "user": caller.name,
            "groups": list(caller.groups),
            "resourceAttributes": {
                "verb": verb,
                "version": "v1",
                "resource": "nodes",
                "subresource": subresource,
                "name": self.host.node_name,
            },
        }
        if caller.uid:
            spec["uid"] = caller.uid
        if caller.extra:
            spec["extra"] = {k: list(v) for k, v in caller.extra}
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        res = await self.host.api.request(
            "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review
        )
        allowed = bool((res.get("status") or {}).get("allowed"))
        if len(self._decisions) > 1000:
            self._decisions = {k: v for k, v in self._decisions.items() if v[0] > now}
        self._decisions[key] = (now + (ALLOWED_TTL if allowed else DENIED_TTL), allowed)
        return allowed

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            caller = await self.authenticate(request)
            if caller is None:
                return web.Response(status=401, text="Unauthorized")
            verb, subs = request_attributes(request.method, request.path)
            for sub in subs:
                if await self.authorize(caller, verb, sub):
                    return await handler(request)
        except (ApiError, aiohttp.ClientError, TimeoutError) as e:
            log.warning("kubelet API: cannot check %s %s: %s", request.method, request.path, e)
            return web.Response(
                status=500, text=f"Internal Server Error: authentication or authorization failed: {e}"
            )
        text = f"Forbidden (user={caller.name}, verb={verb}, resource=nodes, subresource(s)={subs})"
        return web.Response(status=403, text=text)

    # --- endpoints --------------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def pods(self, request: web.Request) -> web.StreamResponse:
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self.host.pod_objects()}
        return web.json_response(body)

    async def metrics_resource(self, request: web.Request) -> web.StreamResponse:
        node, containers = await asyncio.to_thread(self.host.resource_usage)
        body = render_resource_metrics(node, containers)
        return web.Response(
            body=body, content_type="text/plain", charset="utf-8", headers={"X-Version": "0.0.4"}
        )

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        ns, name, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        try:
            opts = log_options(request.query)
        except LogOptionError as e:
            return web.Response(status=422, text=f"Invalid request: {e}")
        w = self.host.pod_worker(ns, name)
        if w is None:
            return web.Response(status=404, text=f'pod "{name}" does not exist')
        try:
            w.container_spec(container)
        except KeyError:
            return web.Response(status=404, text=f'container "{container}" not found in pod "{name}"')
        found = log_attempt(w, container, opts.previous)
        if isinstance(found, str):
            return web.Response(status=400, text=found)
        run, attempt = found
        reader = LogReader(w.dir / "containers" / container / str(attempt) / "log", opts)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        while True:
            chunk = await asyncio.to_thread(reader.read)
            if chunk:
                await resp.write(chunk)
                continue
            if reader.exhausted or not opts.follow or opts.previous:
                break
            # Like the kubelet: following ends once this run of the container has exited and its last
            # lines are out. A client that goes away ends it too (the write fails).
            if not (run.running and run.attempt == attempt) and reader.at_end():
                break
            await asyncio.sleep(FOLLOW_POLL)
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp


def log_options(query: Mapping[str, str]) -> LogOptions:
    """PodLogOptions from the kubelet's query string (`tail` is the old name of `tailLines`)."""

    def flag(name: str) -> bool:
        return str(query.get(name, "false")).lower() in ("true", "1")

    def num(name: str) -> int | None:
        v = query.get(name)
        if v is None or v == "":
            return None
        try:
            return int(str(v))
        except ValueError:
            raise LogOptionError(f"{name}: must be an integer, got {v!r}") from None

    tail = query.get("tailLines", query.get("tail"))
    since_time = None
    if query.get("sinceTime"):
        try:
            since_time = dt.datetime.fromisoformat(str(query["sinceTime"]).replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise LogOptionError(f"sinceTime: not an RFC 3339 time: {query['sinceTime']!r}") from None
    return LogOptions(
        follow=flag("follow"),
        previous=flag("previous"),
        timestamps=flag("timestamps"),
        tail_lines=None
        if tail in (None, "", "all", "-1")
        else num("tailLines" if "tailLines" in query else "tail"),
        since_seconds=num("sinceSeconds"),
        since_time=since_time,
        limit_bytes=num("limitBytes"),
        stream=str(query.get("stream", "All")),
    )


def log_attempt(w: PodWorker, container: str, previous: bool) -> tuple[ContainerRun, int] | str:
    """Which run of the container the logs come from, or why there is none (the kubelet's messages,
    pkg/kubelet/kubelet_pods.go validateContainerLogStatus)."""
    pod = w.key[1]
    run = w.state.containers.get(container)
    if run is None or run.attempt < 0:
        reason = run.waiting_reason if run is not None else "ContainerCreating"
        return f'container "{container}" in pod "{pod}" is waiting to start: {reason or "ContainerCreating"}'
    if not previous:
        return run, run.attempt
    # The previous run is the status's lastState: while a container waits to restart, that is the run
    # that just ended; otherwise the one before the current (or final) run.
    waiting = not run.running and run.exit is not None and not w.terminal_for(run)
    attempt = run.attempt if waiting and run.waiting_reason else run.attempt - 1
    if attempt < 0:
        return f'previous terminated container "{container}" in pod "{pod}" not found'
    return run, attempt
