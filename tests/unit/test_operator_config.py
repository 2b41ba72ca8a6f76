"""`rayop operator` flags, the --config file, feature gates and env helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import rayop.operator.main as operator_main
from rayop.api.kinds import RAYCLUSTERS
from rayop.cli.main import app
from rayop.operator.config import OperatorConfig, parse_feature_gates
from rayop.runtime.client import ApiClient, ClientConfig


def invoke(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, OperatorConfig | None, str]:
    got: list[OperatorConfig] = []

    def fake_main(cfg: OperatorConfig) -> int:
        got.append(cfg)
        return 0

    monkeypatch.setattr(operator_main, "main", fake_main)
    r = CliRunner().invoke(app, ["operator", *args])
    return r.exit_code, (got[0] if got else None), r.output


def test_defaults_match_kuberay_except_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    code, cfg, _ = invoke(monkeypatch)
    assert code == 0 and cfg is not None
    assert (cfg.metrics_addr, cfg.probe_addr) == (":8080", ":8082")
    assert cfg.enable_leader_election is True
    assert cfg.leader_election_id == "ray-operator-leader"
    # Deliberately not KubeRay's --qps 100: no client-side rate limit unless asked for.
    assert (cfg.qps, cfg.burst) == (-1.0, 200)
    assert cfg.log_stdout_encoder == "json"
    assert cfg.watch_namespaces == []
    assert cfg.reconcile_concurrency == 16
    assert cfg.feature_enabled("RayClusterStatusConditions") and not cfg.feature_enabled("RayCronJob")


def test_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    code, cfg, out = invoke(
        monkeypatch,
        "--enable-leader-election=false",
        "--use-kubernetes-proxy",
        "true",
        "--watch-namespace",
        "a, b,",
        "--feature-gates",
        "RayCronJob=true,RayClusterStatusConditions=false",
        "--reconcile-concurrency",
        "2",
        "--qps",
        "5",
        "--burst",
        "7",
        "--log-stdout-encoder",
        "console",
        "--metrics-addr",
        "0",
    )
    assert code == 0, out
    assert cfg is not None
    assert cfg.enable_leader_election is False and cfg.use_kubernetes_proxy is True
    assert cfg.watch_namespaces == ["a", "b"]
    assert cfg.feature_enabled("RayCronJob") and not cfg.feature_enabled("RayClusterStatusConditions")
    assert (cfg.reconcile_concurrency, cfg.qps, cfg.burst) == (2, 5.0, 7)
    assert cfg.log_stdout_encoder == "console" and cfg.metrics_addr == "0"


@pytest.mark.parametrize(
    ("flags", "limited"), [((), False), (("--qps", "-1"), False), (("--qps", "100"), True)]
)
def test_client_rate_limit_only_when_asked_for(
    monkeypatch: pytest.MonkeyPatch, flags: tuple[str, ...], limited: bool
) -> None:
    code, cfg, out = invoke(monkeypatch, *flags)
    assert code == 0, out
    assert cfg is not None
    monkeypatch.setattr(operator_main, "load_config", lambda _: ClientConfig(server="https://127.0.0.1:1"))
    client = operator_main.make_client(cfg)
    assert (client.bucket.qps > 0) is limited
    if limited:
        assert (client.bucket.qps, client.bucket.burst) == (100.0, 200)


@pytest.mark.parametrize(
    "args",
    [
        ["--feature-gates", "NoSuchGate=true"],
        ["--feature-gates", "RayCronJob"],
        ["--enable-leader-election=maybe"],
        ["--log-stdout-encoder", "xml"],
        ["--reconcile-concurrency", "0"],
    ],
)
def test_bad_flags_exit_2(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    code, cfg, _ = invoke(monkeypatch, *args)
    assert code == 2 and cfg is None


def test_config_file(tmp_path: Path) -> None:
    f = tmp_path / "config.yaml"
    f.write_text(
        "apiVersion: config.ray.io/v1alpha1\n"
        "kind: Configuration\n"
        "metricsAddr: ':9090'\n"
        "enableLeaderElection: false\n"
        "watchNamespace: 'x,y'\n"
        "reconcileConcurrency: 3\n"
        "featureGates:\n- {name: RayCronJob, enabled: true}\n"
        "headSidecarContainers:\n- {name: side, image: busybox}\n"
    )
    cfg = OperatorConfig.from_file(str(f))
    assert cfg.metrics_addr == ":9090" and cfg.enable_leader_election is False
    assert cfg.watch_namespaces == ["x", "y"] and cfg.reconcile_concurrency == 3
    assert cfg.feature_enabled("RayCronJob")
    assert cfg.extra["headSidecarContainers"] == [{"name": "side", "image": "busybox"}]


def test_env_helpers() -> None:
    cfg = OperatorConfig(
        env={"ENABLE_RANDOM_POD_DELETE": "TRUE", "RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV": "60"}
    )
    assert cfg.env_bool("ENABLE_RANDOM_POD_DELETE")
    assert not cfg.env_bool("ENABLE_INIT_CONTAINER_INJECTION")
    assert cfg.env_bool("ENABLE_INIT_CONTAINER_INJECTION", default=True)
    assert cfg.env_int("RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV", 300) == 60
    assert cfg.env_int("MISSING", 300) == 300


def test_parse_feature_gates_mapping() -> None:
    assert parse_feature_gates({"RayCronJob": "true"}) == {"RayCronJob": True}
    assert parse_feature_gates("") == {}


@pytest.mark.parametrize("ui_port", [0, 8099])
def test_default_operator_wires_without_conflicting_caches(ui_port: int) -> None:
    """The webhook, every controller and the web view share one informer per kind: wiring them in the
    operator's order must not ask for a shared cache with two different transforms."""
    # The webhook is on by default outside tests (tests/conftest.py turns it off for the test process).
    cfg = OperatorConfig(ui_port=ui_port, enable_webhook=True)
    assert cfg.enable_worker_groups
    client = ApiClient(ClientConfig(server="https://127.0.0.1:1"))
    manager = operator_main.build_manager(cfg, client)
    assert manager.informer(RAYCLUSTERS).transform is not None


