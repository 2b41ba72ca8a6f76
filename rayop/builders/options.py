"""Operator-level knobs that change what the builders produce (docs/compatibility.md#operator).

KubeRay reads these from process env vars deep inside its builders; rayop reads them once into a frozen value
and passes it down, so builders stay pure and tests can vary them without touching os.environ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rayop.api import constants as C
from rayop.api import features
from rayop.base.types import Obj

CREATOR_CRDS = (C.KIND_RAYCLUSTER, C.KIND_RAYJOB, C.KIND_RAYSERVICE)


def _env_true(environ: Mapping[str, str], key: str) -> bool:
    # KubeRay: strings.ToLower(os.Getenv(key)) == "true"
    return environ.get(key, "").lower() == "true"


def _env_not_false(environ: Mapping[str, str], key: str) -> bool:
    # KubeRay: anything but "false" (case-insensitive) keeps the feature on.
    return environ.get(key, "").lower() != "false"


@dataclass(frozen=True)
class BuildOptions:
    cluster_domain: str = C.DEFAULT_CLUSTER_DOMAIN
    enable_init_container_injection: bool = True
    enable_probes_injection: bool = True
    enable_login_shell: bool = False
    deterministic_head_pod_name: bool = False
    head_cluster_ip_service: bool = False
    default_container_envs: list[Obj] = field(default_factory=list)
    default_pod_labels: dict[str, str] = field(default_factory=dict)
    default_pod_annotations: dict[str, str] = field(default_factory=dict)
    head_sidecar_containers: list[Obj] = field(default_factory=list)
    worker_sidecar_containers: list[Obj] = field(default_factory=list)
    feature_gates: dict[str, bool] = field(default_factory=lambda: dict(features.DEFAULT_GATES))
    # Overrides the creator derived from the RayCluster's `ray.io/originated-from-crd` label when set.
    creator_crd: str | None = None
    kuberay_version: str = C.KUBERAY_VERSION

    def gate(self, name: str) -> bool:
        return bool(features.resolve_gates(self.feature_gates).get(name, False))

    def with_gates(self, gates: Mapping[str, bool]) -> BuildOptions:
        return replace(self, feature_gates=features.resolve_gates({**self.feature_gates, **gates}))

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        feature_gates: Mapping[str, bool] | None = None,
        **overrides: Any,
    ) -> BuildOptions:
        """Read KubeRay's operator env vars; config-file-only knobs (sidecars, default envs...) via overrides."""
        values: dict[str, Any] = {
            "cluster_domain": environ.get(C.OPENV_CLUSTER_DOMAIN) or C.DEFAULT_CLUSTER_DOMAIN,
            "enable_init_container_injection": _env_not_false(
                environ, C.OPENV_ENABLE_INIT_CONTAINER_INJECTION
            ),
            "enable_probes_injection": _env_not_false(environ, C.OPENV_ENABLE_PROBES_INJECTION),
            "enable_login_shell": _env_true(environ, C.OPENV_ENABLE_LOGIN_SHELL),
            "deterministic_head_pod_name": _env_true(environ, C.OPENV_ENABLE_DETERMINISTIC_HEAD_POD_NAME),
            "head_cluster_ip_service": _env_true(environ, C.OPENV_ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE),
            "feature_gates": features.resolve_gates(feature_gates),
        }
        values.update(overrides)
        return cls(**values)
