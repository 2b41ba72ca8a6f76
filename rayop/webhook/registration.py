"""The ValidatingWebhookConfiguration that points the API server at this webhook."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Mapping
from typing import Any

from rayop.api import kinds
from rayop.runtime.client import VALIDATING_WEBHOOKS, ApiClient, ApiError

log = logging.getLogger("rayop.webhook.registration")

DEFAULT_NAME = "rayop-validating-webhook"
# Short: a slow webhook stalls every kubectl apply, and failurePolicy Fail turns a timeout into a rejection.
DEFAULT_TIMEOUT_SECONDS = 5
WEBHOOK_NAMES = {k.kind: f"validate.{k.plural}.{k.group}" for k in kinds.admitted()}
SCALE_WEBHOOK_NAMES = {k.kind: f"validate.scale.{k.plural}.{k.group}" for k in kinds.scale_admitted()}

UrlOrService = str | Mapping[str, Any]


def _client_config(target: UrlOrService, path: str, ca_bundle: bytes) -> dict[str, Any]:
    cfg: dict[str, Any]
    if isinstance(target, str):
        cfg = {"url": target.rstrip("/") + path}
    else:
        svc = {"namespace": target["namespace"], "name": target["name"], "path": path}
        if target.get("port") is not None:
            svc["port"] = int(target["port"])
        cfg = {"service": svc}
    if ca_bundle:
        cfg["caBundle"] = base64.b64encode(ca_bundle).decode()
    return cfg


def build_webhook_configuration(
    target: UrlOrService,
    ca_bundle: bytes,
    *,
    name: str = DEFAULT_NAME,
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
    failure_policy: str = "Fail",
    namespace_selector: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``target`` is a base URL (``https://127.0.0.1:9443``) or a Service ``{namespace, name, port}``."""
    hooks = []
    for spec in kinds.admitted():
        hooks.append(
            {
                "name": WEBHOOK_NAMES[spec.kind],
                "admissionReviewVersions": ["v1"],
                "clientConfig": _client_config(target, spec.webhook_path, ca_bundle),
                "failurePolicy": failure_policy,
                "sideEffects": "None",
                "timeoutSeconds": timeout_seconds,
                "matchPolicy": "Equivalent",
                "namespaceSelector": dict(namespace_selector or {}),
                "rules": [
                    {
                        "apiGroups": [spec.group],
                        "apiVersions": list(spec.versions),
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [spec.plural],
                        "scope": "Namespaced",
                    }
                ],
            }
        )
    for spec in kinds.scale_admitted():
        # `kubectl scale` and the HPA write the scale subresource with an autoscaling/v1 Scale; the
        # webhook answers from the object that owns the group (rayop.webhook.lookup).
        hooks.append(
            {
                "name": SCALE_WEBHOOK_NAMES[spec.kind],
                "admissionReviewVersions": ["v1"],
                "clientConfig": _client_config(target, spec.scale_webhook_path, ca_bundle),
                "failurePolicy": failure_policy,
                "sideEffects": "None",
                "timeoutSeconds": timeout_seconds,
                "matchPolicy": "Equivalent",
                "namespaceSelector": dict(namespace_selector or {}),
                "rules": [
                    {
                        "apiGroups": [spec.group],
                        "apiVersions": list(spec.versions),
                        "operations": ["UPDATE"],
                        "resources": [f"{spec.plural}/scale"],
                        "scope": "Namespaced",
                    }
                ],
            }
        )
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": "rayop", "app.kubernetes.io/component": "webhook"},
        },
        "webhooks": hooks,
    }


