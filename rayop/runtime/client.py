"""A small async Kubernetes REST client that speaks plain dicts.

Why not a generated client: round-tripping a user's pod template through typed models drops fields the
model does not know, and deserialising models costs more CPU than the rest of the operator.
The API server already speaks JSON; we keep it as JSON.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import base64
import contextlib
import functools
import json
import logging
import os
import random
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson
import yaml

from rayop.base.pki import load_chain
from rayop.base.resource import Resource as Resource  # re-exported: callers of the client name kinds with it
from rayop.base.types import Obj
from rayop.runtime import metrics

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

log = logging.getLogger("rayop.runtime.client")


# The API server limits an object to ~1.5 MiB in etcd; JSON of the largest object plus framing fits.
MAX_WATCH_EVENT_BYTES = 16 * 1024 * 1024

# At or below this many requests in flight the client counts as calm (see ApiClient.wait_calm).
CALM_IN_FLIGHT = 8

# Requests (not watches) in flight at once. This, not a client-side token bucket, bounds a burst such as a
# 1,000-Pod scale-up: the API server's Priority and Fairness decides how fast it takes them, and more
# requests in flight than it serves at once would only queue there (bench/kuberay_peer.py: 64 creates
# Pods as fast as 200 on this machine, and each TLS connection costs memory in both processes).
DEFAULT_MAX_IN_FLIGHT = 64

# 429 (Too Many Requests) and 5xx answers with Retry-After are retried after the wait the server asks for,
# up to this many times, as client-go does (rest.Request's maxRetries 10, checkWait).
MAX_RETRIES = 10
RETRY_BACKOFF_BASE = 0.5  # seconds; doubles per retry of one request, at least the server's Retry-After
RETRY_BACKOFF_CAP = 32.0

# asyncio gives every TLS connection a 256 KiB read buffer (asyncio.sslproto.SSLProtocol.max_size, a class
# attribute read when a connection is made). With one connection per request in flight, those buffers, not
# the data, set most of an operator's memory during a burst. 64 KiB still takes four full TLS records per
# read.
if getattr(asyncio.sslproto.SSLProtocol, "max_size", 0) > 64 * 1024:
    asyncio.sslproto.SSLProtocol.max_size = 64 * 1024


def _api_error(resp: aiohttp.ClientResponse, raw: bytes, method: str, url: str) -> ApiError:
    try:
        err = json.loads(raw)
    except ValueError:
        err = {"message": raw.decode(errors="replace")}
    if not isinstance(err, dict):
        err = {"message": str(err)}
    retry_after = resp.headers.get("Retry-After")
    if retry_after and retry_after.isdigit():
        # Keep the header's hint where a Status body carries it, so callers read one place.
        details = err.setdefault("details", {})
        if isinstance(details, dict):
            details.setdefault("retryAfterSeconds", int(retry_after))
    return ApiError(resp.status, err, method, url)


class ApiError(Exception):
    """An error answer from the API server, with its HTTP status and Status body."""

    def __init__(self, status: int, body: Any, method: str = "", url: str = "") -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        self.reason = str(self.body.get("reason", ""))
        self.message = str(self.body.get("message", body))
        self.method = method
        self.url = url
        super().__init__(f"{method} {url}: {status} {self.reason}: {self.message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def retryable(self) -> bool:
        """The server asked to be asked again later: 429 (API Priority and Fairness, max-in-flight), or a 5xx
        with Retry-After (client-go's checkWait)."""
        return self.status == 429 or (self.status >= 500 and self.retry_after > 0)

    @property
    def retry_after(self) -> float:
        """Seconds the server asked us to wait (429/503 Retry-After or Status details), else 0."""
        details = self.body.get("details") or {}
        try:
            return float(details.get("retryAfterSeconds") or 0) if isinstance(details, dict) else 0.0
        except (TypeError, ValueError):
            return 0.0


# The kinds the runtime and its users touch. Ray kinds are declared by their owners (rayop.api).
PODS = Resource("", "v1", "pods", kind="Pod")
SERVICES = Resource("", "v1", "services", kind="Service")
SECRETS = Resource("", "v1", "secrets", kind="Secret")
CONFIGMAPS = Resource("", "v1", "configmaps", kind="ConfigMap")
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", kind="ServiceAccount")
PVCS = Resource("", "v1", "persistentvolumeclaims", kind="PersistentVolumeClaim")
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False, kind="Namespace")
NODES = Resource("", "v1", "nodes", namespaced=False, kind="Node")
ENDPOINTS = Resource("", "v1", "endpoints", kind="Endpoints")
CORE_EVENTS = Resource("", "v1", "events", kind="Event")
EVENTS = Resource("events.k8s.io", "v1", "events", kind="Event")
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", kind="EndpointSlice")
JOBS = Resource("batch", "v1", "jobs", kind="Job")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", kind="Role")
ROLEBINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", kind="RoleBinding")
INGRESSES = Resource("networking.k8s.io", "v1", "ingresses", kind="Ingress")
LEASES = Resource("coordination.k8s.io", "v1", "leases", kind="Lease")
CRDS = Resource(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    namespaced=False,
    kind="CustomResourceDefinition",
)
VALIDATING_WEBHOOKS = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingwebhookconfigurations",
    namespaced=False,
    kind="ValidatingWebhookConfiguration",
)


