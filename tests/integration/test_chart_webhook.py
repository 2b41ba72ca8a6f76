"""The chart's webhook arrangement with `rayop operator` processes under the chart's roles: the
configuration belongs to the chart (no caBundle), the operators keep their certificates in the Secret
and write only the caBundle, and the API server then enforces rayop's rules.

The API server dials the webhook by URL here (the session plane reaches no Services); the e2e test of
the installed chart covers the Service path. The configuration is named like the chart's, because the
chart's ClusterRole for it is limited to that name; it selects only the test's namespace.
"""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from rayop.local.plane import ControlPlane, pick_free_ports
from rayop.runtime.client import SECRETS, VALIDATING_WEBHOOKS, ApiClient
from rayop.webhook.certs import generate_serving_cert, split_pems
from tests import rbac
from tests.helpers import eventually
from tests.unit.validation_cases import build

CONFIG_NAME = "rayop-validating-webhook"
SECRET = "rayop-webhook-cert"
W0 = "spec.workerGroupSpecs[0]"


def chart_webhook_rbac(plane: ControlPlane, namespace: str) -> None:
    """The chart's self-managed-certificate roles, bound to the operator's test identity."""
    role = rbac.chart_role("Role", "-webhook")
    cluster_role = rbac.chart_role("ClusterRole", "-webhook")
    user = [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": rbac.OPERATOR_USER}]
    docs = [
        {**role, "metadata": {"name": "rayop-webhook", "namespace": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "rayop-webhook", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rayop-webhook"},
            "subjects": user,
        },
        cluster_role,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "rayop-test-webhook"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "rayop-webhook",
            },
            "subjects": user,
        },
    ]
    text = "---\n".join(yaml.safe_dump(d) for d in docs)
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=text)


def chart_configuration(namespace: str, port: int) -> dict[str, Any]:
    """The chart's configuration as rendered (config/default), pointed at a URL and at one namespace."""
    (vwc,) = [d for d in rbac.chart_objects() if d["kind"] == "ValidatingWebhookConfiguration"]
    for hook in vwc["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}"}
        hook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    return {
        "apiVersion": vwc["apiVersion"],
        "kind": vwc["kind"],
        "metadata": {"name": CONFIG_NAME},
        "webhooks": vwc["webhooks"],
    }


class Op:
    def __init__(self, plane: ControlPlane, namespace: str, log: Path) -> None:
        self.webhook, self.probe = pick_free_ports(2)
        self.log = log
        out = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rayop.cli.main",
                "operator",
                f"--kubeconfig={rbac.operator_kubeconfig(plane)}",
                f"--watch-namespace={namespace}",
                "--metrics-addr=0",
                f"--health-probe-bind-address=127.0.0.1:{self.probe}",
                "--enable-leader-election=false",
                "--enable-webhook=true",
                "--webhook-host=127.0.0.1",
                f"--webhook-port={self.webhook}",
                # The chart's flags, with the test namespace for the release namespace.
                f"--webhook-service={namespace}/rayop-webhook:443",
                f"--webhook-secret={namespace}/{SECRET}",
                f"--webhook-inject-ca-into={CONFIG_NAME}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.probe}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def ops() -> Iterator[list[Op]]:
    started: list[Op] = []
    yield started
    for op in started:
        op.stop()


def _ca_bundle(vwc: dict[str, Any]) -> set[str]:
    return {h["clientConfig"].get("caBundle", "") for h in vwc["webhooks"]}


async def test_operators_manage_certificates_for_the_charts_configuration(
    plane: ControlPlane, kube: ApiClient, namespace: str, ops: list[Op], tmp_path: Path
) -> None:
    chart_webhook_rbac(plane, namespace)
    first = Op(plane, namespace, tmp_path / "op1.log")
    ops.append(first)
    await kube.create(VALIDATING_WEBHOOKS, chart_configuration(namespace, first.webhook))
    try:
        await eventually(first.ready, 60, what="first operator ready")
        # It generated the certificates into the Secret and wrote only the caBundle.
        secret = await eventually(lambda: kube.get_or_none(SECRETS, SECRET, namespace), 30, what="secret")
        ca = base64.b64decode(secret["data"]["ca.crt"])

        async def injected() -> bool:
            vwc = await kube.get(VALIDATING_WEBHOOKS, CONFIG_NAME)
            return _ca_bundle(vwc) == {base64.b64encode(ca).decode()}

        await eventually(injected, 30, what="caBundle injected")
        vwc = await kube.get(VALIDATING_WEBHOOKS, CONFIG_NAME)
        want = chart_configuration(namespace, first.webhook)
        for got, exp in zip(vwc["webhooks"], want["webhooks"], strict=True):
            got = dict(got, clientConfig={k: v for k, v in got["clientConfig"].items() if k != "caBundle"})
            assert {k: got[k] for k in exp} == exp, "the operator changed more than the caBundle"

        # The API server now calls the webhook: rayop's rule (not in the CRD schema) rejects.
        bad = build("RayCluster", {"metadata.name": "bad", f"{W0}.minReplicas": 5, f"{W0}.maxReplicas": 3})
        code, err = _kubectl_create(plane, namespace, bad)
        assert code != 0 and "must be less than or equal to maxReplicas (3)" in err, err

        # A second replica, started when the serving certificate is due for rotation, rotates it in the
        # shared Secret (same CA, so the caBundle stays) and serves what the Secret holds.
        await kube.patch(SECRETS, SECRET, {"data": _due_for_rotation(secret)}, namespace)
        second = Op(plane, namespace, tmp_path / "op2.log")
        ops.append(second)
        await eventually(second.ready, 60, what="second operator ready")
        rotated = await kube.get(SECRETS, SECRET, namespace)
        assert rotated["data"]["tls.crt"] != secret["data"]["tls.crt"]
        assert split_pems(base64.b64decode(rotated["data"]["ca.crt"]))[0] == split_pems(ca)[0]
        assert await injected()
        good = build("RayCluster", {"metadata.name": "good"})
        code, err = _kubectl_create(plane, namespace, good)
        assert code == 0, err
    finally:
        await kube.delete(VALIDATING_WEBHOOKS, CONFIG_NAME, ignore_not_found=True)


def _due_for_rotation(secret: dict[str, Any]) -> dict[str, str]:
    """The Secret's data with a serving certificate from the same CA (for the same names) that has a
    month left of its year, so the next replica to load it must rotate it."""
    ca_crt = split_pems(base64.b64decode(secret["data"]["ca.crt"]))[0]
    ca_key = base64.b64decode(secret["data"]["ca.key"])
    current = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    names = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    sans = [*names.get_values_for_type(x509.DNSName), *map(str, names.get_values_for_type(x509.IPAddress))]
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=335)
    cert, key, _, _ = generate_serving_cert(ca_crt, ca_key, sans, now=old)
    return {
        **secret["data"],
        "tls.crt": base64.b64encode(cert).decode(),
        "tls.key": base64.b64encode(key).decode(),
    }


def _kubectl_create(plane: ControlPlane, namespace: str, obj: dict[str, Any]) -> tuple[int, str]:
    proc = subprocess.run(
        [
            str(plane.bin_dir / "kubectl"),
            f"--kubeconfig={plane.kubeconfig}",
            "create",
            "-n",
            namespace,
            "-f",
            "-",
        ],
        input=yaml.safe_dump(obj),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stderr
