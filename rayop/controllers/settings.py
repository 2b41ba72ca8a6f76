"""Settings of the controllers, one dataclass per controller, built by `rayop.operator.config`.

Each field says what it changes. Values come from the operator's flags, its `--config` file, its
environment variables (KubeRay's names) and its feature gates; nothing here reads the process
environment, so tests build settings directly and vary one field with `dataclasses.replace`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from rayop.api import constants as C
from rayop.api import features
from rayop.builders.options import BuildOptions
from rayop.controllers.rayjob_machine import RayJobConfig
from rayop.controllers.rayservice_machine import RayServiceConfig
from rayop.ray.serve import PodResolver

DEFAULT_REQUEUE_SECONDS = 300


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(environ.get(name, ""))
    except ValueError:
        return default


def _env_true(environ: Mapping[str, str], name: str) -> bool:
    # KubeRay: strings.ToLower(os.Getenv(name)) == "true"
    return environ.get(name, "").lower() == "true"


@dataclass(frozen=True)
class RayClusterSettings:
    """Knobs of the RayCluster controller."""

    gates: Mapping[str, bool] = field(default_factory=features.resolve_gates)
    """Feature gates, resolved against KubeRay's defaults."""

    build_options: BuildOptions = field(default_factory=BuildOptions)
    """What the pod, service and job builders produce (KubeRay's operator env vars and the config file's
    sidecars, default env vars, labels and annotations)."""

    requeue_seconds: float = DEFAULT_REQUEUE_SECONDS
    """Resync period of a settled cluster (`RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV`, KubeRay: 300)."""

    gcs_ft_redis_cleanup: bool = True
    """Add the Redis cleanup finalizer to GCS FT clusters (`ENABLE_GCS_FT_REDIS_CLEANUP` != "false")."""

    random_pod_delete: bool = False
    """Scale down by deleting random workers, as KubeRay before workersToDelete (`ENABLE_RANDOM_POD_DELETE`)."""

    pod_create_concurrency: int = 32
    """Pod creations of one reconcile in flight at once."""

    pod_batch: int = 250
    """At most this many Pods created per reconcile; a larger scale-up continues in the next pass, so one
    large cluster never holds a worker while others wait."""

    status_write_interval: float = 1.0
    """Seconds a status change that is only progress (ready worker counts, head IP, HeadPodReady) waits
    after the cluster's last status write; doubled for each progress-only write in a row. News (state,
    reason, desired counts, suspension, errors, the ready workers reaching the desired count) is written
    at once. Pods that turn ready one after another
    thus make a few writes, not one each (bench/kuberay_peer.py counts them)."""

    status_write_interval_max: float = 30.0
    """The longest wait of a progress-only status change."""

    def gate(self, name: str, default: bool = False) -> bool:
        return bool(self.gates.get(name, default))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], gates: Mapping[str, bool] | None = None
    ) -> RayClusterSettings:
        """The settings KubeRay reads from its environment (`BuildOptions` too; config-file knobs are laid
        over them by `rayop.operator.config`)."""
        g = features.resolve_gates(gates)
        return cls(
            gates=g,
            build_options=BuildOptions.from_env(environ, feature_gates=g),
            requeue_seconds=float(
                _env_int(environ, C.OPENV_RAYCLUSTER_DEFAULT_REQUEUE_SECONDS, DEFAULT_REQUEUE_SECONDS)
            ),
            gcs_ft_redis_cleanup=environ.get(C.OPENV_ENABLE_GCS_FT_REDIS_CLEANUP, "").lower() != "false",
            random_pod_delete=_env_true(environ, C.OPENV_ENABLE_RANDOM_POD_DELETE),
        )


