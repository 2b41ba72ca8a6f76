"""The view's HTTP server: pages, their live fragments with ETags, static files, sign-in.

Every page is served whole (it works without JavaScript) and, with `?fragment=1`, as just its `<main>` for
the browser script's polls; both carry a weak ETag from the view's counters, and a poll with a matching
`If-None-Match` gets 304 without any rendering. Nothing here writes to the cluster: the only POSTs are
sign-in and sign-out, which set or clear a cookie.

Errors never show a stack trace: an object that is gone (or that the caller may not read) is a 404 page
that says so, anything unexpected is a 500 page that points at the operator's log.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from rayop.api.kinds import RAYCLUSTERS, RAYJOBS, RAYSERVICES
from rayop.base.resource import Resource
from rayop.base.types import Obj
from rayop.runtime.client import CORE_EVENTS, PODS, SERVICES
from rayop.ui import render as R
from rayop.ui.auth import AllowAll, Authorizer, Check, TokenReviewer, User, bearer_token
from rayop.ui.view import PageAccess, View

log = logging.getLogger("rayop.ui")

COOKIE = "rayop-ui-token"
COOKIE_MAX_AGE = 8 * 3600
_STATIC = {
    "app.css": "text/css",
    "app.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
    "vendor/uPlot.iife.min.js": "text/javascript",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 0
    cert_dir: str = ""
    auth: bool = False
    poll_seconds: float = 2.0


class StaticFiles:
    """The packaged assets, read once, served with a content hash in their URL and cached for good."""

    def __init__(self) -> None:
        root = resources.files("rayop.ui") / "static"
        self.files: dict[str, tuple[bytes, str]] = {}
        self.versions: dict[str, str] = {}
        for name, ctype in _STATIC.items():
            data = (root / name).read_bytes()
            self.files[name] = (data, ctype)
            self.versions[name] = hashlib.sha256(data).hexdigest()[:12]

    def url(self, name: str) -> str:
        return f"/static/{name}?v={self.versions[name]}"

    def assets(self) -> R.Assets:
        return R.Assets(
            self.url("app.css"),
            self.url("app.js"),
            self.url("vendor/uPlot.min.css"),
            self.url("vendor/uPlot.iife.min.js"),
        )


class UiServer:
    """See the module docstring."""

    def __init__(
        self,
        view: View,
        options: ServerOptions,
        *,
        reviewer: TokenReviewer | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        if options.auth and reviewer is None:
            raise ValueError("authentication needs a TokenReviewer")
        if not options.auth and not is_loopback(options.host):
            raise ValueError(
                f"refusing to serve the web view on {options.host} without authentication: "
                "bind it to a loopback address, or turn authentication on"
            )
        self.view = view
        self.o = options
        self.reviewer = reviewer
        self.authz: Authorizer = authorizer or AllowAll()
        self.static = StaticFiles()
        self.assets = self.static.assets()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self.app = self._make_app()

    # -- plumbing ------------------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._headers], client_max_size=64 * 1024)
        r = app.router
        r.add_get("/", self.overview)
        r.add_get("/clusters/{ns}/{name}", self.cluster)
        r.add_get("/jobs/{ns}/{name}", self.job)
        r.add_get("/services/{ns}/{name}", self.service)
        r.add_get("/static/{path:.+}", self.static_file)
        r.add_get("/healthz", self.healthz)
        r.add_get("/login", self.login_form)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        return app

    @property
    def tls(self) -> bool:
        return bool(self.o.cert_dir)

    @property
    def url(self) -> str:
        host = self.o.host if ":" not in self.o.host else f"[{self.o.host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    async def start(self) -> int:
        ctx: ssl.SSLContext | None = None
        if self.o.cert_dir:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            d = Path(self.o.cert_dir)
            ctx.load_cert_chain(d / "tls.crt", d / "tls.key")
        elif self.o.auth:
            log.warning(
                "the web view asks for bearer tokens over plain HTTP: put TLS in front of it (--ui-cert-dir)"
            )
        # aiohttp waits up to 60 s for in-flight requests on shutdown; a read-only view has nothing to
        # finish, so a slow page request must not hold up the process's SIGTERM.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.o.host, self.o.port, ssl_context=ctx)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.o.port
        log.info("web view serving", extra={"url": self.url, "auth": self.o.auth})
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        resp.headers.setdefault("Content-Security-Policy", _CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status in (404, 405) and not (e.text or "").startswith("<"):
                return self._html(
                    request,
                    "Not found",
                    R.error_main("Not found", "There is no page at this address."),
                    status=e.status,
                )
            raise
        except Exception:
            log.exception("web view: %s %s failed", request.method, request.path)
            main = R.error_main(
                "Something went wrong",
                "The view could not build this page. The operator's log has the details; the page will try again.",
            )
            return self._html(request, "Error", main, status=500)

    def _fragment(self, request: web.Request) -> bool:
        return request.query.get("fragment") == "1"

    def _html(
        self,
        request: web.Request,
        title: str,
        main: R.Markup,
        *,
        status: int = 200,
        etag: str = "",
        user: str = "",
        poll: bool = True,
    ) -> web.Response:
        body = (
            main
            if self._fragment(request)
            else R.page(title, main, self.assets, user=user, auth=self.o.auth, poll=poll, etag=etag)
        )
        resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
        resp.headers["Cache-Control"] = "no-cache, private"
        resp.headers["Vary"] = "Cookie, Authorization"
        if etag:
            resp.headers["ETag"] = etag
        return resp

    async def _user(self, request: web.Request) -> User | None:
        """The caller, or None without authentication. Raises a redirect to sign-in (pages) or 401 (polls)."""
        if not self.o.auth:
            return None
        assert self.reviewer is not None
        token = bearer_token(request.headers, request.cookies, COOKIE)
        user = await self.reviewer.review(token) if token else None
        if user is not None:
            return user
        if self._fragment(request) or "Authorization" in request.headers:
            raise web.HTTPUnauthorized(
                text="sign in again", headers={"WWW-Authenticate": 'Bearer realm="rayop"'}
            )
        raise web.HTTPSeeOther("/login")

    def _not_modified(self, request: web.Request, etag: str) -> web.Response | None:
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag, "Cache-Control": "no-cache, private"})
        return None

    # -- pages ---------------------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        name = user.name if user else ""
        etag = self.view.etag("overview", name)
        if (nm := self._not_modified(request, etag)) is not None:
            return nm
        c = self.view.caches
        all_clusters, all_jobs, all_services = c.clusters.list(), c.jobs.list(), c.rayservices.list()
        clusters = await self.authz.visible(user, RAYCLUSTERS, all_clusters)
        jobs = await self.authz.visible(user, RAYJOBS, all_jobs)
        services = await self.authz.visible(user, RAYSERVICES, all_services)
        hidden = (
            len(all_clusters) + len(all_jobs) + len(all_services) - len(clusters) - len(jobs) - len(services)
        )
        main = self.view.overview(clusters, jobs, services, hidden)
        return self._html(request, "Overview", main, etag=etag, user=name)

    async def _access(self, user: User | None, ns: str) -> PageAccess:
        if user is None:
            return PageAccess()
        return PageAccess(
            pods=await self.authz.allowed(user, Check.of("list", PODS, ns)),
            services=await self.authz.allowed(user, Check.of("list", SERVICES, ns)),
            events=await self.authz.allowed(user, Check.of("list", CORE_EVENTS, ns)),
            proxy=await self.authz.allowed(user, Check.of("get", SERVICES, ns, subresource="proxy")),
        )

    async def _object_page(
        self,
        request: web.Request,
        page: str,
        kind: str,
        res: Resource,
        get: Callable[[str, str], Obj | None],
        build: Callable[[Obj, PageAccess], R.Markup],
    ) -> web.Response:
        user = await self._user(request)
        uname = user.name if user else ""
        ns, name = request.match_info["ns"], request.match_info["name"]
        self.view.touch(page, ns, name)
        etag = self.view.etag(f"{page}:{ns}/{name}", uname)
        if (nm := self._not_modified(request, etag)) is not None:
            return nm
        obj = get(ns, name)
        allowed = obj is not None and await self.authz.allowed(user, Check.of("get", res, ns, name))
        title = f"{kind} {ns}/{name}"
        if obj is None or not allowed:
            why = "It does not exist (it may have been deleted)"
            if self.o.auth:
                why += ", or your account may not read it"
            main = R.error_main(title, f"{kind} {ns}/{name} is not there. {why}.")
            return self._html(request, title, main, status=404, etag=etag, user=uname)
        main = build(obj, await self._access(user, ns))
        return self._html(request, title, main, etag=etag, user=uname)

    async def cluster(self, request: web.Request) -> web.Response:
        return await self._object_page(
            request,
            "cluster",
            "RayCluster",
            RAYCLUSTERS,
            self.view.caches.clusters.get,
            self.view.cluster_page,
        )

    async def job(self, request: web.Request) -> web.Response:
        return await self._object_page(
            request, "job", "RayJob", RAYJOBS, self.view.caches.jobs.get, self.view.job_page
        )

    async def service(self, request: web.Request) -> web.Response:
        return await self._object_page(
            request,
            "service",
            "RayService",
            RAYSERVICES,
            self.view.caches.rayservices.get,
            self.view.service_page,
        )

    async def static_file(self, request: web.Request) -> web.Response:
        hit = self.static.files.get(request.match_info["path"])
        if hit is None:
            raise web.HTTPNotFound()
        data, ctype = hit
        resp = web.Response(body=data, content_type=ctype)
        resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return resp

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    # -- sign-in -------------------------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.Response:
        if not self.o.auth:
            raise web.HTTPSeeOther("/")
        return self._html(request, "Sign in", R.login_main(), poll=False)

    def _same_origin(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if not origin or origin == "null":
            return origin is None
        return urlsplit(origin).netloc == request.host

    async def login(self, request: web.Request) -> web.Response:
        if not self.o.auth:
            raise web.HTTPSeeOther("/")
        if not self._same_origin(request):
            return self._html(
                request,
                "Sign in",
                R.login_main("The sign-in form must be sent from this site."),
                status=403,
                poll=False,
            )
        form = await request.post()
        token = str(form.get("token") or "").strip()
        assert self.reviewer is not None
        user = await self.reviewer.review(token) if token else None
        if user is None:
            return self._html(
                request,
                "Sign in",
                R.login_main("The API server did not accept this token."),
                status=401,
                poll=False,
            )
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(
            COOKIE, token, max_age=COOKIE_MAX_AGE, httponly=True, secure=self.tls, samesite="Strict", path="/"
        )
        raise resp

    async def logout(self, request: web.Request) -> web.Response:
        if not self._same_origin(request):
            raise web.HTTPForbidden(text="cross-site sign-out refused")
        resp = web.HTTPSeeOther("/login" if self.o.auth else "/")
        resp.del_cookie(COOKIE, path="/")
        raise resp
