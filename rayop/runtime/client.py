"""A small async Kubernetes REST client that speaks plain dicts.

Why not a generated client: round-tripping a user's pod template through typed models drops fields the
model does not know, and deserialising models costs more CPU than the rest of the operator.
The API server already speaks JSON; we keep it as JSON.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson

# The `X as X` imports below are re-exports: callers take the error type, the built-in kinds and the
# configuration loaders from the client, which held them before rayop.runtime.errors, .kinds and
# .kubeconfig did.
from rayop.base.resource import Resource as Resource
from rayop.base.types import Obj
from rayop.runtime import metrics
from rayop.runtime.errors import ApiError as ApiError
from rayop.runtime.errors import api_error
from rayop.runtime.kinds import CONFIGMAPS as CONFIGMAPS
from rayop.runtime.kinds import CORE_EVENTS as CORE_EVENTS
from rayop.runtime.kinds import CRDS as CRDS
from rayop.runtime.kinds import ENDPOINTS as ENDPOINTS
from rayop.runtime.kinds import ENDPOINTSLICES as ENDPOINTSLICES
from rayop.runtime.kinds import EVENTS as EVENTS
from rayop.runtime.kinds import GATEWAYCLASSES as GATEWAYCLASSES
from rayop.runtime.kinds import GATEWAYS as GATEWAYS
from rayop.runtime.kinds import HTTPROUTES as HTTPROUTES
from rayop.runtime.kinds import INGRESSES as INGRESSES
from rayop.runtime.kinds import JOBS as JOBS
from rayop.runtime.kinds import LEASES as LEASES
from rayop.runtime.kinds import NAMESPACES as NAMESPACES
from rayop.runtime.kinds import NODES as NODES
from rayop.runtime.kinds import PODS as PODS
from rayop.runtime.kinds import PVCS as PVCS
from rayop.runtime.kinds import ROLEBINDINGS as ROLEBINDINGS
from rayop.runtime.kinds import ROLES as ROLES
from rayop.runtime.kinds import SECRETS as SECRETS
from rayop.runtime.kinds import SERVICEACCOUNTS as SERVICEACCOUNTS
from rayop.runtime.kinds import SERVICES as SERVICES
from rayop.runtime.kinds import VALIDATING_WEBHOOKS as VALIDATING_WEBHOOKS
from rayop.runtime.kubeconfig import DEFAULT_MAX_IN_FLIGHT as DEFAULT_MAX_IN_FLIGHT
from rayop.runtime.kubeconfig import SA_DIR as SA_DIR
from rayop.runtime.kubeconfig import ClientConfig as ClientConfig
from rayop.runtime.kubeconfig import in_cluster_config as in_cluster_config
from rayop.runtime.kubeconfig import load_config as load_config
from rayop.runtime.kubeconfig import load_kubeconfig as load_kubeconfig
from rayop.runtime.ratelimit import MAX_RETRIES, TokenBucket, retry_delay

log = logging.getLogger("rayop.runtime.client")


# The API server limits an object to ~1.5 MiB in etcd; JSON of the largest object plus framing fits.
MAX_WATCH_EVENT_BYTES = 16 * 1024 * 1024

# At or below this many requests in flight the client counts as calm (see ApiClient.wait_calm).
CALM_IN_FLIGHT = 8


# asyncio gives every TLS connection a 256 KiB read buffer (asyncio.sslproto.SSLProtocol.max_size, a class
# attribute read when a connection is made). With one connection per request in flight, those buffers, not
# the data, set most of an operator's memory during a burst. 64 KiB still takes four full TLS records per
# read.
if getattr(asyncio.sslproto.SSLProtocol, "max_size", 0) > 64 * 1024:
    asyncio.sslproto.SSLProtocol.max_size = 64 * 1024


class ApiClient:
    """Async REST calls against one API server. Objects in, objects out, as plain dicts."""

    def __init__(self, config: ClientConfig, user_agent: str = "rayop", timeout: float = 30.0) -> None:
        self.config = config
        self.user_agent = user_agent
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._ssl = config.ssl_context()
        self._exec_cert: bytes | None = None  # the exec plugin's client certificate in self._ssl
        self._retired: list[aiohttp.ClientSession] = []
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

    @property
    def busy(self) -> bool:
        """More than CALM_IN_FLIGHT requests are in flight (a burst of creates)."""
        return not self._calm.is_set()

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
        for old in self._retired:
            await old.close()
        self._retired.clear()

    async def refresh_credentials(self) -> None:
        """Run the kubeconfig's exec credential plugin when its credential is missing or expired. A new
        client certificate needs a new TLS context: later requests get a new session; requests in flight
        finish on the old one, closed with the client."""
        plugin = self.config.exec_plugin
        if plugin is None or not await plugin.refresh():
            return
        cred = plugin.current
        if cred is not None and cred.cert_data and cred.cert_data != self._exec_cert:
            self._exec_cert = cred.cert_data
            self._ssl = self.config.ssl_context()
            if self._session is not None:
                self._retired.append(self._session)
                self._session = None

    async def auth_headers(self) -> dict[str, str]:
        """Headers for requests made outside `request` (log streams, upgrades), credentials fresh."""
        await self.refresh_credentials()
        return self._headers()

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
        plugin = self.config.exec_plugin
        if plugin is None:
            return await self._retrying(method, url, data, content_type, timeout)
        await self.refresh_credentials()
        used = plugin.current
        try:
            return await self._retrying(method, url, data, content_type, timeout)
        except ApiError as e:
            if e.status != 401:
                raise
        # Rejected (revoked, or expired without saying so): the plugin runs again, the request once more.
        plugin.invalidate(used)
        await self.refresh_credentials()
        return await self._retrying(method, url, data, content_type, timeout)

    async def _retrying(
        self, method: str, url: str, data: bytes | str | None, content_type: str, timeout: float | None
    ) -> Any:
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
                        raise api_error(resp, raw, method, url)
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
        await self.refresh_credentials()
        used = self.config.exec_plugin.current if self.config.exec_plugin else None
        async with self.session.get(
            url,
            headers=self._headers(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=timeout_seconds + 30),
        ) as resp:
            metrics.REST_REQUESTS.labels(str(resp.status), "WATCH", self._host).inc()
            if resp.status >= 400:
                if resp.status == 401 and self.config.exec_plugin is not None:
                    self.config.exec_plugin.invalidate(used)  # the caller's next watch runs the plugin
                raise api_error(resp, await resp.read(), "WATCH", url)
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
