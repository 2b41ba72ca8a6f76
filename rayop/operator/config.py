"""Operator configuration: KubeRay's flags (`ray-operator/main.go`), its `--config` file and env vars.

Flag names and defaults follow KubeRay's (docs/compatibility.md#operator), except `--reconcile-concurrency`,
which defaults to 16 here (KubeRay: 1) so one slow RayCluster does not hold up the others. As in KubeRay, a
`--config` file (config.ray.io/v1alpha1 Configuration) replaces the flags.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NoReturn

import yaml

from rayop.api import features
from rayop.api.features import parse_feature_gates as parse_feature_gates  # re-exported for the CLI
from rayop.controllers.settings import ControllerSettings

# One table of gates and defaults for the whole code base (`ray-operator/pkg/features/features.go`).
FEATURE_GATE_DEFAULTS: Mapping[str, bool] = features.DEFAULT_GATES

# The parsed configuration, as JSON, from `rayop operator` to the interpreter it execs (exec_operator).
CONFIG_ENV = "RAYOP_OPERATOR_CONFIG_JSON"

_TRUE = {"true", "1", "yes", "on", "t"}
_FALSE = {"false", "0", "no", "off", "f", ""}


def parse_bool(value: str | bool, what: str = "value") -> bool:
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"{what}: {value!r} is not a boolean")


def parse_namespaces(value: str | list[str] | None) -> list[str]:
    if not value:
        return []
    parts = value.split(",") if isinstance(value, str) else value
    return [p.strip() for p in parts if p and p.strip()]


@dataclass
class OperatorConfig:
    metrics_addr: str = ":8080"
    probe_addr: str = ":8082"
    enable_leader_election: bool = True
    leader_election_namespace: str = ""
    leader_election_id: str = "ray-operator-leader"
    watch_namespaces: list[str] = field(default_factory=list)
    # bench/raycluster_scale.py: 16 async workers beat 4 and 64 at 100 clusters x 11 pods.
    reconcile_concurrency: int = 16
    # No client-side rate limit unless asked for (KubeRay: --qps 100 --burst 200). The API server's
    # Priority and Fairness protects it, and the client waits out its 429s (README, "Configuration").
    qps: float = -1.0
    burst: int = 200
    log_stdout_encoder: str = "json"
    log_file_path: str = ""
    log_file_encoder: str = "json"
    log_level: str = "info"
    feature_gates: dict[str, bool] = field(default_factory=dict)
    kubeconfig: str | None = None
    use_kubernetes_proxy: bool = False
    enable_metrics: bool = False
    batch_scheduler: str = ""
    config_file: str = ""
    # The validating webhook runs inside the operator by default (KubeRay's is off by default and
    # checks almost nothing; rayop checks every rule at admission). ENABLE_WEBHOOKS=false turns it off.
    enable_webhook: bool = field(
        default_factory=lambda: os.environ.get("ENABLE_WEBHOOKS", "").lower() != "false"
    )
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 9443
    webhook_cert_dir: str = ""
    webhook_url: str = ""
    webhook_service: str = ""
    webhook_secret: str = ""
    # Keep a rayop.io RayWorkerGroup per worker group, the scale target of `kubectl scale` and the HPA
    # (docs/scaling.md). Off for a cluster where rayop's own CRD is not installed.
    enable_worker_groups: bool = True
    # Keep a rayop.io RayServeDeployment per Serve deployment of a RayService, the scale target of
    # `kubectl scale` and the HPA for its replicas (docs/scaling.md). Off where its CRD is not installed.
    enable_serve_deployments: bool = True
    # The web view (rayop.ui): off unless given a port; on a loopback address unless given another host,
    # and then only with TokenReview/SubjectAccessReview checks of every caller.
    ui_port: int = 0
    ui_host: str = "127.0.0.1"
    ui_cert_dir: str = ""
    webhook_inject_ca_into: str = ""
    # Config-file-only settings (headSidecarContainers, defaultContainerEnvs, ...), as read.
    extra: dict[str, Any] = field(default_factory=dict)
    # The operator's environment (ENABLE_RANDOM_POD_DELETE, RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV, ...).
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def __post_init__(self) -> None:
        if self.reconcile_concurrency < 1:
            raise ValueError("--reconcile-concurrency must be at least 1")
        for enc in (self.log_stdout_encoder, self.log_file_encoder):
            if enc not in ("json", "console"):
                raise ValueError(f"invalid encoder {enc!r} (must be 'json' or 'console')")
        unknown = set(self.feature_gates) - set(FEATURE_GATE_DEFAULTS)
        if unknown:
            raise ValueError(f"unrecognized feature gate: {', '.join(sorted(unknown))}")

    def to_json(self) -> str:
        return json.dumps({f.name: _plain(getattr(self, f.name)) for f in fields(self)})

    @classmethod
    def from_json(cls, raw: str) -> OperatorConfig:
        return cls(**json.loads(raw))

    def controller_settings(self) -> ControllerSettings:
        """The controllers' settings: KubeRay's env vars, the feature gates, the flags, and the config
        file's sidecar containers, default env vars, labels and annotations."""
        gates = self.all_feature_gates()
        settings = ControllerSettings.from_env(self.env, gates)
        file_knobs: dict[str, Any] = {
            "head_sidecar_containers": self.extra.get("headSidecarContainers"),
            "worker_sidecar_containers": self.extra.get("workerSidecarContainers"),
            "default_container_envs": self.extra.get("defaultContainerEnvs"),
            "default_pod_labels": self.extra.get("defaultPodLabels"),
            "default_pod_annotations": self.extra.get("defaultPodAnnotations"),
        }
        options = replace(settings.raycluster.build_options, **{k: v for k, v in file_knobs.items() if v})
        return replace(
            settings,
            raycluster=replace(settings.raycluster, build_options=options),
            rayjob=replace(settings.rayjob, use_kubernetes_proxy=self.use_kubernetes_proxy),
            rayservice=replace(
                settings.rayservice,
                use_kubernetes_proxy=self.use_kubernetes_proxy,
                machine=replace(
                    settings.rayservice.machine, serve_deployment_targets=self.enable_serve_deployments
                ),
            ),
            workergroups=replace(
                settings.workergroups,
                enabled=self.enable_worker_groups,
                use_kubernetes_proxy=self.use_kubernetes_proxy,
            ),
            reconcile_concurrency=self.reconcile_concurrency,
            enable_metrics=self.enable_metrics,
        )

    def feature_enabled(self, name: str) -> bool:
        if name not in FEATURE_GATE_DEFAULTS:
            raise KeyError(f"unknown feature gate {name}")
        return self.feature_gates.get(name, FEATURE_GATE_DEFAULTS[name])

    def all_feature_gates(self) -> dict[str, bool]:
        return {name: self.feature_enabled(name) for name in FEATURE_GATE_DEFAULTS}

    def env_bool(self, name: str, default: bool = False) -> bool:
        """KubeRay reads its boolean env vars as `== "true"` (case-insensitive in a few places)."""
        value = self.env.get(name)
        if value is None:
            return default
        return value.strip().lower() == "true"

    def env_int(self, name: str, default: int) -> int:
        value = self.env.get(name)
        try:
            return int(value) if value not in (None, "") else default
        except ValueError:
            return default

    @classmethod
    def from_file(cls, path: str, **overrides: Any) -> OperatorConfig:
        """Read a config.ray.io/v1alpha1 Configuration (the flags it covers are then ignored)."""
        doc = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: not a Configuration object")
        known = {
            "metricsAddr": "metrics_addr",
            "probeAddr": "probe_addr",
            "enableLeaderElection": "enable_leader_election",
            "leaderElectionNamespace": "leader_election_namespace",
            "reconcileConcurrency": "reconcile_concurrency",
            "watchNamespace": "watch_namespaces",
            "logFile": "log_file_path",
            "logFileEncoder": "log_file_encoder",
            "logStdoutEncoder": "log_stdout_encoder",
            "useKubernetesProxy": "use_kubernetes_proxy",
            "batchScheduler": "batch_scheduler",
            "enableMetrics": "enable_metrics",
            "qps": "qps",
            "burst": "burst",
            "featureGates": "feature_gates",
            "enableRayWorkerGroups": "enable_worker_groups",
            "enableRayServeDeployments": "enable_serve_deployments",
        }
        kw: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for k, v in doc.items():
            if k in ("apiVersion", "kind"):
                continue
            if k in known:
                kw[known[k]] = v
            else:
                extra[k] = v
        if "watch_namespaces" in kw:
            kw["watch_namespaces"] = parse_namespaces(kw["watch_namespaces"])
        if "feature_gates" in kw:
            fg = kw["feature_gates"]
            if isinstance(fg, list):  # Helm-style [{name, enabled}]
                fg = {str(i["name"]): i.get("enabled", False) for i in fg}
            kw["feature_gates"] = parse_feature_gates(fg)
        for b in (
            "enable_leader_election",
            "use_kubernetes_proxy",
            "enable_metrics",
            "enable_worker_groups",
            "enable_serve_deployments",
        ):
            if b in kw:
                kw[b] = parse_bool(kw[b], b)
        kw.update(overrides)
        return cls(config_file=path, extra=extra, **kw)


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def exec_operator(config: OperatorConfig, argv: list[str]) -> NoReturn:
    """Replace this process (same PID, same stdio) with `python -m rayop.operator`, handing it `config`.

    The CLI that parsed the flags (typer, and with it click, rich and pydantic) would otherwise stay
    resident for the operator's whole life: about 9 MiB of its RSS. `argv` only labels the new process
    (what `ps` shows); the configuration travels in CONFIG_ENV, which the new process removes at once.
    `-P`: the working directory is not put on the new interpreter's import path.
    """
    os.environ[CONFIG_ENV] = config.to_json()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-P", "-m", "rayop.operator", *argv])