@dataclass(frozen=True)
class RayJobSettings:
    """Knobs of the RayJob controller."""

    machine: RayJobConfig = field(default_factory=RayJobConfig)
    """What the RayJob state machine reads (env vars such as `RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS`)."""

    use_kubernetes_proxy: bool = False
    """Reach Ray dashboards through the API server's service proxy (`--use-kubernetes-proxy`)."""

    dashboard_resolver: Callable[[str], str] | None = None
    """Maps a dashboard address (`<svc>.<ns>.svc.<domain>:<port>`) to the URL to call, where cluster DNS
    does not exist (tests, a local plane without the proxy)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str], gates: Mapping[str, bool] | None = None) -> RayJobSettings:
        g = features.resolve_gates(gates)
        machine = RayJobConfig(
            cluster_domain=environ.get(C.OPENV_CLUSTER_DOMAIN) or C.DEFAULT_CLUSTER_DOMAIN,
            transition_grace_seconds=_env_int(environ, C.OPENV_RAYJOB_TRANSITION_GRACE, 300),
            status_check_timeout_seconds=_env_int(environ, C.OPENV_RAYJOB_STATUS_CHECK_TIMEOUT, 300),
            delete_rayjob_after_finish=_env_true(environ, C.OPENV_DELETE_RAYJOB_CR_AFTER_JOB_FINISHES),
            deletion_policy_gate=g.get(features.RAY_JOB_DELETION_POLICY, True),
            sidecar_submitter_restart=g.get(features.SIDECAR_SUBMITTER_RESTART, False),
            login_shell=_env_true(environ, C.OPENV_ENABLE_LOGIN_SHELL),
            head_cluster_ip_service=_env_true(environ, C.OPENV_ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE),
            gates=g,
        )
        return cls(machine=machine)


@dataclass(frozen=True)
class RayServiceSettings:
    """Knobs of the RayService controller."""

    machine: RayServiceConfig = field(default_factory=RayServiceConfig)
    """What the RayService state machine reads (`ENABLE_ZERO_DOWNTIME`, the gates, the drain cap...)."""

    use_kubernetes_proxy: bool = False
    """Reach dashboards and pods through the API server's service and pod proxies (`--use-kubernetes-proxy`)."""

    dashboard_resolver: Callable[[str], str] | None = None
    """Maps a dashboard address (`<svc>.<ns>.svc.<domain>:<port>`) to the URL to call (tests)."""

    pod_resolver: PodResolver | None = None
    """Maps (namespace, pod, pod IP, port) to the base URL of that pod port (tests)."""

    proxy_timeouts_before_down: int = 3
    """A head whose Serve proxy gives no answer this many times in a row is taken out of the serve Service
    (a definite error takes it out at once; KubeRay also on the first timeout)."""

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], gates: Mapping[str, bool] | None = None
    ) -> RayServiceSettings:
        g = features.resolve_gates(gates)
        machine = RayServiceConfig(
            zero_downtime=environ.get(C.OPENV_ENABLE_ZERO_DOWNTIME, "").lower() != "false",
            gates=g,
            build_options=BuildOptions.from_env(environ, feature_gates=g),
        )
        return cls(machine=machine)


@dataclass(frozen=True)
class WorkerGroupSettings:
    """Knobs of the RayWorkerGroup controller: worker groups as scale targets (docs/scaling.md)."""

    enabled: bool = True
    """Keep a RayWorkerGroup per worker group (`--enable-rayworkergroups`; needs the rayop.io CRD)."""

    use_kubernetes_proxy: bool = False
    """Reach Ray dashboards through the API server's service proxy (`--use-kubernetes-proxy`)."""

    dashboard_resolver: Callable[[str], str] | None = None
    """Maps a dashboard address (`<svc>.<ns>.svc.<domain>:<port>`) to the URL to call, where cluster DNS
    does not exist (tests, a local plane without the proxy)."""

    cluster_domain: str = C.DEFAULT_CLUSTER_DOMAIN
    """Domain of Service names (`CLUSTER_DOMAIN`): drain Pods dial `<head-svc>.<ns>.svc.<domain>`."""

    retry_seconds: float = 10.0
    """How soon a scale-down that waits for busy workers asks Ray again."""

    drains_in_flight: int = 8
    """Drain Pods one group runs at once; a larger scale-down continues as they finish."""

    drain_deadline_seconds: int = 120
    """activeDeadlineSeconds of a drain Pod: one that cannot reach the GCS by then counts as failed."""

    status_write_interval: float = 1.0
    """As RayClusterSettings.status_write_interval: a status change that is only more (or fewer) ready
    replicas, short of all, waits this long after the group's last status write, doubled for each such
    write in a row."""

    status_write_interval_max: float = 30.0
    """The longest wait of a progress-only status change."""

    calm_wait_max: float = 5.0
    """Seconds a RayWorkerGroup's creation or status write may wait while the operator's client has a
    burst of requests in flight (common.CalmGate): a new RayCluster's Pods go first. 0: never wait."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerGroupSettings:
        return cls(cluster_domain=environ.get(C.OPENV_CLUSTER_DOMAIN) or C.DEFAULT_CLUSTER_DOMAIN)


@dataclass(frozen=True)
class ControllerSettings:
    """Everything the controllers' `setup` functions read."""

    raycluster: RayClusterSettings = field(default_factory=RayClusterSettings)
    rayjob: RayJobSettings = field(default_factory=RayJobSettings)
    rayservice: RayServiceSettings = field(default_factory=RayServiceSettings)
    workergroups: WorkerGroupSettings = field(default_factory=WorkerGroupSettings)

    reconcile_concurrency: int = 16
    """Workers per controller (`--reconcile-concurrency`; KubeRay: 1)."""

    enable_metrics: bool = False
    """Serve the `kuberay_*` gauges (`enableMetrics` in KubeRay's config)."""

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], gates: Mapping[str, bool] | None = None
    ) -> ControllerSettings:
        """Settings as an operator with this environment and these gates has them (tests vary a field
        with `dataclasses.replace`)."""
        return cls(
            raycluster=RayClusterSettings.from_env(environ, gates),
            rayjob=RayJobSettings.from_env(environ, gates),
            rayservice=RayServiceSettings.from_env(environ, gates),
            workergroups=WorkerGroupSettings.from_env(environ),
        )
