"""The webhook registered at a real kube-apiserver (docs/compatibility.md#validation).

Each test registers its own ValidatingWebhookConfiguration that only selects the test's namespace (by a
label), so other tests on the shared plane never go through it, and deletes it afterwards.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from rayop.local.plane import ControlPlane
from rayop.runtime.client import NAMESPACES, VALIDATING_WEBHOOKS, ApiClient, ApiError, Resource
from rayop.webhook import SelfSignedCertSource, WebhookServer, delete_webhook_configuration
from tests.unit.manifest_fuzz import set_at, typed_leaves, typed_value
from tests.unit.validation_cases import BASES, build

RESOURCES = {
    "RayCluster": Resource("ray.io", "v1", "rayclusters", kind="RayCluster"),
    "RayJob": Resource("ray.io", "v1", "rayjobs", kind="RayJob"),
    "RayService": Resource("ray.io", "v1", "rayservices", kind="RayService"),
}
W0 = "spec.workerGroupSpecs[0]"


@dataclass
class Hook:
    server: WebhookServer
    config_name: str
    selector: dict[str, Any]
    namespace: str


async def kubectl(plane: ControlPlane, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(plane.bin_dir / "kubectl"),
        f"--kubeconfig={plane.kubeconfig}",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def apply(plane: ControlPlane, ns: str, obj: dict[str, Any]) -> tuple[int, str, str]:
    return await kubectl(plane, "apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(obj))


async def wait_until_enforced(plane: ControlPlane, ns: str, deadline: float = 30.0) -> None:
    """The API server picks up a new webhook configuration through an informer; probe until it rejects."""
    probe = build("RayCluster", {"metadata.name": "probe", f"{W0}.minReplicas": 9})
    end = time.monotonic() + deadline
    while True:
        code, _, err = await kubectl(
            plane, "create", "--dry-run=server", "-n", ns, "-f", "-", stdin=yaml.safe_dump(probe)
        )
        if code != 0 and "must be less than or equal to maxReplicas" in err:
            return
        if time.monotonic() > end:
            raise AssertionError(f"webhook not enforced after {deadline}s: {err}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def hook(plane: ControlPlane, kube: ApiClient, namespace: str) -> AsyncIterator[Hook]:
    token = uuid.uuid4().hex[:10]
    selector = {"matchLabels": {"rayop.test/webhook": token}}
    await kube.patch(NAMESPACES, namespace, {"metadata": {"labels": {"rayop.test/webhook": token}}})
    server = WebhookServer(
        "127.0.0.1", 0, cert_source=SelfSignedCertSource(["127.0.0.1"]), ca_propagation_seconds=5.0
    )
    await server.start()
    name = f"rayop-webhook-test-{token}"
    await server.register(kube, name=name, namespace_selector=selector)
    await wait_until_enforced(plane, namespace)
    try:
        yield Hook(server, name, selector, namespace)
    finally:
        await delete_webhook_configuration(kube, name)
        await server.stop()


def invalid_examples() -> list[tuple[str, dict[str, Any], str]]:
    return [
        (
            "min greater than max",
            build(
                "RayCluster", {"metadata.name": "bad-minmax", f"{W0}.minReplicas": 5, f"{W0}.maxReplicas": 3}
            ),
            "spec.workerGroupSpecs[0].minReplicas: Invalid value: 5: must be less than or equal to maxReplicas (3)",
        ),
        (
            "duplicate group",
            build(
                "RayCluster",
                {
                    "metadata.name": "bad-dup",
                    "spec.workerGroupSpecs[1]": {
                        "groupName": "workers",
                        "minReplicas": 0,
                        "maxReplicas": 1,
                        "template": {"spec": {"containers": [{"name": "w", "image": "i"}]}},
                    },
                },
            ),
            'spec.workerGroupSpecs[1].groupName: Duplicate value: "workers"',
        ),
        (
            "name too long",
            build("RayCluster", {"metadata.name": "x" * 54}),
            "metadata.name: Too long: may not be more than 53 characters",
        ),
        (
            "labels in rayStartParams",
            build("RayCluster", {"metadata.name": "bad-labels", f"{W0}.rayStartParams.labels": "a=b"}),
            "spec.workerGroupSpecs[0].rayStartParams[labels]: Forbidden: use workerGroupSpecs[0].labels instead",
        ),
        (
            "rayjob suspend without shutdown",
            build("RayJob", {"metadata.name": "bad-job", "spec.suspend": True}),
            "spec.suspend: Forbidden: a RayJob can be suspended only when shutdownAfterJobFinishes is true",
        ),
        (
            "rayjob runtime env not yaml",
            build("RayJob", {"metadata.name": "bad-renv", "spec.runtimeEnvYAML": "pip: [x"}),
            "spec.runtimeEnvYAML: Invalid value",
        ),
        (
            "rayservice head service name",
            build(
                "RayService",
                {
                    "metadata.name": "bad-svc",
                    "spec.rayClusterConfig.headGroupSpec.headService": {"metadata": {"name": "fixed"}},
                },
            ),
            "spec.rayClusterConfig.headGroupSpec.headService.metadata.name: Forbidden",
        ),
        (
            "rayservice bad timeout annotation",
            build(
                "RayService",
                {"metadata.name": "bad-timeout", "metadata.annotations.'ray.io/initializing-timeout'": "-5m"},
            ),
            'metadata.annotations[ray.io/initializing-timeout]: Invalid value: "-5m": must be a positive duration',
        ),
    ]


async def test_invalid_examples_are_rejected_with_their_message(plane: ControlPlane, hook: Hook) -> None:
    for label, obj, message in invalid_examples():
        code, out, err = await apply(plane, hook.namespace, obj)
        assert code != 0, f"{label}: accepted: {out}"
        assert message in err, f"{label}: {err}"
        assert f'The {obj["kind"]} "{obj["metadata"]["name"]}" is invalid' in err, err


async def test_all_errors_are_reported_at_once(plane: ControlPlane, hook: Hook) -> None:
    obj = build(
        "RayCluster",
        {
            "metadata.name": "many",
            f"{W0}.minReplicas": 5,
            f"{W0}.maxReplicas": 3,
            "spec.headGroupSpec.rayStartParams.labels": "x",
        },
    )
    code, _, err = await apply(plane, hook.namespace, obj)
    assert code != 0
    assert "spec.workerGroupSpecs[0].minReplicas: Invalid value: 5" in err
    assert "spec.headGroupSpec.rayStartParams[labels]: Forbidden" in err


async def test_valid_examples_are_accepted(plane: ControlPlane, hook: Hook) -> None:
    for kind in ("RayCluster", "RayJob", "RayService"):
        code, out, err = await apply(plane, hook.namespace, build(kind, {}))
        assert code == 0, err
        assert "created" in out
    assert hook.server.stats.allowed >= 3


async def test_warnings_show_in_kubectl_output(plane: ControlPlane, hook: Hook) -> None:
    obj = build(
        "RayService",
        {
            "metadata.name": "warned",
            "spec.serveConfigV2": "applications:\n- name: a\n  importPath: m:a\n  import_path: m:a\n",
        },
    )
    code, _out, err = await apply(plane, hook.namespace, obj)
    assert code == 0, err
    assert (
        "Warning: spec.serveConfigV2.applications[0]: key 'importPath' is camelCase; Ray Serve expects "
        "'import_path' and ignores 'importPath'"
    ) in err
    cluster = build(
        "RayCluster", {"metadata.name": "warned-rc", f"{W0}.minReplicas": 1, f"{W0}.maxReplicas": 4}
    )
    code, _, err = await apply(plane, hook.namespace, cluster)
    assert code == 0, err
    assert "Warning: spec.workerGroupSpecs[0]: minReplicas (1) and maxReplicas (4) only bound replicas" in err


async def test_immutable_field_update_is_rejected(plane: ControlPlane, kube: ApiClient, hook: Hook) -> None:
    obj = build("RayCluster", {"metadata.name": "immut"})
    code, _, err = await apply(plane, hook.namespace, obj)
    assert code == 0, err
    # The CRD's CEL rule only compares values present on both sides; adding managedBy later is caught here.
    changed = copy.deepcopy(obj)
    changed["spec"]["managedBy"] = "kueue.x-k8s.io/multikueue"
    code, _, err = await apply(plane, hook.namespace, changed)
    assert code != 0
    assert 'spec.managedBy: Invalid value: "kueue.x-k8s.io/multikueue": field is immutable' in err
    # Replicas stay editable.
    scaled = copy.deepcopy(obj)
    scaled["spec"]["workerGroupSpecs"][0].update(replicas=2, maxReplicas=2)
    code, _, err = await apply(plane, hook.namespace, scaled)
    assert code == 0, err


async def test_forced_certificate_rotation_keeps_admissions_working(
    plane: ControlPlane, kube: ApiClient, hook: Hook
) -> None:
    res = RESOURCES["RayCluster"]
    ns = hook.namespace
    before = await kube.get(VALIDATING_WEBHOOKS, hook.config_name)
    stop = asyncio.Event()
    results: list[int] = []

    async def traffic() -> None:
        i = 0
        while not stop.is_set():
            try:
                await kube.create(res, build("RayCluster", {"metadata.name": f"rot-{i}"}), ns)
                results.append(200)
            except ApiError as e:
                results.append(e.status)
            i += 1
            await asyncio.sleep(0.05)

    task = asyncio.create_task(traffic())
    try:
        old_serial = hook.server.bundle.serial if hook.server.bundle else 0
        await hook.server.rotate()  # new serving certificate, same CA
        await asyncio.sleep(0.5)
        b = await hook.server.rotate(ca=True)  # new CA: published first, then served
        assert b.serial != old_serial
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await task
    after = await kube.get(VALIDATING_WEBHOOKS, hook.config_name)
    assert (
        after["webhooks"][0]["clientConfig"]["caBundle"] != before["webhooks"][0]["clientConfig"]["caBundle"]
    )
    assert results and all(r == 200 for r in results), results
    # And rejections still come from the webhook after the rotation.
    code, _, err = await apply(
        plane, ns, build("RayCluster", {"metadata.name": "after-rot", f"{W0}.minReplicas": 7})
    )
    assert code != 0 and "must be less than or equal to maxReplicas (1)" in err


async def test_stopped_webhook_fails_closed_and_recovers(
    plane: ControlPlane, kube: ApiClient, hook: Hook
) -> None:
    ns = hook.namespace
    port = hook.server.port
    await hook.server.stop()
    code, _, err = await apply(plane, ns, build("RayCluster", {"metadata.name": "while-down"}))
    assert code != 0
    assert 'failed calling webhook "validate.rayclusters.ray.io"' in err, err
    assert "connection refused" in err, err
    # Back on the same port with the same certificate source: creation works again.
    revived = WebhookServer("127.0.0.1", port, cert_source=hook.server.cert_source)
    await revived.start()
    hook.server = revived
    end = time.monotonic() + 30
    while True:
        code, _, err = await apply(plane, ns, build("RayCluster", {"metadata.name": "while-down"}))
        if code == 0:
            break
        assert time.monotonic() < end, err
        await asyncio.sleep(0.2)


async def test_fuzzed_manifests_through_the_live_webhook(kube: ApiClient, hook: Hook) -> None:
    """Type-correct random edits of every field, so most requests pass the CRD schema and reach the
    webhook; >= 500 must reach it, and the API server must never answer 5xx."""
    from rayop.validation import _shape as S

    leaves: dict[str, list[tuple[list[Any], str]]] = {}
    for kind, schema in (
        ("RayCluster", S.RAYCLUSTER_SPEC),
        ("RayJob", S.RAYJOB_SPEC),
        ("RayService", S.RAYSERVICE_SPEC),
    ):
        out: list[tuple[list[Any], str]] = []
        typed_leaves(schema, ["spec"], out)
        typed_leaves(S.METADATA, ["metadata"], out)
        leaves[kind] = [
            (p, k)
            for p, k in out
            if p[:2]
            not in (
                ["metadata", "name"],
                ["metadata", "namespace"],
                ["metadata", "generateName"],
                ["metadata", "resourceVersion"],
            )
        ]

    rng = random.Random(4)
    ns = hook.namespace
    st = hook.server.stats
    statuses: dict[int, int] = {}
    sem = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        kind = rng.choice(list(BASES))
        obj = BASES[kind]()
        obj["metadata"]["name"] = f"fz-{i}"
        for _ in range(rng.randint(1, 4)):
            path, leaf = rng.choice(leaves[kind])
            set_at(obj, path, typed_value(rng, leaf), rng.random() < 0.1)
        async with sem:
            try:
                await kube.create(RESOURCES[kind], obj, ns)
                code = 201
            except ApiError as e:
                code = e.status
                assert e.status < 500, e
                if "admission webhook" in e.message or e.message.startswith(f'{kind}.ray.io "'):
                    causes = (e.body.get("details") or {}).get("causes") or []
                    assert causes and all(c.get("field") for c in causes), e.body
        statuses[code] = statuses.get(code, 0) + 1

    sent = 0
    while st.allowed + st.denied < 500 and sent < 3000:
        await asyncio.gather(*(one(sent + i) for i in range(100)))
        sent += 100
    print(
        f"fuzz via API server: sent={sent} statuses={statuses} webhook allowed={st.allowed} denied={st.denied}"
    )
    assert all(code < 500 for code in statuses), statuses
    assert st.allowed + st.denied >= 500, (sent, statuses)
    assert st.denied > 0 and st.bad_requests == 0


async def test_secret_certificates_are_shared_and_rotated(kube: ApiClient, namespace: str) -> None:
    import datetime as dt

    from rayop.runtime.client import SECRETS
    from rayop.webhook import SecretCertSource
    from rayop.webhook.certs import split_pems

    name = "rayop-webhook-cert"
    a = SecretCertSource(kube, namespace, name, ["127.0.0.1", "rayop-webhook.rayop-system.svc"])
    b = SecretCertSource(kube, namespace, name, ["127.0.0.1", "rayop-webhook.rayop-system.svc"])
    first = await a.load()
    secret = await kube.get(SECRETS, name, namespace)
    assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) == {
        "ca.crt",
        "ca.key",
        "tls.crt",
        "tls.key",
    }
    # A second replica (or a restarted operator) serves the same certificate instead of minting its own.
    assert (await b.load()).cert_pem == first.cert_pem
    assert await b.refresh() is None
    rotated = await a.rotate(ca=True)
    seen = await b.refresh()
    assert seen is not None and seen.cert_pem == rotated.cert_pem and seen.ca_bundle == rotated.ca_bundle
    assert split_pems(rotated.ca_bundle)[1] == split_pems(first.ca_bundle)[0]  # old CA still trusted
    # Due for rotation (less than a third of its validity left): whoever loads it first renews it.
    later = SecretCertSource(
        kube,
        namespace,
        name,
        ["127.0.0.1", "rayop-webhook.rayop-system.svc"],
        clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=300),
    )
    renewed = await later.load()
    assert renewed.cert_pem != rotated.cert_pem
    assert split_pems(renewed.ca_bundle)[0] == split_pems(rotated.ca_bundle)[0]  # same CA, new leaf
    # Two replicas rotating at once: the Secret's resourceVersion lets one win; both end up agreeing.
    await asyncio.gather(a.rotate(), b.rotate())
    final = (await kube.get(SECRETS, name, namespace))["data"]["tls.crt"]
    await a.refresh()
    await b.refresh()
    import base64

    assert a.bundle is not None and b.bundle is not None
    assert (
        base64.b64encode(a.bundle.cert_pem).decode() == final == base64.b64encode(b.bundle.cert_pem).decode()
    )


async def test_v1alpha1_objects_are_validated_and_warned(plane: ControlPlane, hook: Hook) -> None:
    obj = build("RayCluster", {"apiVersion": "ray.io/v1alpha1", "metadata.name": "alpha"})
    code, _, err = await apply(plane, hook.namespace, obj)
    assert code == 0, err
    assert (
        "Warning: ray.io/v1alpha1 RayCluster is deprecated and frozen at its December 2023 feature set; use ray.io/v1"
        in err
    )
    bad = build(
        "RayCluster", {"apiVersion": "ray.io/v1alpha1", "metadata.name": "alpha-bad", f"{W0}.minReplicas": 3}
    )
    code, _, err = await apply(plane, hook.namespace, bad)
    assert code != 0 and "spec.workerGroupSpecs[0].minReplicas: Invalid value: 3" in err


async def test_objects_from_before_the_webhook_stay_patchable_and_deletable(
    plane: ControlPlane, kube: ApiClient, hook: Hook
) -> None:
    """An object created while the webhook did not cover it (min > max) can still be scaled, get finalizers
    and be deleted: updates are only rejected for problems they add."""
    ns, res = hook.namespace, RESOURCES["RayCluster"]
    label = next(iter(hook.selector["matchLabels"]))
    await kube.patch(NAMESPACES, ns, {"metadata": {"labels": {label: None}}})
    legacy = build("RayCluster", {"metadata.name": "legacy", f"{W0}.minReplicas": 5, f"{W0}.maxReplicas": 3})
    end = time.monotonic() + 30
    while True:  # until the API server's namespace cache no longer selects the namespace
        try:
            await kube.create(res, legacy, ns)
            break
        except ApiError as e:
            assert time.monotonic() < end, e
            await asyncio.sleep(0.2)
    await kube.patch(NAMESPACES, ns, {"metadata": {"labels": {label: hook.selector["matchLabels"][label]}}})
    await wait_until_enforced(plane, ns)
    patched = await kube.patch(
        res,
        "legacy",
        {"spec": {"workerGroupSpecs": [{**legacy["spec"]["workerGroupSpecs"][0], "replicas": 4}]}},
        ns,
    )
    assert patched["spec"]["workerGroupSpecs"][0]["replicas"] == 4
    await kube.patch(res, "legacy", {"metadata": {"finalizers": ["rayop.test/hold"]}}, ns)
    # A patch that adds a new problem is still rejected.
    with pytest.raises(ApiError) as info:
        await kube.patch(
            res, "legacy", {"spec": {"headGroupSpec": {"rayStartParams": {"labels": "a=b"}}}}, ns
        )
    assert "spec.headGroupSpec.rayStartParams[labels]: Forbidden" in info.value.message
    await kube.delete(res, "legacy", ns)
    await kube.patch(res, "legacy", {"metadata": {"finalizers": None}}, ns)
    end = time.monotonic() + 30
    while await kube.get_or_none(res, "legacy", ns) is not None:
        assert time.monotonic() < end
        await asyncio.sleep(0.2)