@dataclass
class ClientConfig:
    """Where and how to reach the API server."""

    server: str
    ca_data: bytes | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    token: str | None = None
    token_file: str | None = None
    insecure: bool = False
    namespace: str = "default"
    # Client-side token bucket: off when qps <= 0 (the default, as in controller-runtime since v0.21; the
    # API server's Priority and Fairness protects it, and 429s are waited out, see ApiClient.request).
    qps: float = 0.0
    burst: int = 200
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    extra: dict[str, Any] = field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        ctx = ssl.create_default_context()
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_data:
            ctx = ssl.create_default_context(cadata=self.ca_data.decode())
        if self.cert_data and self.key_data:
            load_chain(ctx, self.cert_data, self.key_data)
        return ctx

    def bearer(self) -> str | None:
        if self.token_file:
            try:
                # Projected tokens rotate; read each time so a long-lived operator keeps working.
                return Path(self.token_file).read_text().strip()
            except OSError:
                return self.token
        return self.token


def _read_data(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        p = Path(entry[key])
        if not p.is_absolute():
            p = base / p
        return p.read_bytes()
    return None


def load_kubeconfig(path: str | os.PathLike[str] | None = None, context: str | None = None) -> ClientConfig:
    """Read a kubeconfig file (client certificates, token or tokenFile; exec plugins are not supported)."""
    if path is None:
        path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
    p = Path(path)
    cfg = yaml.safe_load(p.read_text())
    ctx_name = context or cfg.get("current-context")
    ctxs = {c["name"]: c["context"] for c in cfg.get("contexts", [])}
    if ctx_name not in ctxs:
        raise ValueError(f"kubeconfig {p}: context {ctx_name!r} not found")
    ctx = ctxs[ctx_name]
    cluster = {c["name"]: c["cluster"] for c in cfg.get("clusters", [])}[ctx["cluster"]]
    user = {u["name"]: u.get("user") or {} for u in cfg.get("users", [])}.get(ctx.get("user", ""), {})
    if user.get("exec") or user.get("auth-provider"):
        raise ValueError(f"kubeconfig {p}: exec and auth-provider credentials are not supported by rayop")
    base = p.parent
    return ClientConfig(
        server=cluster["server"].rstrip("/"),
        ca_data=_read_data(cluster, "certificate-authority", base),
        cert_data=_read_data(user, "client-certificate", base),
        key_data=_read_data(user, "client-key", base),
        token=user.get("token"),
        token_file=user.get("tokenFile"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        namespace=ctx.get("namespace", "default"),
    )


def in_cluster_config() -> ClientConfig:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    ns_file = SA_DIR / "namespace"
    return ClientConfig(
        server=f"https://{host}:{port}",
        ca_data=(SA_DIR / "ca.crt").read_bytes(),
        token_file=str(SA_DIR / "token"),
        namespace=ns_file.read_text().strip() if ns_file.exists() else "default",
    )


def load_config(kubeconfig: str | None = None) -> ClientConfig:
    """Kubeconfig if given or found, else the in-cluster service account."""
    if kubeconfig or os.environ.get("KUBECONFIG") or (Path.home() / ".kube" / "config").exists():
        return load_kubeconfig(kubeconfig)
    return in_cluster_config()


def retry_delay(retry_after: float, attempt: int) -> float:
    """How long to wait before sending a request again: what the server asked for, at least a backoff
    that doubles per attempt, plus up to 20% jitter so that many requests turned away together do not
    come back together."""
    backoff = min(RETRY_BACKOFF_CAP, RETRY_BACKOFF_BASE * 2**attempt)
    return float(max(retry_after, backoff) * random.uniform(1.0, 1.2))


class TokenBucket:
    """Client-side rate limit (qps/burst), like client-go's flowcontrol. Off unless qps > 0: an operator may
    set one (`--qps`, `--burst`) to cap what it sends to a shared API server."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.last = time.monotonic()
        self.lock = asyncio.Lock()
        self.waited_seconds = 0.0

    async def take(self) -> None:
        if self.qps <= 0:
            return
        async with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.qps)
            self.last = now
            if self.tokens < 1:
                wait = (1 - self.tokens) / self.qps
                self.waited_seconds += wait
                await asyncio.sleep(wait)
                self.tokens = 0.0
                self.last = time.monotonic()
            else:
                self.tokens -= 1


class ApiClient:
    """Async REST calls against one API server. Objects in, objects out, as plain dicts."""

    def __init__(self, config: ClientConfig, user_agent: str = "rayop", timeout: float = 30.0) -> None:
        self.config = config
        self.user_agent = user_agent
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._ssl = config.ssl_context()
        self.bucket = TokenBucket(config.qps, config.burst)
        self.request_count = 0
        self.retries = 0  # requests sent again because the server said so (429, 5xx with Retry-After)
        self._host = urlsplit(config.server).netloc
        self.in_flight = 0  # requests (not watches) awaiting an answer
        self._slots = asyncio.Semaphore(max(1, config.max_in_flight))
        self._calm = asyncio.Event()  # set while in_flight <= CALM_IN_FLIGHT; binds to a loop only on wait
        self._calm.set()

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def _timeouts(total: float) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=total)

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No connection limit here: requests are bounded by max_in_flight, and each watch holds a
            # connection for its whole life (a limit shared with them could starve one or the other).
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=0)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def wait_calm(self, timeout: float) -> None:
        """Wait until at most CALM_IN_FLIGHT requests are in flight, or `timeout` seconds.

        For writes that can wait, such as Events: during a burst of Pod creates they would only take
        API server time from the work they describe."""
        if timeout <= 0 or self._calm.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._calm.wait(), timeout)

    def _started(self) -> None:
        self.in_flight += 1
        if self.in_flight > CALM_IN_FLIGHT:
            self._calm.clear()

    def _finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= CALM_IN_FLIGHT:
            self._calm.set()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        h = {"Accept": "application/json", "User-Agent": self.user_agent}
        tok = self.config.bearer()
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        if content_type:
            h["Content-Type"] = content_type
        return h

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        u = self.config.server + path
        if params:
            clean = {
                k: ("true" if v is True else "false" if v is False else v)
                for k, v in params.items()
                if v is not None
            }
            if clean:
                u += "?" + urlencode(clean)
        return u

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        """One API call. A 429, or a 5xx with Retry-After, is sent again after the wait the server asked
        for (and at least an exponential backoff), up to MAX_RETRIES times: such an answer means "later",
        so callers see neither the error nor a retry at once."""
        url = self.url(path, params)
        # orjson: encoding pods and decoding the API server's answers is most of the operator's CPU at scale.
        data = None if body is None else (body if isinstance(body, (bytes, str)) else orjson.dumps(body))
        attempt = 0
        while True:
            try:
                return await self._send(method, url, data, content_type, timeout)
            except ApiError as e:
                if not e.retryable or attempt >= MAX_RETRIES:
                    raise
                delay = retry_delay(e.retry_after, attempt)
                attempt += 1
                self.retries += 1
                metrics.REST_RETRIES.labels(str(e.status), method, self._host).inc()
                log.debug("%s %s: %s; retry %d in %.2fs", method, url, e.status, attempt, delay)
                await asyncio.sleep(delay)

    async def _send(
        self, method: str, url: str, data: bytes | str | None, content_type: str, timeout: float | None
    ) -> Any:
        t0 = time.monotonic()
        await self.bucket.take()
        async with self._slots:
            t1 = time.monotonic()
            metrics.REST_RATE_LIMITER.labels(method, self._host).observe(t1 - t0)
            self.request_count += 1
            code = "<error>"
            self._started()
            try:
                async with self.session.request(
                    method,
                    url,
                    data=data,
                    headers=self._headers(content_type if data is not None else None),
                    timeout=self._timeouts(timeout or self.timeout),
                ) as resp:
                    code = str(resp.status)
                    raw = await resp.read()
                    if resp.status >= 400:
                        raise _api_error(resp, raw, method, url)
                    ctype = resp.headers.get("Content-Type", "")
            finally:
                self._finished()
                metrics.REST_LATENCY.labels(method, self._host).observe(time.monotonic() - t1)
                metrics.REST_REQUESTS.labels(code, method, self._host).inc()
        if not raw:
            return {}
        if "json" in ctype:
            return orjson.loads(raw)
        return raw.decode(errors="replace")

    # Typed-by-resource helpers -------------------------------------------------------------------

    async def get(
        self, res: Resource, name: str, namespace: str | None = None, sub: str | None = None
    ) -> Obj:
        result: Obj = await self.request("GET", res.path(namespace, name, sub))
        return result

    async def get_or_none(self, res: Resource, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return await self.get(res, name, namespace)
        except ApiError as e:
            if e.not_found:
                return None
            raise

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        limit: int | None = None,
    ) -> Obj:
        """List all pages; the result has `items` and the list's `metadata.resourceVersion`."""
        items: list[Obj] = []
        async for page in self.list_pages(
            res,
            namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            resource_version=resource_version,
            limit=limit,
        ):
            items.extend(page.get("items") or [])
            last = page
        last["items"] = items
        return last

    async def list_pages(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[Obj]:
        """Yield the list page by page (so a large list never sits in memory twice); the last page
        carries the list's `metadata.resourceVersion`. An expired continue token raises ApiError(410)."""
        cont: str | None = None
        while True:
            page: Obj = await self.request(
                "GET",
                res.path(namespace),
                params={
                    "labelSelector": label_selector,
                    "fieldSelector": field_selector,
                    "resourceVersion": resource_version if not cont else None,
                    "limit": limit,
                    "continue": cont,
                },
                timeout=120,
            )
            for it in page.get("items") or []:
                # Lists omit kind/apiVersion per item; restore them so items look like GETs.
                it.setdefault("kind", res.kind)
                it.setdefault("apiVersion", res.api_version)
            cont = (page.get("metadata") or {}).get("continue")
            yield page
            if not cont:
                return

    async def create(self, res: Resource, obj: Obj, namespace: str | None = None, **params: Any) -> Obj:
        ns = namespace or obj.get("metadata", {}).get("namespace")
        result: Obj = await self.request("POST", res.path(ns), body=obj, params=params or None)
        return result

    async def replace(self, res: Resource, obj: Obj, sub: str | None = None) -> Obj:
        md = obj["metadata"]
        result: Obj = await self.request("PUT", res.path(md.get("namespace"), md["name"], sub), body=obj)
        return result

    async def replace_status(self, res: Resource, obj: Obj) -> Obj:
        return await self.replace(res, obj, sub="status")

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
        sub: str | None = None,
        field_manager: str | None = None,
        force: bool | None = None,
    ) -> Obj:
        ctype = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "apply": "application/apply-patch+yaml",
        }[patch_type]
        params = {"fieldManager": field_manager, "force": force}
        result: Obj = await self.request(
            "PATCH", res.path(namespace, name, sub), body=patch, content_type=ctype, params=params
        )
        return result

    async def apply(self, res: Resource, obj: Obj, field_manager: str = "rayop", force: bool = True) -> Obj:
        md = obj["metadata"]
        return await self.patch(
            res,
            md["name"],
            obj,
            md.get("namespace"),
            patch_type="apply",
            field_manager=field_manager,
            force=force,
        )

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str | None = None,
        grace_period: int | None = None,
        preconditions: Obj | None = None,
        ignore_not_found: bool = False,
    ) -> Obj | None:
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation:
            body["propagationPolicy"] = propagation
        if grace_period is not None:
            body["gracePeriodSeconds"] = grace_period
        if preconditions:
            body["preconditions"] = preconditions
        try:
            result: Obj = await self.request("DELETE", res.path(namespace, name), body=body)
            return result
        except ApiError as e:
            if ignore_not_found and e.not_found:
                return None
            raise

    async def delete_collection(
        self, res: Resource, namespace: str, *, label_selector: str, propagation: str | None = None
    ) -> Obj:
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation:
            body["propagationPolicy"] = propagation
        result: Obj = await self.request(
            "DELETE", res.path(namespace), params={"labelSelector": label_selector}, body=body
        )
        return result

    async def watch(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        bookmarks: bool = True,
    ) -> AsyncIterator[Obj]:
        """Yield raw watch events ({"type", "object"}) until the server closes the stream.

        A 410 arrives either as an HTTP error or as an ERROR event; both surface as ApiError(410)
        so callers re-list.
        """
        t0 = time.monotonic()
        await self.bucket.take()
        metrics.REST_RATE_LIMITER.labels("WATCH", self._host).observe(time.monotonic() - t0)
        params = {
            "watch": True,
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "timeoutSeconds": timeout_seconds,
            "allowWatchBookmarks": bookmarks,
        }
        url = self.url(res.path(namespace), params)
        async with self.session.get(
            url,
            headers=self._headers(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=timeout_seconds + 30),
        ) as resp:
            metrics.REST_REQUESTS.labels(str(resp.status), "WATCH", self._host).inc()
            if resp.status >= 400:
                raise _api_error(resp, await resp.read(), "WATCH", url)
            while True:
                # Not `async for line in resp.content`: aiohttp caps such lines at 128 KiB, and one
                # event carries a whole object (a RayCluster with big pod templates can exceed that).
                line = await resp.content.readuntil(b"\n", max_size=MAX_WATCH_EVENT_BYTES)
                if not line:
                    break
                if not line.strip():
                    continue
                ev = orjson.loads(line)
                if ev.get("type") == "ERROR":
                    st = ev.get("object") or {}
                    raise ApiError(int(st.get("code") or 500), st, "WATCH", url)
                yield ev

    async def version(self) -> Obj:
        result: Obj = await self.request("GET", "/version")
        return result
