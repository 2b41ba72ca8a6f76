"""Where and how to reach the API server: kubeconfig files, contexts, exec credential plugins, in-cluster.

Reads what kubectl reads: `--kubeconfig` or every file in `$KUBECONFIG` (merged: the first file that names a
cluster, user or context wins, as client-go's loader does) or `~/.kube/config`; the current context or
`--context`; certificate files relative to the file that names them; bearer tokens and token files; and
`exec` credential plugins (`client.authentication.k8s.io/v1` and `v1beta1` ExecCredential), which is how
EKS (`aws eks get-token`), GKE (`gke-gcloud-auth-plugin`) and AKS (`kubelogin`) users authenticate.

The exec protocol, as client-go's `plugin/pkg/client/auth/exec` implements it: the plugin runs with the
kubeconfig's `env` added to ours and `KUBERNETES_EXEC_INFO` holding an ExecCredential (`spec.interactive`,
and `spec.cluster` when `provideClusterInfo`); its standard input is ours only when interactive
(`interactiveMode` Never / IfAvailable / Always, against whether stdin is a terminal); its standard error
passes through; it prints an ExecCredential whose `status` holds a token or a client certificate and key,
with an optional `expirationTimestamp`. The credential is kept until it expires, and thrown away when the
API server answers 401 to a request made with it (the client then runs the plugin again).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from rayop.base.pki import load_chain
from rayop.base.times import parse_time, utcnow

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")
# Run the plugin again this long before its credential expires, so a request started just before the
# expiry does not arrive with a stale token.
EXPIRY_SKEW = timedelta(seconds=10)
# The key of a cluster's `extensions` entry handed to the plugin as `spec.cluster.config`.
EXEC_EXTENSION = "client.authentication.k8s.io/exec"


class KubeconfigError(ValueError):
    """The kubeconfig cannot be used (missing, malformed, unknown context, unsupported credentials)."""


class ExecPluginError(RuntimeError):
    """The exec credential plugin could not give a credential (not found, failed, bad output)."""


def default_paths(explicit: str | os.PathLike[str] | None = None) -> list[Path]:
    """The kubeconfig files to read, in precedence order: the explicit one, else `$KUBECONFIG`'s list,
    else `~/.kube/config`."""
    if explicit:
        return [Path(explicit).expanduser()]
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


# Reading and merging -------------------------------------------------------------------------------


# Requests (not watches) in flight at once. This, not a client-side token bucket, bounds a burst such as a
# 1,000-Pod scale-up: the API server's Priority and Fairness decides how fast it takes them, and more
# requests in flight than it serves at once would only queue there (bench/kuberay_peer.py: 64 creates
# Pods as fast as 200 on this machine, and each TLS connection costs memory in both processes).
DEFAULT_MAX_IN_FLIGHT = 64


@dataclass
class Kubeconfig:
    """The merged content of one or more kubeconfig files, each entry's paths already made absolute."""

    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)
    current_context: str = ""
    sources: list[Path] = field(default_factory=list)

    @property
    def where(self) -> str:
        return ", ".join(str(p) for p in self.sources) or "(no file)"


_PATH_KEYS = {
    "clusters": ("certificate-authority",),
    "users": ("client-certificate", "client-key", "tokenFile"),
}


def _absolute(entry: dict[str, Any], keys: Sequence[str], base: Path) -> None:
    for key in keys:
        v = entry.get(key)
        if isinstance(v, str) and v and not Path(v).expanduser().is_absolute():
            entry[key] = str(base / v)
        elif isinstance(v, str) and v:
            entry[key] = str(Path(v).expanduser())


def _named(doc: Mapping[str, Any], section: str, inner: str, path: Path) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    items = doc.get(section) or []
    if not isinstance(items, list):
        raise KubeconfigError(f"kubeconfig {path}: {section} must be a list")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise KubeconfigError(f"kubeconfig {path}: {section}[{i}] has no name")
        body = item.get(inner) or {}
        if not isinstance(body, dict):
            raise KubeconfigError(f"kubeconfig {path}: {section}[{i}].{inner} must be a mapping")
        out.append((item["name"], dict(body)))
    return out