def test_config_survives_the_exec_as_json(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        "apiVersion: config.ray.io/v1alpha1\nkind: Configuration\nreconcileConcurrency: 3\n"
        "watchNamespace: x,y\nfeatureGates: {RayCronJob: true}\n"
        "defaultContainerEnvs: [{name: A, value: b}]\n"
    )
    cfg = OperatorConfig.from_file(str(f), kubeconfig="/k")
    assert OperatorConfig.from_json(cfg.to_json()) == cfg


def test_entry_point_execs_a_fresh_interpreter_for_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    """`rayop operator` replaces itself with `python -P -m rayop.operator`, the parsed flags in one env var,
    so the CLI framework is not resident in the operator; in-process invocations (CliRunner) never exec."""
    import os
    import sys

    import rayop.cli.main as cli_main
    import rayop.cli.operator as cli_operator
    import rayop.operator.config as config_mod

    calls: list[tuple[str, list[str]]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        calls.append((path, argv))
        raise SystemExit(0)

    monkeypatch.setattr(config_mod.os, "execv", fake_execv)
    monkeypatch.setattr(cli_operator, "REEXEC", False)
    monkeypatch.setenv("RAYOP_OPERATOR_CONFIG_JSON", "")
    flags = ["operator", "--watch-namespace", "a,b", "--qps", "5", "--enable-leader-election"]
    monkeypatch.setattr(sys, "argv", ["rayop", *flags])
    with pytest.raises(SystemExit):
        cli_main.main()
    assert calls == [(sys.executable, [sys.executable, "-P", "-m", "rayop.operator", *flags])]
    cfg = OperatorConfig.from_json(os.environ[config_mod.CONFIG_ENV])
    assert cfg.watch_namespaces == ["a", "b"] and cfg.qps == 5.0 and cfg.enable_leader_election is True
