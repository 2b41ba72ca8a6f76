"""The admission webhook without an API server: AdmissionReview JSON posted to the aiohttp app, certificate
generation and rotation, and the HTTPS listener reloading its certificate."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import ssl
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509

from rayop.webhook import (
    FileCertSource,
    SelfSignedCertSource,
    WebhookServer,
    build_webhook_configuration,
    make_app,
)
from rayop.webhook.certs import generate_ca, generate_serving_cert, new_bundle, split_pems
from tests.unit.validation_cases import build

PATH = {
    "RayCluster": "/validate-ray-io-v1-raycluster",
    "RayJob": "/validate-ray-io-v1-rayjob",
    "RayService": "/validate-ray-io-v1-rayservice",
}
PLURAL = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayService": "rayservices"}


def review(
    kind: str, obj: Any, *, op: str = "CREATE", old: Any = None, version: str = "v1"
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "ray.io", "version": version, "kind": kind},
            "resource": {"group": "ray.io", "version": version, "resource": PLURAL[kind]},
            "name": "",
            "namespace": "default",
            "operation": op,
            "object": obj,
            "oldObject": old,
            "dryRun": False,
        },
    }


async def post(client: TestClient[Any, Any], kind: str, body: Any) -> tuple[int, Any]:
    resp = await client.post(PATH[kind], json=body)
    return resp.status, await resp.json()


@pytest.fixture
async def client() -> Any:
    c = TestClient(TestServer(make_app()))
    await c.start_server()
    try:
        yield c
    finally:
        await c.close()


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob", "RayService"])
async def test_valid_objects_are_allowed(client: Any, kind: str) -> None:
    body = review(kind, build(kind, {}))
    status, out = await post(client, kind, body)
    assert status == 200
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    assert out["response"] == {"uid": body["request"]["uid"], "allowed": True}


async def test_invalid_object_is_denied_with_every_error(client: Any) -> None:
    obj = build(
        "RayCluster",
        {
            "spec.workerGroupSpecs[0].minReplicas": 5,
            "spec.workerGroupSpecs[0].maxReplicas": 3,
            "spec.workerGroupSpecs[1]": {
                "groupName": "workers",
                "minReplicas": 0,
                "maxReplicas": 1,
                "template": {"spec": {"containers": [{"name": "w"}]}},
            },
        },
    )
    status, out = await post(client, "RayCluster", review("RayCluster", obj))
    assert status == 200
    resp = out["response"]
    assert resp["allowed"] is False
    st = resp["status"]
    assert st["code"] == 422 and st["reason"] == "Invalid" and st["status"] == "Failure"
    assert st["message"] == (
        'RayCluster.ray.io "demo" is invalid: [spec.workerGroupSpecs[0].minReplicas: Invalid value: 5: must be less '
        'than or equal to maxReplicas (3), spec.workerGroupSpecs[1].groupName: Duplicate value: "workers"]'
    )
    assert st["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 5: must be less than or equal to maxReplicas (3)",
            "field": "spec.workerGroupSpecs[0].minReplicas",
        },
        {
            "reason": "FieldValueDuplicate",
            "message": 'Duplicate value: "workers"',
            "field": "spec.workerGroupSpecs[1].groupName",
        },
    ]
    assert st["details"]["kind"] == "RayCluster" and st["details"]["group"] == "ray.io"


async def test_update_uses_old_object(client: Any) -> None:
    old = build("RayJob", {})
    new = build("RayJob", {"spec.managedBy": "kueue.x-k8s.io/multikueue"})
    _, out = await post(client, "RayJob", review("RayJob", new, op="UPDATE", old=old))
    assert out["response"]["allowed"] is False
    assert out["response"]["status"]["message"] == (
        'RayJob.ray.io "job" is invalid: spec.managedBy: Invalid value: "kueue.x-k8s.io/multikueue": field is immutable'
    )
    _, same = await post(client, "RayJob", review("RayJob", old, op="UPDATE", old=old))
    assert same["response"]["allowed"] is True


async def test_warnings_are_returned_with_allowed(client: Any) -> None:
    obj = build("RayService", {"spec.serveConfigV2": "applications:\n- name: a\n  importPath: m:a\n"})
    _, out = await post(client, "RayService", review("RayService", obj))
    resp = out["response"]
    assert resp["allowed"] is True
    assert resp["warnings"] == [
        "spec.serveConfigV2.applications[0]: key 'importPath' is camelCase; Ray Serve expects 'import_path' and ignores 'importPath'",
        "spec.serveConfigV2.applications[0]: has no import_path; Ray Serve rejects the config",
    ]
    assert all(len(w) <= 256 for w in resp["warnings"])


async def test_v1alpha1_request_warns(client: Any) -> None:
    obj = build("RayCluster", {"apiVersion": "ray.io/v1alpha1"})
    _, out = await post(client, "RayCluster", review("RayCluster", obj, version="v1alpha1"))
    assert out["response"]["allowed"] is True
    assert out["response"]["warnings"][0].startswith("ray.io/v1alpha1 RayCluster is deprecated")


async def test_delete_and_connect_are_allowed(client: Any) -> None:
    for op in ("DELETE", "CONNECT"):
        _, out = await post(client, "RayCluster", review("RayCluster", None, op=op))
        assert out["response"]["allowed"] is True


async def test_wrong_kind_on_path_is_denied(client: Any) -> None:
    _, out = await post(client, "RayCluster", review("RayJob", build("RayJob", {})))
    assert out["response"]["allowed"] is False
    assert out["response"]["status"]["message"] == "this webhook validates RayCluster, not RayJob"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","request":{"uid":"x"}}',
        b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}',
    ],
)
async def test_malformed_reviews_get_400(client: Any, body: bytes) -> None:
    resp = await client.post(PATH["RayCluster"], data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert "error" in await resp.json()


async def test_malformed_objects_are_denied_not_crashed(client: Any) -> None:
    for obj in (None, 7, "x", [], {"metadata": [], "spec": {"headGroupSpec": "x"}}):
        status, out = await post(client, "RayCluster", review("RayCluster", obj))
        assert status == 200
        assert out["response"]["allowed"] is False
        assert out["response"]["status"]["details"]["causes"]


async def test_readyz_and_healthz() -> None:
    flag = {"ready": False}
    c = TestClient(TestServer(make_app(ready=lambda: flag["ready"])))
    await c.start_server()
    try:
        assert (await c.get("/healthz")).status == 200
        assert (await c.get("/readyz")).status == 503
        flag["ready"] = True
        assert (await c.get("/readyz")).status == 200
    finally:
        await c.close()


async def test_feature_gates_reach_validation() -> None:
    obj = build("RayCluster", {"spec.tlsOptions": {"enabled": True}})
    for gates, allowed in (({}, False), ({"RayClusterMTLS": True}, True)):
        c = TestClient(TestServer(make_app(gates)))
        await c.start_server()
        try:
            _, out = await post(c, "RayCluster", review("RayCluster", obj))
            assert out["response"]["allowed"] is allowed
        finally:
            await c.close()


# ---- certificates


def test_serving_cert_chains_to_ca_with_sans() -> None:
    ca_pem, ca_key = generate_ca()
    cert_pem, _, nb, na = generate_serving_cert(
        ca_pem, ca_key, ["127.0.0.1", "rayop-webhook.rayop-system.svc"]
    )
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(ca_pem)
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["rayop-webhook.rayop-system.svc"]
    assert nb < na <= ca.not_valid_after_utc
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


async def test_self_signed_source_rotates_before_expiry() -> None:
    now = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    src = SelfSignedCertSource(["127.0.0.1"], clock=lambda: now[0], serving_validity=dt.timedelta(days=30))
    first = await src.load()
    assert await src.refresh() is None
    now[0] += dt.timedelta(days=21)  # less than a third of 30 days left
    second = await src.refresh()
    assert second is not None and second.serial != first.serial
    # Same CA: the caBundle the API server trusts does not change for a routine rotation.
    assert second.ca_bundle == first.ca_bundle
    third = await src.rotate(ca=True)
    cas = split_pems(third.ca_bundle)
    assert len(cas) == 2 and cas[1] == split_pems(first.ca_bundle)[0]
    x509.load_pem_x509_certificate(third.cert_pem).verify_directly_issued_by(
        x509.load_pem_x509_certificate(cas[0])
    )


def _bump_mtimes(d: Path) -> None:
    for p in d.iterdir():
        os.utime(p, (p.stat().st_atime + 5, p.stat().st_mtime + 5))


async def test_file_source_notices_replaced_files(tmp_path: Path) -> None:
    writer = FileCertSource(tmp_path)
    b1 = new_bundle(["127.0.0.1"])
    writer.write(b1)
    src = FileCertSource(tmp_path)
    assert (await src.load()).cert_pem == b1.cert_pem
    assert await src.refresh() is None
    b2 = new_bundle(["127.0.0.1"])
    writer.write(b2)
    _bump_mtimes(tmp_path)  # mtimes can tie within one clock tick
    got = await src.refresh()
    assert got is not None and got.cert_pem == b2.cert_pem


def test_webhook_configuration_shape() -> None:
    cfg = build_webhook_configuration("https://127.0.0.1:9443/", b"CA")
    assert cfg["kind"] == "ValidatingWebhookConfiguration"
    names = [h["name"] for h in cfg["webhooks"]]
    assert names == [
        "validate.rayclusters.ray.io",
        "validate.rayjobs.ray.io",
        "validate.rayservices.ray.io",
        "validate.scale.rayworkergroups.rayop.io",
        "validate.scale.rayservedeployments.rayop.io",
    ]
    h = cfg["webhooks"][0]
    assert h["clientConfig"] == {
        "url": "https://127.0.0.1:9443/validate-ray-io-v1-raycluster",
        "caBundle": base64.b64encode(b"CA").decode(),
    }
    assert h["failurePolicy"] == "Fail" and h["sideEffects"] == "None" and h["timeoutSeconds"] == 5
    assert h["admissionReviewVersions"] == ["v1"] and h["namespaceSelector"] == {}
    assert h["rules"] == [
        {
            "apiGroups": ["ray.io"],
            "apiVersions": ["v1", "v1alpha1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["rayclusters"],
            "scope": "Namespaced",
        }
    ]
    # Writes to a RayWorkerGroup's scale subresource (kubectl scale, the HPA) are judged too.
    assert cfg["webhooks"][3]["rules"] == [
        {
            "apiGroups": ["rayop.io"],
            "apiVersions": ["v1alpha1"],
            "operations": ["UPDATE"],
            "resources": ["rayworkergroups/scale"],
            "scope": "Namespaced",
        }
    ]
    assert cfg["webhooks"][3]["clientConfig"]["url"].endswith(
        "/validate-rayop-io-v1alpha1-rayworkergroup-scale"
    )
    # And writes to a RayServeDeployment's (a Serve deployment sized by an HPA).
    assert cfg["webhooks"][4]["rules"][0]["resources"] == ["rayservedeployments/scale"]
    assert cfg["webhooks"][4]["clientConfig"]["url"].endswith(
        "/validate-rayop-io-v1alpha1-rayservedeployment-scale"
    )
    svc = build_webhook_configuration(
        {"namespace": "rayop-system", "name": "rayop-webhook", "port": 443}, b""
    )
    assert svc["webhooks"][2]["clientConfig"] == {
        "service": {
            "namespace": "rayop-system",
            "name": "rayop-webhook",
            "path": "/validate-ray-io-v1-rayservice",
            "port": 443,
        }
    }


# ---- the HTTPS listener


async def _https_review(url: str, ca: bytes, body: Any) -> tuple[dict[str, Any], int]:
    """POST over a fresh TLS connection; also return the serial of the certificate the server presented."""
    ctx = ssl.create_default_context(cadata=ca.decode())
    host, port = url.removeprefix("https://").rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    async with aiohttp.ClientSession() as s, s.post(url + PATH["RayCluster"], json=body, ssl=ctx) as r:
        return await r.json(), x509.load_der_x509_certificate(der).serial_number


async def test_https_server_serves_and_reloads_rotated_certificates() -> None:
    published: list[bytes] = []
    srv = WebhookServer(
        "127.0.0.1", 0, cert_source=SelfSignedCertSource(["127.0.0.1"]), ca_propagation_seconds=0
    )

    async def hook(ca: bytes) -> None:
        published.append(ca)

    srv.on_ca_bundle.append(hook)
    assert not srv.ready
    await srv.start()
    try:
        assert srv.ready and srv.port != 0
        assert published == [srv.ca_bundle]
        out, serial1 = await _https_review(
            srv.url, srv.ca_bundle, review("RayCluster", build("RayCluster", {}))
        )
        assert out["response"]["allowed"] is True
        b2 = await srv.rotate()
        _, serial2 = await _https_review(
            srv.url, srv.ca_bundle, review("RayCluster", build("RayCluster", {}))
        )
        assert serial2 == b2.serial != serial1
        b3 = await srv.rotate(ca=True)
        assert published[-1] == b3.ca_bundle and len(published) == 2
        # The published bundle (new CA first, old CA kept) verifies the certificate from the new CA.
        _, serial3 = await _https_review(srv.url, b3.ca_bundle, review("RayCluster", build("RayCluster", {})))
        assert serial3 == b3.serial
        async with aiohttp.ClientSession() as s:
            resp = await s.get(
                srv.url + "/readyz", ssl=ssl.create_default_context(cadata=b3.ca_bundle.decode())
            )
            assert resp.status == 200
    finally:
        await srv.stop()
    assert not srv.ready


async def test_server_requires_a_certificate_source() -> None:
    with pytest.raises(ValueError, match="cert_dir or cert_source"):
        WebhookServer("127.0.0.1", 0)
    await asyncio.sleep(0)


def test_standalone_sans_and_service_parsing(tmp_path: Path) -> None:
    from rayop.webhook.standalone import WebhookOptions, default_sans, make_cert_source, parse_service

    assert parse_service("rayop-system/rayop-webhook:443") == {
        "namespace": "rayop-system",
        "name": "rayop-webhook",
        "port": 443,
    }
    with pytest.raises(ValueError, match="namespace/name"):
        parse_service("just-a-name")
    sans = default_sans(
        WebhookOptions(
            service="rayop-system/rayop-webhook", url="https://10.0.0.5:9443", sans=["extra.example"]
        )
    )
    assert sans == [
        "extra.example",
        "rayop-webhook.rayop-system.svc",
        "rayop-webhook.rayop-system.svc.cluster.local",
        "rayop-webhook.rayop-system",
        "rayop-webhook",
        "10.0.0.5",
        "127.0.0.1",
        "localhost",
    ]
    assert isinstance(make_cert_source(WebhookOptions(), None), SelfSignedCertSource)
    FileCertSource(tmp_path).write(new_bundle(["127.0.0.1"]))
    (tmp_path / ".rayop-generated").unlink()  # as mounted by cert-manager: no rayop marker
    assert isinstance(make_cert_source(WebhookOptions(cert_dir=str(tmp_path)), None), FileCertSource)
    with pytest.raises(ValueError, match="--secret needs"):
        make_cert_source(WebhookOptions(secret="ns/name"), None)


async def test_start_webhook_writes_generated_certificates_to_cert_dir(tmp_path: Path) -> None:
    from rayop.webhook import WebhookOptions, start_webhook

    server = await start_webhook(
        WebhookOptions(host="127.0.0.1", port=0, cert_dir=str(tmp_path / "certs")), None
    )
    try:
        assert server.ready
        files = FileCertSource(tmp_path / "certs")
        assert (await files.load()).cert_pem == server.bundle.cert_pem if server.bundle else False
        rotated = await server.rotate()
        assert (await files.refresh() or await files.load()).cert_pem == rotated.cert_pem
        out, _ = await _https_review(
            server.url, server.ca_bundle, review("RayCluster", build("RayCluster", {}))
        )
        assert out["response"]["allowed"] is True
    finally:
        await server.stop()
    with pytest.raises(ValueError, match="--register needs"):
        await start_webhook(WebhookOptions(host="127.0.0.1", port=0, register=True), None)


async def test_controller_runtime_webhook_metrics(client: Any) -> None:
    from prometheus_client import REGISTRY

    def count(code: str) -> float:
        v = REGISTRY.get_sample_value(
            "controller_runtime_webhook_requests_total", {"code": code, "webhook": PATH["RayJob"]}
        )
        return v or 0.0

    ok0, bad0 = count("200"), count("400")
    await post(client, "RayJob", review("RayJob", build("RayJob", {})))
    await client.post(PATH["RayJob"], data=b"{", headers={"Content-Type": "application/json"})
    assert count("200") == ok0 + 1 and count("400") == bad0 + 1
    assert (
        REGISTRY.get_sample_value(
            "controller_runtime_webhook_latency_seconds_count", {"webhook": PATH["RayJob"]}
        )
        or 0
    ) >= 2