def read_kubeconfig(paths: Sequence[Path]) -> Kubeconfig:
    """Merge the files like client-go: for each name the first file wins; so does the first current-context.
    Missing files in a `$KUBECONFIG` list are skipped (as kubectl does); at least one must exist."""
    merged = Kubeconfig()
    for path in paths:
        if not path.exists():
            continue
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise KubeconfigError(f"kubeconfig {path}: cannot read: {e}") from e
        if not isinstance(doc, dict):
            raise KubeconfigError(f"kubeconfig {path}: not a kubeconfig (expected a mapping)")
        merged.sources.append(path)
        base = path.resolve().parent
        for name, body in _named(doc, "clusters", "cluster", path):
            _absolute(body, _PATH_KEYS["clusters"], base)
            merged.clusters.setdefault(name, body)
        for name, body in _named(doc, "users", "user", path):
            _absolute(body, _PATH_KEYS["users"], base)
            ex = body.get("exec")
            if isinstance(ex, dict):
                cmd = ex.get("command")
                # client-go: a relative command with a separator is relative to the file that names it.
                if isinstance(cmd, str) and os.sep in cmd and not Path(cmd).is_absolute():
                    ex["command"] = str(base / cmd)
            merged.users.setdefault(name, body)
        for name, body in _named(doc, "contexts", "context", path):
            merged.contexts.setdefault(name, body)
        if not merged.current_context and isinstance(doc.get("current-context"), str):
            merged.current_context = doc["current-context"]
    if not merged.sources:
        raise KubeconfigError(
            "no kubeconfig found (looked for "
            + ", ".join(str(p) for p in paths)
            + "): pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config"
        )
    return merged


# Exec credential plugins ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecCredential:
    """What a plugin answered: a bearer token and/or a client certificate, valid until `expiry` (None:
    until the API server rejects it)."""

    token: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    expiry: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expiry is not None and now >= self.expiry - EXPIRY_SKEW


@dataclass(frozen=True)
class ExecSpec:
    """A user's `exec` section, checked."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    api_version: str = EXEC_API_VERSIONS[0]
    interactive_mode: str = "IfAvailable"
    install_hint: str = ""
    provide_cluster_info: bool = False
    cluster_info: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, ex: Mapping[str, Any], cluster: Mapping[str, Any], where: str) -> ExecSpec:
        api_version = str(ex.get("apiVersion") or "")
        if api_version not in EXEC_API_VERSIONS:
            raise KubeconfigError(
                f"{where}: exec apiVersion {api_version!r} is not supported "
                f"(use one of {', '.join(EXEC_API_VERSIONS)})"
            )
        command = ex.get("command")
        if not isinstance(command, str) or not command:
            raise KubeconfigError(f"{where}: exec.command is required")
        mode = ex.get("interactiveMode")
        if mode is None:
            if api_version.endswith("/v1"):
                raise KubeconfigError(f"{where}: exec.interactiveMode is required with {api_version}")
            mode = "IfAvailable"
        if mode not in INTERACTIVE_MODES:
            raise KubeconfigError(
                f"{where}: exec.interactiveMode {mode!r} must be one of {', '.join(INTERACTIVE_MODES)}"
            )
        env: list[tuple[str, str]] = []
        for i, e in enumerate(ex.get("env") or []):
            if not isinstance(e, dict) or not isinstance(e.get("name"), str):
                raise KubeconfigError(f"{where}: exec.env[{i}] needs a name and a value")
            env.append((e["name"], str(e.get("value") or "")))
        info: dict[str, Any] = {}
        if ex.get("provideClusterInfo"):
            info = {
                k: cluster[k]
                for k in (
                    "server",
                    "tls-server-name",
                    "insecure-skip-tls-verify",
                    "certificate-authority-data",
                    "proxy-url",
                    "disable-compression",
                )
                if k in cluster
            }
            if cluster.get("certificate-authority") and "certificate-authority-data" not in info:
                ca = Path(cluster["certificate-authority"]).read_bytes()
                info["certificate-authority-data"] = base64.b64encode(ca).decode()
            ext = {e.get("name"): e.get("extension") for e in cluster.get("extensions") or []}
            if ext.get(EXEC_EXTENSION) is not None:
                info["config"] = ext[EXEC_EXTENSION]
        return cls(
            command=command,
            args=tuple(str(a) for a in ex.get("args") or ()),
            env=tuple(env),
            api_version=api_version,
            interactive_mode=str(mode),
            install_hint=str(ex.get("installHint") or ""),
            provide_cluster_info=bool(ex.get("provideClusterInfo")),
            cluster_info=info,
        )


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


def parse_exec_output(out: bytes, api_version: str) -> ExecCredential:
    """Check a plugin's ExecCredential answer and read its status."""
    try:
        doc = json.loads(out)
    except ValueError as e:
        raise ExecPluginError(f"its output is not JSON: {out[:200]!r}") from e
    if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
        raise ExecPluginError("its output is not an ExecCredential")
    if doc.get("apiVersion") != api_version:
        raise ExecPluginError(
            f"it answered apiVersion {doc.get('apiVersion')!r}, the kubeconfig asked for {api_version!r}"
        )
    st = doc.get("status")
    if not isinstance(st, dict):
        raise ExecPluginError("its ExecCredential has no status")
    token = st.get("token") or None
    cert, key = st.get("clientCertificateData") or None, st.get("clientKeyData") or None
    if bool(cert) != bool(key):
        raise ExecPluginError("its status must hold both clientCertificateData and clientKeyData, or neither")
    if not token and not cert:
        raise ExecPluginError("its status holds neither a token nor a client certificate")
    expiry = None
    if st.get("expirationTimestamp"):
        expiry = parse_time(st["expirationTimestamp"])
        if expiry is None:
            raise ExecPluginError(f"expirationTimestamp {st['expirationTimestamp']!r} is not RFC 3339")
    return ExecCredential(
        token=str(token) if token else None,
        cert_data=str(cert).encode() if cert else None,
        key_data=str(key).encode() if key else None,
        expiry=expiry,
    )


