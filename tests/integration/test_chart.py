"""The Helm chart with the helm built from its Go module: lint, the kustomize base generated from it, the
namespaced variants, and both default and namespaced renderings accepted by a real API server
(`--dry-run=server`: every object passes the server's validation and admission)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from rayop.local.plane import ControlPlane
from tests import rbac

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "rayop"
HELM = Path(
    os.environ.get("RAYOP_HELM")
    or Path(os.environ.get("RAYOP_CACHE_DIR", Path.home() / ".cache" / "rayop"))
    / "helm"
    / next(
        line.split("=", 1)[1].strip()
        for line in (REPO / "versions.env").read_text().splitlines()
        if line.startswith("RAYOP_HELM_VERSION=")
    )
    / "helm"
)

VARIANTS: dict[str, list[str]] = {
    "default": [],
    "namespaced": ["--set", "watchNamespace={team-a,team-b}"],
    "single-namespace": ["--set", "singleNamespaceInstall=true"],
    "cert-manager": ["--set", "webhook.certManager.enabled=true", "--set", "replicas=2"],
    "config-file": [
        "--set",
        "configuration.enabled=true",
        "--set",
        "podDisruptionBudget.enabled=true",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "logging.baseDir=/var/log/rayop,logging.fileName=operator.log",
    ],
}


def helm(*args: str) -> str:
    if not HELM.exists():
        pytest.fail(f"no helm at {HELM}: run `make deps`")
    proc = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"helm {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def render(variant: str, namespace: str = "rayop-system") -> list[dict[str, Any]]:
    out = helm("template", "rayop", str(CHART), "--namespace", namespace, *VARIANTS[variant])
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def args_of(docs: list[dict[str, Any]]) -> list[str]:
    (dep,) = by_kind(docs, "Deployment")
    return list(dep["spec"]["template"]["spec"]["containers"][0]["args"])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint(variant: str) -> None:
    out = helm("lint", "--strict", str(CHART), *VARIANTS[variant])
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_kustomize_base_is_the_chart_rendered_with_default_values(tmp_path: Path) -> None:
    env = {**os.environ, "RAYOP_HELM": str(HELM)}
    subprocess.run(["bash", str(REPO / "scripts" / "gen-manifests.sh"), str(tmp_path)], check=True, env=env)
    fresh = (tmp_path / "rayop.yaml").read_text()
    assert fresh == (REPO / "config" / "default" / "rayop.yaml").read_text(), (
        "config/default/rayop.yaml is stale with respect to charts/rayop: run `make manifests`"
    )


def test_namespaced_install_grants_per_namespace_and_admits_only_those() -> None:
    default, docs = render("default"), render("namespaced")
    (cluster_role,) = [r for r in by_kind(default, "ClusterRole") if r["metadata"]["name"] == "rayop"]
    assert not [r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == "rayop"]
    roles = {r["metadata"]["namespace"]: r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "rayop"}
    assert set(roles) == {"team-a", "team-b"}
    for role in roles.values():
        assert role["rules"] == cluster_role["rules"]
    bindings = {
        b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding") if b["metadata"]["name"] == "rayop"
    }
    assert bindings == {"team-a", "team-b"}
    assert "--watch-namespace=team-a,team-b" in args_of(docs)
    (vwc,) = by_kind(docs, "ValidatingWebhookConfiguration")
    for hook in vwc["webhooks"]:
        (expr,) = hook["namespaceSelector"]["matchExpressions"]
        assert expr == {
            "key": "kubernetes.io/metadata.name",
            "operator": "In",
            "values": ["team-a", "team-b"],
        }


def test_single_namespace_install_creates_nothing_cluster_scoped() -> None:
    docs = render("single-namespace", namespace="team-a")
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration"}
    assert not [d for d in docs if d["kind"] in cluster_scoped]
    assert {d["metadata"].get("namespace") for d in docs} == {"team-a"}
    args = args_of(docs)
    assert "--watch-namespace=team-a" in args and "--enable-webhook=false" in args


def test_cert_manager_certificates_name_the_webhook_service() -> None:
    docs = render("cert-manager")
    (cert,) = by_kind(docs, "Certificate")
    assert "rayop-webhook.rayop-system.svc" in cert["spec"]["dnsNames"]
    (vwc,) = by_kind(docs, "ValidatingWebhookConfiguration")
    assert (
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        == f"rayop-system/{cert['metadata']['name']}"
    )
    args = args_of(docs)
    assert "--webhook-cert-dir=/etc/rayop/webhook-certs" in args
    assert not [a for a in args if a.startswith(("--webhook-secret", "--webhook-inject-ca-into"))]
    # No self-managed certificate permissions without self-managed certificates.
    assert not [
        r
        for r in by_kind(docs, "Role") + by_kind(docs, "ClusterRole")
        if r["metadata"]["name"] == "rayop-webhook"
    ]


def test_config_file_variant_renders_a_configuration_the_operator_reads(tmp_path: Path) -> None:
    from rayop.operator.config import OperatorConfig

    docs = render("config-file")
    (cm,) = by_kind(docs, "ConfigMap")
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    cfg = OperatorConfig.from_file(str(path))
    assert cfg.enable_metrics and cfg.reconcile_concurrency == 16
    assert cfg.log_file_path == "/var/log/rayop/operator.log"
    assert cfg.feature_enabled("RayClusterStatusConditions")
    assert "--config=/etc/rayop/config.yaml" in args_of(docs)
    assert by_kind(docs, "PodDisruptionBudget") and by_kind(docs, "ServiceMonitor")


def test_every_rendering_holds_no_wildcard_permission() -> None:
    for variant in VARIANTS:
        for role in [d for d in render(variant) if d["kind"] in ("ClusterRole", "Role")]:
            for use, _ in rbac.rules_of(role):
                assert "*" not in use, f"{variant}: {role['metadata']['name']} grants {use}"


def _dry_run(plane: ControlPlane, docs: list[dict[str, Any]]) -> str:
    text = "---\n".join(yaml.safe_dump(d) for d in docs)
    return plane.kubectl(
        "apply", "--server-side", "--dry-run=server", "--field-manager=helm", "-f", "-", input=text
    )


@pytest.mark.parametrize("variant", ["default", "namespaced"])
def test_rendered_chart_is_accepted_by_the_api_server(plane: ControlPlane, variant: str) -> None:
    tag = uuid.uuid4().hex[:6]
    ns = f"rayop-{tag}"
    namespaces = [ns] + ([f"team-a-{tag}", f"team-b-{tag}"] if variant == "namespaced" else [])
    for n in namespaces:
        plane.kubectl("create", "namespace", n)
    try:
        args = ["template", "rayop", str(CHART), "--namespace", ns]
        if variant == "namespaced":
            args += ["--set", f"watchNamespace={{{namespaces[1]},{namespaces[2]}}}"]
        docs = [d for d in yaml.safe_load_all(helm(*args)) if d]
        out = _dry_run(plane, docs)
        assert out.count("(server dry run)") == len(docs), out
    finally:
        for n in namespaces:
            plane.kubectl("delete", "namespace", n, "--wait=false")


def test_kustomize_base_is_accepted_by_the_api_server(plane: ControlPlane) -> None:
    # A dry run creates no namespace, and the namespaced objects need theirs.
    plane.kubectl("apply", "--server-side", "-f", str(REPO / "config" / "default" / "namespace.yaml"))
    try:
        out = plane.kubectl(
            "apply",
            "--server-side",
            "--dry-run=server",
            "--force-conflicts",
            "-k",
            str(REPO / "config" / "default"),
        )
    finally:
        plane.kubectl("delete", "namespace", "rayop-system", "--wait=false")
    kinds = [line.split("/")[0] for line in out.splitlines() if "(server dry run)" in line]
    assert (
        "deployment.apps" in kinds and "validatingwebhookconfiguration.admissionregistration.k8s.io" in kinds
    )
    crds = len(list((REPO / "config" / "crd").glob("*.yaml")))
    assert len([k for k in kinds if k == "customresourcedefinition.apiextensions.k8s.io"]) == crds
