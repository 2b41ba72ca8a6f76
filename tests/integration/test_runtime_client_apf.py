"""The client against the real API server's Priority and Fairness: with a priority level of a few seats
that rejects what it cannot seat, a burst gets 429s with Retry-After; the client waits each out and sends
the request again, so every request succeeds and none is retried at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from rayop.base.pki import key_pem, load_cert, load_key, make_leaf, pem
from rayop.base.resource import Resource
from rayop.local.plane import ControlPlane
from rayop.runtime.client import CONFIGMAPS, ApiClient, ApiError, ClientConfig, load_kubeconfig

PRIORITY_LEVELS = Resource(
    "flowcontrol.apiserver.k8s.io",
    "v1",
    "prioritylevelconfigurations",
    namespaced=False,
    kind="PriorityLevelConfiguration",
)
FLOW_SCHEMAS = Resource(
    "flowcontrol.apiserver.k8s.io", "v1", "flowschemas", namespaced=False, kind="FlowSchema"
)
ROLEBINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", kind="RoleBinding")


def throttled_client(plane: ControlPlane, user: str) -> ApiClient:
    """A client for `user`, who is not in system:masters (whose requests APF exempts)."""
    assert plane.pki is not None
    ca = load_cert(plane.pki.client_ca.read_bytes())
    ca_key = load_key(plane.pki.client_ca_key.read_bytes())
    cert, key = make_leaf(ca, ca_key, user, org="rayop-testers", client=True)
    admin = load_kubeconfig(plane.kubeconfig)
    return ApiClient(
        ClientConfig(server=admin.server, ca_data=admin.ca_data, cert_data=pem(cert), key_data=key_pem(key))
    )


def apf_objects(user: str) -> tuple[dict[str, Any], dict[str, Any]]:
    level = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": user},
        "spec": {
            "type": "Limited",
            "limited": {
                # One share of the server's ~600 seats gives a couple of seats; no borrowing, no queue.
                "nominalConcurrencyShares": 1,
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,
                "limitResponse": {"type": "Reject"},
            },
        },
    }
    schema = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": user},
        "spec": {
            "priorityLevelConfiguration": {"name": user},
            "matchingPrecedence": 100,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [{"kind": "User", "user": {"name": user}}],
                    "resourceRules": [
                        {
                            "verbs": ["*"],
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "namespaces": ["*"],
                            "clusterScope": True,
                        }
                    ],
                }
            ],
        },
    }
    return level, schema


async def test_apf_429_is_waited_out_not_retried_at_once(
    plane: ControlPlane, kube: ApiClient, namespace: str
) -> None:
    user = f"rayop-throttled-{namespace}"
    await kube.create(
        ROLEBINDINGS,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "throttled-admin", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
        namespace,
    )
    level, schema = apf_objects(user)
    await kube.create(PRIORITY_LEVELS, level)
    await kube.create(FLOW_SCHEMAS, schema)
    client = throttled_client(plane, user)

    # Every attempt the client sends: (request body, start, status, Retry-After).
    attempts: list[tuple[Any, float, int, float]] = []
    send = client._send

    async def recording_send(method: str, url: str, data: Any, *args: Any) -> Any:
        t = time.monotonic()
        try:
            out = await send(method, url, data, *args)
        except ApiError as e:
            attempts.append((data, t, e.status, e.retry_after))
            raise
        attempts.append((data, t, 200, 0.0))
        return out

    client._send = recording_send  # type: ignore[method-assign]
    created: list[str] = []
    try:
        # The API server applies new APF objects a moment after they are written: send bursts until one
        # meets the small priority level.
        deadline = time.monotonic() + 60
        burst = 0
        while client.retries == 0:
            assert time.monotonic() < deadline, "no 429 from the small priority level"
            names = [f"cm-{burst}-{i}" for i in range(20)]
            body = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v" * 2000}}
            await asyncio.gather(
                *(client.create(CONFIGMAPS, {**body, "metadata": {"name": n}}, namespace) for n in names)
            )
            created += names
            burst += 1
    finally:
        await client.close()
        with contextlib.suppress(ApiError):
            await kube.delete(FLOW_SCHEMAS, user)
            await kube.delete(PRIORITY_LEVELS, user)

    rejected = [a for a in attempts if a[2] == 429]
    assert rejected, "the burst met the priority level's limit"
    assert all(a[3] >= 1 for a in rejected), "APF's 429 carries Retry-After (at least 1 s)"
    # Each rejected attempt was followed by the same request again, no sooner than Retry-After.
    for data, t, _, retry_after in rejected:
        later = [a for a in attempts if a[0] == data and a[1] > t]
        assert later, "a rejected request was not sent again"
        assert later[0][1] - t >= retry_after, (
            f"sent again after {later[0][1] - t:.2f} s, not {retry_after} s"
        )
    # No caller saw an error: every ConfigMap exists.
    items = (await kube.list(CONFIGMAPS, namespace))["items"]
    assert {n for n in created} <= {i["metadata"]["name"] for i in items}
