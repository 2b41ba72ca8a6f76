"""The install artefacts as files: the chart's CRDs, the kustomize base, the rendered webhook
configuration and operator flags, the Dockerfile, and the documentation of every value.

config/default/rayop.yaml is the chart rendered with default values (tests/integration/test_chart.py
fails when it is stale), so these tests read it instead of running helm.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from rayop.api.features import DEFAULT_GATES
from rayop.cli.main import app
from rayop.operator.config import OperatorConfig
from rayop.webhook.registration import build_webhook_configuration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "rayop"
RENDERED = REPO / "config" / "default" / "rayop.yaml"


def rendered(kind: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(RENDERED.read_text()) if d and d["kind"] == kind]


def test_chart_crds_are_a_copy_of_config_crd() -> None:
    ours = {p.name: p.read_bytes() for p in (REPO / "config" / "crd").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert set(chart) == set(ours), (
        "charts/rayop/crds/ lists other files than config/crd/: run `make chart-crds`"
    )
    stale = sorted(n for n in ours if chart[n] != ours[n])
    assert not stale, f"charts/rayop/crds/{stale} differ from config/crd/: run `make chart-crds`"


def test_crd_kustomization_lists_every_crd() -> None:
    k = yaml.safe_load((REPO / "config" / "crd" / "Kustomization").read_text())
    assert sorted(k["resources"]) == sorted(p.name for p in (REPO / "config" / "crd").glob("*.yaml"))


def test_rendered_webhook_configuration_matches_what_the_operator_registers() -> None:
    (vwc,) = rendered("ValidatingWebhookConfiguration")
    svc = {"namespace": "rayop-system", "name": "rayop-webhook", "port": 443}
    want = build_webhook_configuration(svc, b"", name=vwc["metadata"]["name"])
    assert [h["name"] for h in vwc["webhooks"]] == [h["name"] for h in want["webhooks"]]
    for got, exp in zip(vwc["webhooks"], want["webhooks"], strict=True):
        assert "caBundle" not in got["clientConfig"], "the operator writes the caBundle, not Helm"
        for key in ("clientConfig", "rules", "failurePolicy", "sideEffects", "timeoutSeconds", "matchPolicy"):
            assert got[key] == exp[key], f"{got['name']}.{key}"


def _operator_args() -> list[str]:
    (dep,) = rendered("Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["rayop", "operator"]
    return [a.replace("$(POD_NAMESPACE)", "rayop-system") for a in c["args"]]


def test_rendered_operator_flags_are_the_operators(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[OperatorConfig] = []
    monkeypatch.setattr("rayop.operator.main.main", lambda cfg: seen.append(cfg) or 0)
    result = CliRunner().invoke(app, ["operator", *_operator_args()])
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert cfg.enable_leader_election and cfg.enable_metrics and cfg.enable_webhook
    assert (cfg.metrics_addr, cfg.probe_addr, cfg.webhook_port) == (":8080", ":8082", 9443)
    assert cfg.webhook_service == "rayop-system/rayop-webhook:443"
    assert cfg.webhook_secret == "rayop-system/rayop-webhook-cert"
    assert cfg.webhook_inject_ca_into == "rayop-validating-webhook"
    assert cfg.reconcile_concurrency == 16 and not cfg.watch_namespaces


def test_chart_feature_gates_are_known_to_the_operator() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert {g["name"] for g in values["featureGates"]} <= set(DEFAULT_GATES)


# Values passed to Kubernetes as a whole object: documented as one value.
PASSTHROUGH = {"resources", "podSecurityContext", "securityContext"}


def _leaf_keys(d: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and key not in PASSTHROUGH:
            out += _leaf_keys(v, key + ".")
        else:
            out.append(key)
    return out


@pytest.mark.parametrize("doc", ["charts/rayop/README.md", "docs/configuration.md"])
def test_every_value_is_documented(doc: str) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    text = (REPO / doc).read_text()
    keys = [*_leaf_keys(values), "useKubernetesProxy"]
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"{doc} does not document the values {missing}"


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, rest = line.partition(" ")
            out.append((instr.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_non_root_with_the_operator_entrypoint() -> None:
    steps = _dockerfile()
    froms = [i for i, (ins, _) in enumerate(steps) if ins == "FROM"]
    assert len(froms) >= 2, "a build stage and a runtime stage"
    final = steps[froms[-1] :]
    users = [arg for ins, arg in final if ins == "USER"]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root") and uid.isdigit(), f"USER {users[-1]} must be a numeric non-root uid"
    (entry,) = [arg for ins, arg in final if ins == "ENTRYPOINT"]
    assert yaml.safe_load(entry) == ["rayop", "operator"]
    assert not [arg for ins, arg in final if ins == "RUN"], "the runtime stage only copies the build"
    runs = [arg for ins, arg in steps if ins == "RUN"]
    assert runs and all("scripts/install-rayop.sh" in r for r in runs), "build steps call the one script"


def test_dockerfile_base_image_is_the_pinned_one() -> None:
    pinned = re.search(r"^RAYOP_PYTHON_IMAGE=(.+)$", (REPO / "versions.env").read_text(), re.M)
    assert pinned
    (arg,) = [a for ins, a in _dockerfile() if ins == "ARG" and a.startswith("PYTHON_IMAGE=")]
    assert arg == f"PYTHON_IMAGE={pinned.group(1).strip()}"


def test_chart_runs_the_operator_with_a_read_only_root_filesystem() -> None:
    (dep,) = rendered("Deployment")
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080, "health": 8082, "webhook-server": 9443}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


def test_every_operator_flag_and_env_var_is_documented() -> None:
    import typer.main

    from rayop.api import constants as C

    text = (REPO / "docs" / "configuration.md").read_text()
    group = typer.main.get_command(app)
    operator = group.commands["operator"]  # type: ignore[attr-defined]
    flags = [o for p in operator.params for o in p.opts if o.startswith("--") and o != "--help"]
    missing = [f for f in flags if f"`{f}`" not in text]
    env = [v for k, v in vars(C).items() if k.startswith("OPENV_")]
    missing += [e for e in env if f"`{e}`" not in text]
    assert not missing, f"docs/configuration.md does not document {missing}"
