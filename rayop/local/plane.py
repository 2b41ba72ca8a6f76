"""The embedded control plane: etcd + kube-apiserver (+ kube-controller-manager) as local processes.

Used by the test fixtures and by `rayop local up`. Everything runs on loopback with free ports picked at
start, so several planes run side by side. Processes are started in their own sessions and stopped by
the PIDs recorded in the state directory, never by name. Start order: etcd, then kube-apiserver
(once etcd answers), then the CRDs (rayop's, and the Gateway API's standard channel for the RayService
incremental upgrade), then kube-controller-manager, so its garbage collector knows the CRDs' kinds from
its first discovery and collects their dependents at once. The API server's flags for reaching
webhooks, APIServices and node agents are explained in docs/local-plane.md.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rayop.base.files import write_private
from rayop.base.procs import cmdline, pid_alive
from rayop.local.pki import FRONT_PROXY_CLIENT_CN, PlanePKI, ensure_pki

REPO_ROOT = Path(__file__).resolve().parents[2]


class PlaneError(RuntimeError):
    """The plane could not start or is not usable; the message says why (with a log tail)."""


def default_k8s_version() -> str:
    env = os.environ.get("RAYOP_K8S_VERSION")
    if env:
        return env
    vfile = REPO_ROOT / "versions.env"
    if vfile.exists():
        for line in vfile.read_text().splitlines():
            if line.startswith("RAYOP_K8S_VERSION="):
                return line.split("=", 1)[1].strip()
    return "v1.36.3"


def cache_dir() -> Path:
    return Path(os.environ.get("RAYOP_CACHE_DIR", str(Path.home() / ".cache" / "rayop")))


def _pinned(name: str, fallback: str) -> str:
    """A version from the environment, else versions.env, else `fallback`."""
    env = os.environ.get(name)
    if env:
        return env
    vfile = REPO_ROOT / "versions.env"
    if vfile.exists():
        for line in vfile.read_text().splitlines():
            if line.startswith(f"{name}="):
                return line.split("=", 1)[1].strip()
    return fallback


def gateway_api_version() -> str:
    return _pinned("RAYOP_GATEWAY_API_VERSION", "v1.6.3")


def gateway_api_crds(version: str | None = None, *, fetch: bool = True) -> list[Path]:
    """The Gateway API's standard-channel CRD files (and its upgrade-guarding admission policy), copied
    from the Go module sigs.k8s.io/gateway-api into the cache by scripts/fetch-gateway-api.sh, which runs
    first when they are missing."""
    version = version or gateway_api_version()
    folder = cache_dir() / "gateway-api" / version / "standard"
    if not (folder / ".complete").exists() and fetch:
        script = REPO_ROOT / "scripts" / "fetch-gateway-api.sh"
        env = dict(os.environ, RAYOP_GATEWAY_API_VERSION=version, RAYOP_CACHE_DIR=str(cache_dir()))
        proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise PlaneError(
                f"fetching the Gateway API CRDs failed (exit {proc.returncode}):\n{_tail(proc.stderr)}"
            )
    if not (folder / ".complete").exists():
        raise PlaneError(f"the Gateway API {version} CRDs are missing in {folder} (run `make deps`)")
    return sorted(folder.glob("*.yaml"))


def default_bin_dir() -> Path:
    env = os.environ.get("RAYOP_K8S_BIN_DIR")
    if env:
        return Path(env)
    return cache_dir() / "k8s" / default_k8s_version()


STOP_GRACE = {"node-agent": 90.0, "operator": 20.0}

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")


def ensure_binaries(bin_dir: Path | None = None, *, build: bool = True) -> Path:
    """Return the folder holding the control-plane binaries, building them first if they are missing."""
    bdir = bin_dir or default_bin_dir()
    missing = [b for b in BINARIES if not (bdir / b).exists()]
    if missing and build:
        script = REPO_ROOT / "scripts" / "build-k8s.sh"
        if not script.exists():
            raise PlaneError(f"missing {missing} in {bdir} and no build script at {script}")
        env = dict(os.environ, RAYOP_K8S_VERSION=default_k8s_version(), RAYOP_CACHE_DIR=str(cache_dir()))
        proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise PlaneError(
                f"building the control plane failed (exit {proc.returncode}):\n{_tail(proc.stderr)}"
            )
        missing = [b for b in BINARIES if not (bdir / b).exists()]
    if missing:
        raise PlaneError(f"control-plane binaries missing in {bdir}: {', '.join(missing)} (run `make deps`)")
    return bdir


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_free_ports(n: int, host: str = "127.0.0.1", avoid: Sequence[int] = ()) -> list[int]:
    """Ports the kernel just handed out and nobody holds. A port can still be taken between this call
    and the bind by the child; start() retries with fresh ports when that happens."""
    ports: list[int] = []
    socks = []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            p = s.getsockname()[1]
            if p not in avoid and p not in ports:
                ports.append(p)
    finally:
        for s in socks:
            s.close()
    return ports


def audit_args(policy_file: Path, log_path: Path) -> list[str]:
    """kube-apiserver flags for an audit log of the requests `policy_file` selects: JSON lines, each
    written before the request is answered (blocking mode), so whoever reads the log after a call
    returned finds the call in it."""
    return [
        f"--audit-policy-file={policy_file}",
        f"--audit-log-path={log_path}",
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
    ]


@dataclass
class PlaneOptions:
    state_dir: Path
    bin_dir: Path | None = None
    crd_dir: Path | None = None
    install_crds: bool = True
    # The Gateway API's CRDs (Gateway, HTTPRoute, ...), which the RayService incremental upgrade writes:
    # installed with the others when the operator's gate RayServiceIncrementalUpgrade is on (its default).
    gateway_api: bool = True
    controller_manager: bool = True
    # Addresses besides 127.0.0.1 that clients use to reach the API server (e.g. the node agent's
    # bridge gateway, which pods use); they go into the serving certificate.
    extra_ips: list[str] = field(default_factory=list)
    bind_address: str = "127.0.0.1"
    # With it on, pods get a service-account token volume like in a real cluster (the node agent
    # needs that); the tests keep it off, as envtest does, so pods need no ServiceAccount first.
    service_account_admission: bool = False
    etcd_fsync: bool = False
    extra_apiserver_args: list[str] = field(default_factory=list)
    # kube-controller-manager's HPA controller (see docs/local-plane.md): the upstream defaults, which a
    # test may shorten (e.g. {"sync-period": "2s", "downscale-stabilization": "10s"}). Keys are the flag
    # names after `--horizontal-pod-autoscaler-`.
    hpa: dict[str, str] = field(default_factory=dict)
    extra_kcm_args: list[str] = field(default_factory=list)
    start_timeout: float = 60.0


@dataclass
class PlaneState:
    """What is recorded on disk so another process (`rayop local down`) can find and stop the plane."""

    server: str
    kubeconfig: str
    ports: dict[str, int]
    pids: dict[str, int]
    version: str

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2)

    @classmethod
    def load(cls, path: Path) -> PlaneState:
        return cls(**json.loads(path.read_text()))


def stop_pid(pid: int, marker: str, grace: float = 10.0) -> None:
    """Stop one process we started: only if its command line still carries our marker (the state
    directory), so a recycled PID of somebody else's process is never signalled."""
    if not pid_alive(pid) or marker not in cmdline(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class ControlPlane:
    """One etcd + kube-apiserver (+ kube-controller-manager), started and stopped by this object."""

    def __init__(self, options: PlaneOptions) -> None:
        self.opts = options
        self.state_dir = options.state_dir.resolve()
        self.bin_dir = options.bin_dir or default_bin_dir()
        self.crd_dir = options.crd_dir or (REPO_ROOT / "config" / "crd")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._spawned: set[str] = set()
        self.ports: dict[str, int] = {}
        self.pki: PlanePKI | None = None
        self.version = default_k8s_version()

    # Paths -----------------------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "plane.json"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    # Lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> ControlPlane:
        ensure_binaries(self.bin_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self.pki = ensure_pki(self.state_dir / "pki", extra_ips=self.opts.extra_ips)
        try:
            self._start_all()
        except BaseException:
            # Children run in their own sessions, so Ctrl-C does not reach them: whatever stops the
            # start-up (an error or KeyboardInterrupt) must stop what was already started.
            self._stop_procs()
            raise
        return self

    def _start_all(self) -> None:
        last: PlaneError | None = None
        for _attempt in range(3):
            self.ports = dict(zip(("etcd", "etcd_peer", "apiserver", "kcm"), pick_free_ports(4), strict=True))
            try:
                self._start_etcd()
                self._start_apiserver()
                break
            except PlaneError as e:
                last = e
                self._stop_procs()
                # Only a lost port race is worth a retry; any other failure is final.
                if "address already in use" not in str(e):
                    raise
        else:
            raise last or PlaneError("control plane did not start")
        self._write_kubeconfigs()
        if self.opts.install_crds:
            self.install_crds()
            if self.opts.gateway_api:
                self.install_crds(gateway_api_crds())
        if self.opts.controller_manager:
            self._start_kcm()
        self._write_state()

    def stop(self) -> None:
        self._stop_procs()
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _stop_procs(self) -> None:
        # Reverse start order: controllers first, etcd last, so nothing logs spurious connection errors.
        for name in reversed(list(self.procs)):
            p = self.procs.pop(name)
            stop_pid(p.pid, str(self.state_dir))
            with contextlib.suppress(Exception):
                p.wait(timeout=1)

    # Faults and recovery of single parts (bench/chaos.py) ---------------------------------------------
    RESTARTABLE = ("etcd", "kube-apiserver", "kube-controller-manager")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Signal one part of the plane (SIGKILL by default: no chance to flush or say goodbye) and reap
        it. Returns the PID it had. `restart` brings it back with the same ports and data."""
        p = self.procs.get(name)
        if p is None:
            raise PlaneError(f"{name} is not running in this plane ({', '.join(self.procs) or 'nothing'})")
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, sig)
            p.wait()
        return p.pid

    def restart(self, name: str) -> None:
        """Start a killed (or crashed) part again as it first started: etcd on its data directory (what it
        had written survives), the API server and kube-controller-manager on the same ports and
        certificates, so clients reconnect without new kubeconfigs. Waits until it is healthy."""
        if name not in self.RESTARTABLE:
            raise PlaneError(f"cannot restart {name!r} (one of {', '.join(self.RESTARTABLE)})")
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            raise PlaneError(f"{name} is still running (pid {old.pid}); kill it first")
        {
            "etcd": self._start_etcd,
            "kube-apiserver": self._start_apiserver,
            "kube-controller-manager": self._start_kcm,
        }[name]()
        self._write_state()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        # A restarted part appends to its log, so what it said before it was killed stays readable.
        mode = "ab" if name in self._spawned else "wb"
        self._spawned.add(name)
        log = open(self.log_dir / f"{name}.log", mode)  # noqa: SIM115 - owned by the child for its lifetime
        p = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.state_dir,
        )
        log.close()
        self.procs[name] = p
        return p

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        try:
            return _tail(path.read_text(errors="replace"), lines)
        except OSError:
            return "(no log)"

    def _wait(self, name: str, probe: Any, timeout: float) -> None:
        p = self.procs[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise PlaneError(
                    f"{name} exited with code {p.returncode} during start-up; last lines of "
                    f"{self.log_dir / (name + '.log')}:\n{self.log_tail(name)}"
                )
            if probe():
                return
            time.sleep(0.1)
        raise PlaneError(f"{name} not healthy after {timeout:.0f} s; last log lines:\n{self.log_tail(name)}")

    def _start_etcd(self) -> None:
        c, peer = self.ports["etcd"], self.ports["etcd_peer"]
        data = self.state_dir / "etcd-data"
        args = [
            str(self.bin_dir / "etcd"),
            "--name=rayop",
            f"--data-dir={data}",
            f"--listen-client-urls=http://127.0.0.1:{c}",
            f"--advertise-client-urls=http://127.0.0.1:{c}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=rayop=http://127.0.0.1:{peer}",
            "--listen-metrics-urls=",
            "--quota-backend-bytes=8589934592",
            "--log-level=warn",
        ]
        if not self.opts.etcd_fsync:
            args.append("--unsafe-no-fsync=true")
        self._spawn("etcd", args)

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{c}/health", timeout=1) as r:
                    return bool(json.loads(r.read()).get("health") == "true")
            except (OSError, ValueError):
                return False

        self._wait("etcd", healthy, self.opts.start_timeout)

    def _admin_ssl(self) -> ssl.SSLContext:
        assert self.pki
        ctx = ssl.create_default_context(cafile=str(self.pki.serving_ca))
        crt, key = self.pki.client_cert("admin")
        ctx.load_cert_chain(str(crt), str(key))
        return ctx

    def _start_apiserver(self) -> None:
        assert self.pki
        pki = self.pki
        port = self.ports["apiserver"]
        admission = (
            ["--enable-admission-plugins=ServiceAccount"]
            if self.opts.service_account_admission
            else ["--disable-admission-plugins=ServiceAccount"]
        )
        args = [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            f"--bind-address={self.opts.bind_address}",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.state_dir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.apiserver_crt}",
            f"--tls-private-key-file={pki.apiserver_key}",
            f"--client-ca-file={pki.client_ca}",
            f"--service-account-issuer=https://127.0.0.1:{port}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            *self._aggregation_args(),
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            *admission,
            *self.opts.extra_apiserver_args,
        ]
        self._spawn("kube-apiserver", args)
        ctx = self._admin_ssl()

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", timeout=2, context=ctx) as r:
                    return bool(r.status == 200)
            except (OSError, urllib.error.HTTPError):
                return False

        self._wait("kube-apiserver", ready, self.opts.start_timeout)

    def _aggregation_args(self) -> list[str]:
        """How the API server reaches what runs on nodes: aggregated APIs (metrics-server), webhooks behind
        a Service, and the node agents' kubelet APIs (logs, exec). There is no kube-proxy, so a Service's
        ClusterIP leads nowhere: the API server dials a ready endpoint (a pod IP on a node agent's bridge,
        which the host reaches) instead. Aggregated servers authenticate the API server by its front-proxy
        client certificate and read the user from the X-Remote-* headers it sets."""
        assert self.pki
        pki = self.pki
        fp_crt, fp_key = pki.front_proxy_client
        kc_crt, kc_key = pki.kubelet_client
        return [
            "--enable-aggregator-routing=true",
            f"--requestheader-client-ca-file={pki.front_proxy_ca}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT_CN}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-uid-headers=X-Remote-Uid",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={fp_crt}",
            f"--proxy-client-key-file={fp_key}",
            f"--kubelet-client-certificate={kc_crt}",
            f"--kubelet-client-key={kc_key}",
            # Node agents serve their kubelet API with a certificate from the plane's serving CA
            # (issue_serving_cert), so the API server verifies them instead of trusting any certificate.
            f"--kubelet-certificate-authority={pki.serving_ca}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _start_kcm(self) -> None:
        assert self.pki
        pki = self.pki
        args = [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.state_dir / 'kcm.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['kcm']}",
            "--leader-elect=false",
            "--controllers=*",
            "--use-service-account-credentials=false",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.serving_ca}",
            f"--cluster-signing-cert-file={pki.client_ca}",
            f"--cluster-signing-key-file={pki.client_ca_key}",
            f"--cert-dir={self.state_dir / 'kcm-certs'}",
            # The GC and job controllers must react in test time, not after a resync.
            "--concurrent-gc-syncs=20",
            "--profiling=false",
            *(f"--horizontal-pod-autoscaler-{k}={v}" for k, v in sorted(self.opts.hpa.items())),
            *self.opts.extra_kcm_args,
        ]
        self._spawn("kube-controller-manager", args)
        port = self.ports["kcm"]
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=2, context=ctx) as r:
                    return bool(r.status == 200)
            except (OSError, urllib.error.HTTPError):
                return False

        self._wait("kube-controller-manager", healthy, self.opts.start_timeout)

    # Kubeconfigs and state -----------------------------------------------------------------------------
    def _kubeconfig_dict(self, user: str, server: str | None = None) -> dict[str, Any]:
        assert self.pki
        crt, key = self.pki.client_cert(user)

        def b64(p: Path) -> str:
            return base64.b64encode(p.read_bytes()).decode()

        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "rayop-local",
                    "cluster": {
                        "server": server or self.server,
                        "certificate-authority-data": b64(self.pki.serving_ca),
                    },
                }
            ],
            "users": [
                {"name": user, "user": {"client-certificate-data": b64(crt), "client-key-data": b64(key)}}
            ],
            "contexts": [{"name": "rayop-local", "context": {"cluster": "rayop-local", "user": user}}],
            "current-context": "rayop-local",
        }

    def write_kubeconfig(self, path: Path, user: str = "admin", server: str | None = None) -> Path:
        write_private(path, yaml.safe_dump(self._kubeconfig_dict(user, server), sort_keys=False).encode())
        return path

    def _write_kubeconfigs(self) -> None:
        self.write_kubeconfig(self.kubeconfig, "admin")
        self.write_kubeconfig(self.state_dir / "kcm.kubeconfig", "kcm")

    def _write_state(self) -> None:
        st = PlaneState(
            server=self.server,
            kubeconfig=str(self.kubeconfig),
            ports=self.ports,
            pids={n: p.pid for n, p in self.procs.items()},
            version=self.version,
        )
        self.state_file.write_text(st.to_json())

    # Helpers -------------------------------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
        """Run the matching kubectl against this plane; on failure raise with its stderr."""
        proc = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise PlaneError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout if proc.returncode == 0 else proc.stdout + proc.stderr

    def crd_files(self) -> list[Path]:
        return sorted(self.crd_dir.glob("*.yaml"))

    def install_crds(self, files: Sequence[Path] | None = None) -> None:
        """Server-side apply (the CRDs exceed the client-side last-applied limit), then wait Established."""
        files = list(files) if files is not None else self.crd_files()
        if not files:
            return
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager=rayop"]
        for f in files:
            args += ["-f", str(f)]
        self.kubectl(*args)
        names = []
        for f in files:
            for doc in yaml.safe_load_all(f.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    names.append(f"crd/{doc['metadata']['name']}")
        if names:
            self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.server}/readyz", timeout=2, context=self._admin_ssl()) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.HTTPError, KeyError):
            return False


def start_daemon(
    state_dir: Path, name: str, args: list[str], *, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a long-running companion (operator, node agent) detached from the caller and record its
    PID in the plane's state file, so `rayop local down` stops it before the plane. Its command line
    must mention state_dir (e.g. through --kubeconfig): stop_pid checks that before signalling."""
    state_dir = state_dir.resolve()
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as log:
        p = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=state_dir,
            env=env,
        )
    sf = state_dir / "plane.json"
    st = PlaneState.load(sf)
    st.pids[name] = p.pid
    sf.write_text(st.to_json())
    return p


def running_plane(state_dir: Path) -> PlaneState | None:
    """The plane recorded in state_dir if its processes are still alive."""
    sf = state_dir / "plane.json"
    if not sf.exists():
        return None
    try:
        st = PlaneState.load(sf)
    except (ValueError, TypeError, OSError):
        return None
    alive = [n for n, pid in st.pids.items() if pid_alive(pid) and str(state_dir.resolve()) in cmdline(pid)]
    if "kube-apiserver" in alive and "etcd" in alive:
        return st
    return None


def stop_recorded(state_dir: Path) -> list[str]:
    """Stop every process recorded in state_dir (reverse order). Returns the names stopped."""
    sf = state_dir / "plane.json"
    if not sf.exists():
        return []
    st = PlaneState.load(sf)
    stopped = []
    for name, pid in reversed(list(st.pids.items())):
        if pid_alive(pid):
            # The node agent stops its pods (with their grace periods) before it exits.
            stop_pid(pid, str(state_dir.resolve()), grace=STOP_GRACE.get(name, 10.0))
            stopped.append(name)
    sf.unlink()
    return stopped


@contextlib.contextmanager
def temporary_plane(state_dir: Path, **kw: Any) -> Iterator[ControlPlane]:
    plane = ControlPlane(PlaneOptions(state_dir=state_dir, **kw))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