class ExecPlugin:
    """Runs one user's exec plugin and keeps its credential until it expires or is rejected.

    `current` is what requests use; `refresh()` runs the plugin when there is none or it expired (one run
    at a time, so an interactive plugin never prompts twice); `invalidate()` drops it after a 401."""

    def __init__(
        self,
        spec: ExecSpec,
        *,
        now: Callable[[], datetime] = utcnow,
        stdin_is_terminal: Callable[[], bool] = _stdin_is_terminal,
    ) -> None:
        self.spec = spec
        self.current: ExecCredential | None = None
        self.runs = 0
        self._now = now
        self._tty = stdin_is_terminal
        self._lock: asyncio.Lock | None = None

    @property
    def name(self) -> str:
        return Path(self.spec.command).name

    def interactive(self) -> bool:
        mode = self.spec.interactive_mode
        if mode == "Never":
            return False
        tty = self._tty()
        if mode == "Always" and not tty:
            raise ExecPluginError(
                f"exec plugin {self.name} needs an interactive terminal (interactiveMode: Always), "
                "but standard input is not one"
            )
        return tty

    def exec_info(self, interactive: bool) -> str:
        spec: dict[str, Any] = {"interactive": interactive}
        if self.spec.provide_cluster_info:
            spec["cluster"] = dict(self.spec.cluster_info)
        return json.dumps({"apiVersion": self.spec.api_version, "kind": "ExecCredential", "spec": spec})

    def needs_run(self) -> bool:
        return self.current is None or self.current.expired(self._now())

    async def refresh(self) -> bool:
        """Make `current` valid; returns True when the plugin ran (the credential may have changed)."""
        if not self.needs_run():
            return False
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self.needs_run():
                return True
            self.current = await self._run()
            return True

    def invalidate(self, used: ExecCredential | None) -> None:
        """Forget the credential a rejected request used (not a newer one another request already got)."""
        if used is None or self.current is used:
            self.current = None

    async def _run(self) -> ExecCredential:
        interactive = self.interactive()
        env = dict(os.environ)
        env.update(dict(self.spec.env))
        env["KUBERNETES_EXEC_INFO"] = self.exec_info(interactive)
        try:
            proc = await asyncio.create_subprocess_exec(
                self.spec.command,
                *self.spec.args,
                env=env,
                stdin=None if interactive else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                # Plugins talk to the user (and log) on standard error: pass it through, as client-go does.
                stderr=None,
            )
        except (FileNotFoundError, PermissionError) as e:
            hint = f"\n{self.spec.install_hint.strip()}" if self.spec.install_hint else ""
            raise ExecPluginError(f"exec plugin {self.spec.command!r} cannot run: {e.strerror}{hint}") from e
        self.runs += 1
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise ExecPluginError(f"exec plugin {self.name} exited with code {proc.returncode}")
        try:
            return parse_exec_output(out, self.spec.api_version)
        except ExecPluginError as e:
            raise ExecPluginError(f"exec plugin {self.name}: {e}") from e


# The configuration the client uses -------------------------------------------------------------------


@dataclass
class ClientConfig:
    """Where and how to reach the API server."""

    server: str
    ca_data: bytes | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    token: str | None = None
    token_file: str | None = None
    insecure: bool = False
    namespace: str = "default"
    # Client-side token bucket: off when qps <= 0 (the default, as in controller-runtime since v0.21; the
    # API server's Priority and Fairness protects it, and 429s are waited out, see ApiClient.request).
    qps: float = 0.0
    burst: int = 200
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    extra: dict[str, Any] = field(default_factory=dict)
    # An exec credential plugin: its current credential (token, client certificate) wins over the fields.
    exec_plugin: ExecPlugin | None = None
    # The context it came from, for messages ("" when in-cluster or built by hand).
    context: str = ""

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        ctx = ssl.create_default_context()
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_data:
            ctx = ssl.create_default_context(cadata=self.ca_data.decode())
        cred = self.exec_plugin.current if self.exec_plugin else None
        if cred is not None and cred.cert_data and cred.key_data:
            load_chain(ctx, cred.cert_data, cred.key_data)
        elif self.cert_data and self.key_data:
            load_chain(ctx, self.cert_data, self.key_data)
        return ctx

    def bearer(self) -> str | None:
        cred = self.exec_plugin.current if self.exec_plugin else None
        if cred is not None and cred.token:
            return cred.token
        if self.token_file:
            try:
                # Projected tokens rotate; read each time so a long-lived operator keeps working.
                return Path(self.token_file).read_text().strip()
            except OSError:
                return self.token
        return self.token