async def ensure_webhook_configuration(
    client: ApiClient,
    url_or_service: UrlOrService,
    ca_bundle: bytes,
    *,
    name: str = DEFAULT_NAME,
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
    failure_policy: str = "Fail",
    namespace_selector: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Create the configuration, or bring an existing one up to date (targets, rules, caBundle)."""
    desired = build_webhook_configuration(
        url_or_service,
        ca_bundle,
        name=name,
        timeout_seconds=timeout_seconds,
        failure_policy=failure_policy,
        namespace_selector=namespace_selector,
    )
    for _ in range(5):
        current = await client.get_or_none(VALIDATING_WEBHOOKS, name)
        if current is None:
            try:
                return await client.create(VALIDATING_WEBHOOKS, desired)
            except ApiError as e:
                if e.already_exists:
                    continue
                raise
        if _same(current, desired):
            return current
        body = dict(desired)
        body["metadata"] = {**desired["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}
        try:
            return await client.replace(VALIDATING_WEBHOOKS, body)
        except ApiError as e:
            if e.conflict:
                continue
            raise
    raise RuntimeError(f"could not update ValidatingWebhookConfiguration {name}: too many conflicts")


def _same(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    keys = (
        "name",
        "clientConfig",
        "failurePolicy",
        "sideEffects",
        "timeoutSeconds",
        "rules",
        "admissionReviewVersions",
    )
    cur = [{k: h.get(k) for k in keys} for h in current.get("webhooks") or []]
    want = [{k: h.get(k) for k in keys} for h in desired.get("webhooks") or []]
    return bool(cur == want)


async def delete_webhook_configuration(client: ApiClient, name: str = DEFAULT_NAME) -> None:
    await client.delete(VALIDATING_WEBHOOKS, name, ignore_not_found=True)


async def inject_ca_bundle(client: ApiClient, name: str, ca_bundle: bytes) -> bool:
    """Write ``ca_bundle`` into each webhook of the existing configuration ``name`` and change nothing else.

    For a configuration someone else owns (the Helm chart renders it without a caBundle): a JSON patch
    that touches only ``clientConfig.caBundle``, guarded by the resourceVersion and webhook names it was
    computed from, so it never fights the owner over rules or targets. Returns whether it wrote; raises
    ApiError (404 while the configuration does not exist yet).
    """
    want = base64.b64encode(ca_bundle).decode()
    for _ in range(5):
        current = await client.get(VALIDATING_WEBHOOKS, name)
        ops: list[dict[str, Any]] = []
        for i, hook in enumerate(current.get("webhooks") or []):
            if (hook.get("clientConfig") or {}).get("caBundle") != want:
                ops.append({"op": "test", "path": f"/webhooks/{i}/name", "value": hook.get("name")})
                ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": want})
        if not ops:
            return False
        rv = current["metadata"]["resourceVersion"]
        ops.insert(0, {"op": "test", "path": "/metadata/resourceVersion", "value": rv})
        try:
            await client.patch(VALIDATING_WEBHOOKS, name, ops, patch_type="json")
            return True
        except ApiError as e:
            # A failed "test" (the owner changed it meanwhile) comes back as 422 or 409: read again.
            if e.status not in (409, 422):
                raise
    raise RuntimeError(
        f"could not write the caBundle of ValidatingWebhookConfiguration {name}: it keeps changing"
    )


class CaInjector:
    """Keeps the caBundle of a chart-owned ValidatingWebhookConfiguration equal to what the webhook serves.

    ``publish`` runs as a WebhookServer ``on_ca_bundle`` hook, so a certificate from a new CA is served only
    after the configuration trusts it; ``keep`` re-checks periodically, because the configuration may be
    created after the operator starts (Helm creates it last) or replaced by a later ``helm upgrade``.
    Every replica runs it; they publish the same bundle (it comes from the shared Secret), so the first
    one writes and the others find nothing to change.
    """

    def __init__(self, client: ApiClient, name: str) -> None:
        self.client = client
        self.name = name
        self.injected = False

    async def publish(self, ca_bundle: bytes) -> None:
        try:
            if await inject_ca_bundle(self.client, self.name, ca_bundle):
                log.info("wrote the caBundle of ValidatingWebhookConfiguration %s", self.name)
            self.injected = True
        except ApiError as e:
            if not e.not_found:
                raise
            # Nothing points the API server at us yet, so nothing can fail for lack of trust.
            log.info("ValidatingWebhookConfiguration %s does not exist yet; will retry", self.name)

    async def keep(self, ca_bundle: Callable[[], bytes], interval: float = 60.0, first: float = 2.0) -> None:
        while True:
            await asyncio.sleep(interval if self.injected else first)
            bundle = ca_bundle()
            if not bundle:
                continue
            try:
                await self.publish(bundle)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a transient API error: the next round retries
                log.warning("checking the caBundle of %s failed: %s", self.name, e)
