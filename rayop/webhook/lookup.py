"""Reading the objects a scale request is judged against (rayop.validation.scale).

The webhook inside the operator reads them from the operator's informers (`CachedObjects`): no API call on
the admission path, which runs while `kubectl scale` or the HPA waits. A cache miss (an object created a
moment ago, or a namespace the operator does not watch) falls back to a GET. The standalone `rayop webhook`
has no informers and GETs each object (`ApiObjects`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

import aiohttp

from rayop.api import kinds
from rayop.base.objects import spec_of
from rayop.base.resource import Resource
from rayop.base.types import Obj
from rayop.runtime.client import ApiClient, ApiError
from rayop.runtime.protocols import Cache
from rayop.validation import ScaleContext

# The admission request has a few seconds in all (registration.DEFAULT_TIMEOUT_SECONDS); a slow read
# must not make the API server give up on the webhook.
READ_TIMEOUT_SECONDS = 2.0


class ObjectReader(Protocol):
    async def get(self, res: Resource, namespace: str, name: str) -> Obj | None: ...


class ApiObjects:
    """A GET per object."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def get(self, res: Resource, namespace: str, name: str) -> Obj | None:
        return await self.client.get_or_none(res, name, namespace)


class CachedObjects:
    """The operator's informers first; a GET for kinds without one and on a miss."""

    def __init__(self, caches: Mapping[Resource, Cache], fallback: ObjectReader | None = None) -> None:
        self.caches = dict(caches)
        self.fallback = fallback

    async def get(self, res: Resource, namespace: str, name: str) -> Obj | None:
        cache = self.caches.get(res)
        if cache is not None:
            obj = cache.get(namespace, name)
            if obj is not None:
                return obj
        return await self.fallback.get(res, namespace, name) if self.fallback else None


async def worker_group_scale_context(reader: ObjectReader | None, namespace: str, name: str) -> ScaleContext:
    """The RayWorkerGroup `namespace/name` and the RayCluster or RayService its spec names."""
    if reader is None:
        return ScaleContext(None, None, "the webhook has no access to the Kubernetes API")
    try:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            rwg = await reader.get(kinds.RAYWORKERGROUPS, namespace, name)
            if rwg is None:
                return ScaleContext(None, None)
            spec = spec_of(rwg)
            service = spec.get("rayServiceName")
            if isinstance(service, str) and service:
                return ScaleContext(rwg, await reader.get(kinds.RAYSERVICES, namespace, service))
            cluster = str(spec.get("rayClusterName") or "")
            return ScaleContext(
                rwg, await reader.get(kinds.RAYCLUSTERS, namespace, cluster) if cluster else None
            )
    except (ApiError, aiohttp.ClientError, TimeoutError, ConnectionError) as e:
        return ScaleContext(None, None, f"reading {namespace}/{name}: {e}")


async def serve_deployment_scale_context(
    reader: ObjectReader | None, namespace: str, name: str
) -> ScaleContext:
    """The RayServeDeployment `namespace/name` and the RayService its spec names."""
    if reader is None:
        return ScaleContext(None, None, "the webhook has no access to the Kubernetes API")
    try:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            target = await reader.get(kinds.RAYSERVEDEPLOYMENTS, namespace, name)
            if target is None:
                return ScaleContext(None, None)
            service = str(spec_of(target).get("rayServiceName") or "")
            owner = await reader.get(kinds.RAYSERVICES, namespace, service) if service else None
            return ScaleContext(target, owner)
    except (ApiError, aiohttp.ClientError, TimeoutError, ConnectionError) as e:
        return ScaleContext(None, None, f"reading {namespace}/{name}: {e}")


class ContextReader(Protocol):
    async def __call__(self, reader: ObjectReader | None, namespace: str, name: str) -> ScaleContext: ...


# How to read the context of a scale request, per kind whose scale subresource the webhook admits.
SCALE_CONTEXTS: Mapping[str, ContextReader] = {
    kinds.RAYWORKERGROUP.kind: worker_group_scale_context,
    kinds.RAYSERVEDEPLOYMENT.kind: serve_deployment_scale_context,
}