def _read_data(entry: Mapping[str, Any], key: str, where: str) -> bytes | None:
    if entry.get(f"{key}-data"):
        try:
            return base64.b64decode(entry[f"{key}-data"])
        except ValueError as e:
            raise KubeconfigError(f"{where}: {key}-data is not base64") from e
    if entry.get(key):
        try:
            return Path(entry[key]).read_bytes()
        except OSError as e:
            raise KubeconfigError(f"{where}: {key} {entry[key]}: {e.strerror}") from e
    return None


def config_from(kc: Kubeconfig, context: str | None = None) -> ClientConfig:
    """The ClientConfig of one context of a merged kubeconfig."""
    name = context or kc.current_context
    if not name:
        raise KubeconfigError(
            f"kubeconfig {kc.where}: no current context; pass --context "
            f"(contexts: {', '.join(sorted(kc.contexts)) or 'none'})"
        )
    if name not in kc.contexts:
        raise KubeconfigError(
            f"kubeconfig {kc.where}: context {name!r} not found "
            f"(contexts: {', '.join(sorted(kc.contexts)) or 'none'})"
        )
    ctx = kc.contexts[name]
    cluster_name = str(ctx.get("cluster") or "")
    if cluster_name not in kc.clusters:
        raise KubeconfigError(
            f"kubeconfig {kc.where}: context {name!r} names cluster {cluster_name!r}, not found"
        )
    cluster = kc.clusters[cluster_name]
    user_name = str(ctx.get("user") or "")
    if user_name and user_name not in kc.users:
        raise KubeconfigError(f"kubeconfig {kc.where}: context {name!r} names user {user_name!r}, not found")
    user = kc.users.get(user_name, {})
    where = f"kubeconfig {kc.where}, user {user_name!r}"
    if user.get("auth-provider"):
        provider = (user["auth-provider"] or {}).get("name", "")
        raise KubeconfigError(
            f"{where}: the {provider or 'legacy'} auth-provider is not supported (kubectl dropped it too); "
            "use the provider's exec credential plugin (for GKE: gke-gcloud-auth-plugin; for AKS: kubelogin)"
        )
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise KubeconfigError(f"kubeconfig {kc.where}: cluster {cluster_name!r} has no server")
    exec_plugin = None
    if isinstance(user.get("exec"), dict):
        exec_plugin = ExecPlugin(ExecSpec.parse(user["exec"], cluster, where))
    return ClientConfig(
        server=server.rstrip("/"),
        ca_data=_read_data(
            cluster, "certificate-authority", f"kubeconfig {kc.where}, cluster {cluster_name!r}"
        ),
        cert_data=_read_data(user, "client-certificate", where),
        key_data=_read_data(user, "client-key", where),
        token=user.get("token"),
        token_file=user.get("tokenFile"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        namespace=str(ctx.get("namespace") or "default"),
        exec_plugin=exec_plugin,
        context=name,
    )


def load_kubeconfig(path: str | os.PathLike[str] | None = None, context: str | None = None) -> ClientConfig:
    """Read a kubeconfig (`path`, else `$KUBECONFIG`'s files merged, else `~/.kube/config`) and return the
    configuration of `context` (default: the current context)."""
    return config_from(read_kubeconfig(default_paths(path)), context)


def in_cluster_config() -> ClientConfig:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if not host:
        raise KubeconfigError("not running in a pod (KUBERNETES_SERVICE_HOST is not set)")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    ns_file = SA_DIR / "namespace"
    return ClientConfig(
        server=f"https://{host}:{port}",
        ca_data=(SA_DIR / "ca.crt").read_bytes(),
        token_file=str(SA_DIR / "token"),
        namespace=ns_file.read_text().strip() if ns_file.exists() else "default",
    )


def load_config(kubeconfig: str | None = None, context: str | None = None) -> ClientConfig:
    """Kubeconfig if given or found, else the in-cluster service account."""
    if (
        kubeconfig
        or context
        or os.environ.get("KUBECONFIG")
        or (Path.home() / ".kube" / "config").exists()
        or not os.environ.get("KUBERNETES_SERVICE_HOST")
    ):
        return load_kubeconfig(kubeconfig, context)
    return in_cluster_config()
