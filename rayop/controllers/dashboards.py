"""Reaching Ray head dashboards from a reconciler (RayJob, RayService): straight to the head Service's DNS
name, or through the API server's service proxy (KubeRay's --use-kubernetes-proxy), with the cluster's Ray
auth token when token authentication is on."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from rayop.api import constants as C
from rayop.base.objects import namespace_of
from rayop.builders import cluster as cl
from rayop.builders.pod import auth_secret_name
from rayop.ray.dashboard import DIRECT_TIMEOUT_SECONDS, DashboardClient
from rayop.runtime.client import SECRETS, ApiClient


class Dashboards:
    """Makes DashboardClients for a cluster's head: direct, or through the API server's service proxy.

    `resolve` maps a dashboard address (`<svc>.<ns>.svc.<domain>:<port>`) to the URL to call; the local
    stack and tests use it where cluster DNS does not exist.
    """

    def __init__(
        self,
        api: ApiClient,
        *,
        use_proxy: bool = False,
        resolve: Callable[[str], str] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.api = api
        self.use_proxy = use_proxy
        self.resolve = resolve
        self.timeout = timeout

    async def close(self) -> None:
        """Nothing pooled: each DashboardClient owns (and closes) its session, so a manager that stops
        leaves no open connections behind."""

    async def token_for(self, cluster: Mapping[str, Any] | None) -> str | None:
        """The Ray auth token of a token-auth cluster, from its Secret (key `auth_token`)."""
        if not cluster or not cl.is_auth_enabled(cluster):
            return None
        secret = await self.api.get_or_none(SECRETS, auth_secret_name(cluster), namespace_of(cluster))
        raw = ((secret or {}).get("data") or {}).get(C.AUTH_TOKEN_SECRET_KEY)
        return base64.b64decode(raw).decode() if raw else None

    async def client(self, dashboard_url: str, cluster: Mapping[str, Any] | None) -> DashboardClient:
        token = await self.token_for(cluster)
        if self.use_proxy:
            host = dashboard_url.split("://", 1)[-1].split(":", 1)[0]
            parts = host.split(".")
            svc, ns = parts[0], parts[1] if len(parts) > 1 else namespace_of(cluster)
            c = DashboardClient.via_proxy(self.api, ns, svc, token=token)
            if self.timeout:
                c.timeout = self.timeout
            return c
        url = self.resolve(dashboard_url) if self.resolve else dashboard_url
        return DashboardClient.direct(url, token=token, timeout=self.timeout or DIRECT_TIMEOUT_SECONDS)
