"""The node agent: a small kubelet for the embedded plane that runs Pods as real processes.

It registers a Node (kept Ready through a Lease), binds unscheduled Pods to itself (there is no
scheduler), and runs each bound Pod in its own network/UTS/IPC/mount namespaces with one PID namespace
per container (see shim.py), on a bridge it owns. Service names resolve inside pods through a per-pod
/etc/hosts kept current from EndpointSlices: Ray resolves names through libc, so no DNS server is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import re
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp

from rayop.base.procs import cmdline, pid_alive
from rayop.base.times import format_micro_time
from rayop.base.types import Obj
from rayop.node import containers, podspec, stats
from rayop.node.cgroups import Cgroups
from rayop.node.kubelet import KubeletServer, KubeletTLS
from rayop.node.locate import ANN_STATE_DIR
from rayop.node.network import Network, PodNet
from rayop.node.pod import TERMINAL, PodState, PodWorker, rfc3339
from rayop.node.stats import ContainerUsage, NodeUsage
from rayop.runtime.client import (
    CORE_EVENTS,
    ENDPOINTSLICES,
    LEASES,
    NODES,
    PODS,
    SERVICES,
    ApiClient,
    ApiError,
    Resource,
    load_config,
)

log = logging.getLogger("rayop.node")

LEASE_NAMESPACE = "kube-node-lease"
KUBELET_VERSION = "v1.36.3"


def default_python_env() -> Path:
    cache = Path(os.environ.get("RAYOP_CACHE_DIR") or Path.home() / ".cache" / "rayop")
    return Path(
        os.environ.get("RAYOP_RAY_ENV") or cache / "ray" / os.environ.get("RAYOP_RAY_VERSION", "2.60.0")
    )


def default_state_dir(node: str) -> Path:
    base = Path("/var/lib/rayop") if os.geteuid() == 0 else Path.home() / ".local" / "state" / "rayop"
    return base / "nodes" / node


@dataclass
class NodeConfig:
    name: str = "rayop-node"
    kubeconfig: str | None = None
    state_dir: Path | None = None
    bridge: str = "rayop0"
    # A private /24 that is unlikely to be in use (not Docker's, podman's, flannel's or calico's default).
    pod_cidr: str = "10.213.0.0/24"
    python_env: Path = field(default_factory=default_python_env)
    # There are no images: a container whose image matches a key runs with that environment's bin/
    # leading PATH instead of python_env's (e.g. the operator image -> an environment with rayop).
    image_envs: dict[str, Path] = field(default_factory=dict)
    cpu: str | None = None
    memory: str | None = None
    max_pods: int = 110
    # How pods reach the API server: default the bridge gateway and the API server's own port.
    api_host: str | None = None
    api_port: int | None = None
    cluster_domain: str = "cluster.local"
    labels: dict[str, str] = field(default_factory=dict)
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    default_env: dict[str, str] = field(default_factory=lambda: {"RAY_USAGE_STATS_ENABLED": "0"})
    cgroups: bool = True
    # On stop: kill every pod and remove the bridge (local down); False leaves pods for a restart.
    cleanup_on_stop: bool = True
    stop_grace: float = 10.0
    lease_seconds: int = 40
    resync_seconds: float = 5.0
    # The kubelet API (kubelet.py), on the InternalIP (the bridge gateway); 0: none. Its serving certificate
    # should name that address and come from a CA the API server trusts (--kubelet-certificate-authority);
    # without one it is self-signed. Client certificates from `client_ca_file` are accepted besides tokens.
    kubelet_port: int = 10250
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    client_ca_file: Path | None = None


def image_env(cfg: NodeConfig, image: str) -> Path:
    """The environment a container of ``image`` runs with: an exact key of ``cfg.image_envs``, else a key
    naming the image's repository without tag or digest (``rayop`` matches ``rayop:0.1.0``), else
    ``cfg.python_env``."""
    if image in cfg.image_envs:
        return cfg.image_envs[image]
    repo = image.split("@", 1)[0]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    return cfg.image_envs.get(repo, cfg.python_env)


def _machine_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


class NodeAgent:
    def __init__(self, cfg: NodeConfig, client: ApiClient | None = None) -> None:
        self.cfg = cfg
        self.client = client or ApiClient(load_config(cfg.kubeconfig), user_agent=f"rayop-node/{cfg.name}")
        self._own_client = client is None
        self.state_dir = (cfg.state_dir or default_state_dir(cfg.name)).resolve()
        self.pods_dir = self.state_dir / "pods"
        prefix = "rn" + re.sub(r"[^a-z0-9]", "", cfg.name.lower())[:10]
        self.network = Network(cfg.bridge, cfg.pod_cidr, prefix)
        self.cgroups = Cgroups(f"rayop-{prefix}", cfg.cgroups)
        cpu = cfg.cpu or str(os.cpu_count() or 1)
        mem = podspec.mem_bytes(cfg.memory) if cfg.memory else _machine_memory()
        self.allocatable: Obj = {
            "cpu": cpu,
            "memory": f"{mem // 1024}Ki",
            "pods": str(cfg.max_pods),
            "ephemeral-storage": f"{shutil.disk_usage('/').total // 1024}Ki",
        }
        server = urlparse(self.client.config.server)
        self.upstream = (server.hostname or "127.0.0.1", server.port or 443)
        self.api_host = cfg.api_host or self.network.gateway
        self.api_port = cfg.api_port or self.upstream[1]
        self.workers: dict[str, PodWorker] = {}
        self.pending: dict[str, Obj] = {}
        self.unschedulable: dict[str, str] = {}
        self.bound: dict[str, tuple[Obj, float]] = {}
        self.services: dict[tuple[str, str], Obj] = {}
        self.slices: dict[tuple[str, str], Obj] = {}
        self.records: dict[tuple[str, str], list[str]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._bind_wake = asyncio.Event()
        self._dns_wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._relay: asyncio.Server | None = None
        self._events_seen: dict[tuple[str, str, str], float] = {}
        self._http: aiohttp.ClientSession | None = None
        self.kubelet: KubeletServer | None = None
        self.ready = asyncio.Event()
        self.boot_id = str(uuid.uuid4())
        self._bg: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A fire-and-forget task that is kept referenced until it finishes."""
        t = asyncio.get_running_loop().create_task(coro)
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)
        return t

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self._http

    # --- lifecycle ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stop(). Raises if the node cannot start (no root, no `ip`, API unreachable)."""
        for env in (self.cfg.python_env.resolve(), *(p.resolve() for p in self.cfg.image_envs.values())):
            if env == Path("/tmp") or Path("/tmp") in env.parents:
                # Every container gets a private /tmp, which would hide this environment: `ray` would
                # not be found and pods would fail in confusing ways. Say so at start-up instead.
                raise RuntimeError(
                    f"python environment {env} is under /tmp, which each container's private /tmp hides; "
                    "put it elsewhere (e.g. RAYOP_CACHE_DIR outside /tmp)"
                )
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        # Pod folders hold resolved Secret values and service-account tokens, as a kubelet's do:
        # root only.
        os.chmod(self.pods_dir.parent, 0o700)
        await self.network.ensure_bridge()
        await self.start_relay()
        await self.start_kubelet_api()
        await self.register()
        await self.recover()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.lease_loop(), name="lease"),
            loop.create_task(self.status_loop(), name="node-status"),
            loop.create_task(
                self.informer(PODS, f"spec.nodeName={self.cfg.name}", self.on_own_pod, self.on_own_sync),
                name="own-pods",
            ),
            loop.create_task(
                self.informer(PODS, "spec.nodeName=", self.on_pending_pod, self.on_pending_sync),
                name="pending-pods",
            ),
            loop.create_task(
                self.informer(SERVICES, None, self.on_service, self.on_service_sync), name="svc"
            ),
            loop.create_task(
                self.informer(ENDPOINTSLICES, None, self.on_slice, self.on_slice_sync), name="slices"
            ),
            loop.create_task(
                self.informer(NODES, f"metadata.name={self.cfg.name}", self.on_node, self.on_node_sync),
                name="node",
            ),
            loop.create_task(self.binder_loop(), name="binder"),
            loop.create_task(self.dns_loop(), name="dns"),
        ]
        self.ready.set()
        log.info(
            "node %s ready: pods on %s (gateway %s), state in %s",
            self.cfg.name,
            self.network.cidr,
            self.network.gateway,
            self.state_dir,
        )
        await self._stopped.wait()
        await self._shutdown()

    def stop(self) -> None:
        self._stopped.set()

    async def _shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        workers = list(self.workers.values())
        for w in workers:
            if w.task:
                w.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await w.task
        if self.cfg.cleanup_on_stop:

            async def down(w: PodWorker) -> None:
                grace = min(float(w.spec.get("terminationGracePeriodSeconds", 30)), self.cfg.stop_grace)
                await w.kill_all(grace)
                await w.teardown(remove_dir=True)

            await asyncio.gather(*(down(w) for w in workers), return_exceptions=True)
            for ns in self.network.own_netns():
                await self.network.delete_pod_net(PodNet(ns, "", ""))
            await self.network.delete_bridge()
            self.cgroups.remove_root()
        else:
            for w in workers:
                for t in list(w.watchers.values()) + [t for ts in w.probes.values() for t in ts]:
                    t.cancel()
        if self._relay is not None:
            self._relay.close()
        if self.kubelet is not None:
            await self.kubelet.stop()
        if self._http is not None:
            await self._http.close()
        if self._own_client:
            await self.client.close()

    # --- node object -------------------------------------------------------------------------------

    def node_status(self) -> Obj:
        now = rfc3339(time.time())
        conds = []
        for ctype, status, reason, msg in (
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ):
            conds.append(
                {
                    "type": ctype,
                    "status": status,
                    "reason": reason,
                    "message": msg,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": self._started_at,
                }
            )
        uname = platform.uname()
        return {
            "capacity": dict(self.allocatable),
            "allocatable": dict(self.allocatable),
            "conditions": conds,
            "addresses": [
                {"type": "InternalIP", "address": self.network.gateway},
                {"type": "Hostname", "address": self.cfg.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.cfg.kubelet_port}},
            # The API server then hands WebSocket exec and port-forward to this node as they are.
            "declaredFeatures": ["ExtendWebSocketsToKubelet"] if self.kubelet is not None else [],
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": self.boot_id,
                "kernelVersion": uname.release,
                "osImage": "rayop local node",
                "containerRuntimeVersion": "rayop://0.1.0",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine),
            },
        }

    async def register(self) -> None:
        self._started_at = rfc3339(time.time())
        labels = {
            "kubernetes.io/hostname": self.cfg.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": self.node_status()["nodeInfo"]["architecture"],
            "node.kubernetes.io/instance-type": "rayop-local",
            **self.cfg.labels,
        }
        meta = {"name": self.cfg.name, "labels": labels, "annotations": {ANN_STATE_DIR: str(self.state_dir)}}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": meta,
            "spec": {"podCIDR": self.network.cidr, "podCIDRs": [self.network.cidr]},
        }
        try:
            await self.client.create(NODES, node)
        except ApiError as e:
            if not e.conflict:
                raise
            await self.client.patch(NODES, self.cfg.name, {"metadata": meta})
        await self.client.patch(NODES, self.cfg.name, {"status": self.node_status()}, sub="status")
        self.node = await self.client.get(NODES, self.cfg.name)
        await self.renew_lease()

    async def renew_lease(self) -> None:
        now = format_micro_time(time.time())
        spec = {
            "holderIdentity": self.cfg.name,
            "leaseDurationSeconds": self.cfg.lease_seconds,
            "renewTime": now,
        }
        try:
            await self.client.patch(LEASES, self.cfg.name, {"spec": spec}, LEASE_NAMESPACE)
        except ApiError as e:
            if not e.not_found:
                raise
            owner = {
                "apiVersion": "v1",
                "kind": "Node",
                "name": self.cfg.name,
                "uid": self.node["metadata"]["uid"],
            }
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.cfg.name, "namespace": LEASE_NAMESPACE, "ownerReferences": [owner]},
                "spec": spec,
            }
            await self.client.create(LEASES, lease, LEASE_NAMESPACE)

    async def lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.lease_seconds / 4)
            try:
                await self.renew_lease()
            except (TimeoutError, ApiError, aiohttp.ClientError, OSError) as e:
                log.warning("lease renewal failed: %s", e)

    async def status_loop(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                self.node = await self.client.patch(
                    NODES, self.cfg.name, {"status": self.node_status()}, sub="status"
                )
            except ApiError as e:
                if e.not_found:
                    # Deleted under us (kubectl delete node): register again, like a kubelet. A failure
                    # here must not end the loop, or the Node would never be recreated.
                    try:
                        await self.register()
                    except (ApiError, TimeoutError, aiohttp.ClientError, OSError) as e2:
                        log.warning("node re-registration failed: %s", e2)
                else:
                    log.warning("node status update failed: %s", e)
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                log.warning("node status update failed: %s", e)

    # --- API server reachable from pods ------------------------------------------------------------

    async def start_relay(self) -> None:
        """Pods talk to the API server at the gateway. If it does not listen there itself (a plane bound
        to 127.0.0.1), relay TCP from the gateway to it; TLS passes through untouched."""
        if self.api_host != self.network.gateway or self.upstream[0] == self.network.gateway:
            return
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(self.api_host, self.api_port), 1.0)
            w.close()
            return
        except (TimeoutError, OSError):
            pass
        up_host, up_port = self.upstream

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(OSError):
                    w.close()

        async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
            try:
                ur, uw = await asyncio.open_connection(up_host, up_port)
            except OSError:
                cw.close()
                return
            await asyncio.gather(pipe(cr, uw), pipe(ur, cw))

        self._relay = await asyncio.start_server(handle, self.api_host, self.api_port, reuse_address=True)
        log.info("relaying %s:%s -> %s:%s for pods", self.api_host, self.api_port, up_host, up_port)

    # --- kubelet API ------------------------------------------------------------------------------

    async def start_kubelet_api(self) -> None:
        if not self.cfg.kubelet_port:
            return
        tls = KubeletTLS(
            self.cfg.tls_cert_file,
            self.cfg.tls_key_file,
            self.cfg.client_ca_file,
            sans=[self.network.gateway, self.cfg.name],
        )
        if tls.cert_file is None:
            log.warning(
                "kubelet API serves a self-signed certificate: give --tls-cert-file/--tls-private-key-file "
                "signed by a CA the API server trusts, or `kubectl logs` fails to verify it"
            )
        server = KubeletServer(self, tls, self.network.gateway, self.cfg.kubelet_port)
        try:
            await server.start()
        except OSError as e:
            raise RuntimeError(
                f"cannot serve the kubelet API on {self.network.gateway}:{self.cfg.kubelet_port}: {e}"
            ) from e
        self.kubelet = server

    @property
    def node_name(self) -> str:
        return self.cfg.name

    @property
    def api(self) -> ApiClient:
        return self.client

    def pod_worker(self, namespace: str, name: str) -> PodWorker | None:
        for w in self.workers.values():
            if w.key == (namespace, name) and not w.gone:
                return w
        return None

    def pod_objects(self) -> list[Obj]:
        return [w.pod_with_status() for w in self.workers.values() if not w.gone]

    def resource_usage(self) -> tuple[NodeUsage | None, list[ContainerUsage]]:
        """What /metrics/resource reports: the machine, and each running container of this node's pods
        (cgroup counters where they exist, /proc otherwise)."""
        try:
            node: NodeUsage | None = stats.node_usage()
        except (OSError, ValueError, IndexError) as e:
            log.warning("node usage: %s", e)
            node = None
        runs = [
            (w, r)
            for w in list(self.workers.values())
            if not w.gone and w.state.phase not in TERMINAL
            for r in list(w.state.containers.values())
            if r.pid
        ]
        from_cgroups = {(w.uid, r.name): self.cgroups.container_usage(w.uid, r.name) for w, r in runs}
        need_proc = {
            f"{w.uid}/{r.name}": r.pid
            for w, r in runs
            if from_cgroups[(w.uid, r.name)].cpu_ns is None
            or from_cgroups[(w.uid, r.name)].memory_working_set is None
        }
        from_proc = stats.pid_namespace_usage(need_proc) if need_proc else {}
        now = time.time()
        out = []
        for w, r in runs:
            cg = from_cgroups[(w.uid, r.name)]
            cpu_p, mem_p = from_proc.get(f"{w.uid}/{r.name}", (0.0, 0))
            out.append(
                ContainerUsage(
                    namespace=w.key[0],
                    pod=w.key[1],
                    container=r.name,
                    cpu_seconds=cg.cpu_ns / 1e9 if cg.cpu_ns is not None else cpu_p,
                    memory_working_set=cg.memory_working_set if cg.memory_working_set is not None else mem_p,
                    start_time=r.started_at or now,
                    time=now,
                )
            )
        return node, out

    # --- per-pod environment pieces ----------------------------------------------------------------

    def ip_status(self, ip: str) -> Obj:
        gw = self.network.gateway
        st: Obj = {"hostIP": gw, "hostIPs": [{"ip": gw}]}
        if ip:
            st.update(podIP=ip, podIPs=[{"ip": ip}])
        return st

    @property
    def pvc_dir(self) -> Path:
        return self.state_dir / "pvc"

    @property
    def restart_backoff(self) -> tuple[float, float]:
        return self.cfg.backoff_initial, self.cfg.backoff_max

    def base_env(self, hostname: str, image: str = "") -> dict[str, str]:
        h, p = self.api_host, str(self.api_port)
        bin_dir = image_env(self.cfg, image) / "bin"
        env = {
            "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            # A home of the container's own (in its private /tmp), as an image gives each container: Ray
            # keeps state under ~/.ray (an auth token turns token auth on), which pods must not share.
            "HOME": "/tmp/.home",
            "HOSTNAME": hostname,
            "LANG": "C.UTF-8",
            **self.cfg.default_env,
            "KUBERNETES_SERVICE_HOST": h,
            "KUBERNETES_SERVICE_PORT": p,
            "KUBERNETES_SERVICE_PORT_HTTPS": p,
            "KUBERNETES_PORT": f"tcp://{h}:{p}",
            f"KUBERNETES_PORT_{p}_TCP": f"tcp://{h}:{p}",
            f"KUBERNETES_PORT_{p}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{p}_TCP_PORT": p,
            f"KUBERNETES_PORT_{p}_TCP_ADDR": h,
        }
        return env

    def resolv_conf(self, namespace: str) -> str:
        d = self.cfg.cluster_domain
        # No DNS server: names come from /etc/hosts. Loopback answers "refused" at once, so lookups of
        # unknown names fail fast instead of timing out against an unreachable host resolver.
        return f"search {namespace}.svc.{d} svc.{d} {d}\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n"

    def hosts_file(self, ip: str, hostname: str, namespace: str, subdomain: str | None) -> str:
        d = self.cfg.cluster_domain
        api = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", f"kubernetes.default.svc.{d}"]
        records = {k: v for k, v in self.records.items() if k != ("default", "kubernetes")}
        return podspec.render_hosts(
            ip, hostname, namespace, subdomain, records, d, extra={self.api_host: api}
        )

    # --- host paths the shims create ---------------------------------------------------------------

    def release_host_paths(self, uid: str, created: set[str]) -> None:
        """Remove the (empty) directories and files the shims of pod `uid` created on the host for mount
        targets and working directories, unless another live pod of this node still claims them."""
        others = [w for w in self.workers.values() if w.uid != uid and not w.gone]
        claimed = set().union(*(podspec.claimed_host_paths(w.spec) for w in others)) if others else set()
        for top in sorted(created, key=len, reverse=True):
            if top in ("", "/") or any(c == top or c.startswith(top + "/") for c in claimed):
                continue
            p = Path(top)
            with contextlib.suppress(OSError):
                if p.is_file() and not p.is_symlink() and p.stat().st_size == 0:
                    p.unlink()
                    continue
                for d in sorted((x for x in p.rglob("*") if x.is_dir()), key=lambda x: -len(x.parts)):
                    d.rmdir()
                p.rmdir()

    # --- events ------------------------------------------------------------------------------------

    def event(self, pod: Obj, etype: str, reason: str, message: str) -> None:
        md = pod["metadata"]
        key = (md.get("uid", ""), reason, message)
        now = time.time()
        if now - self._events_seen.get(key, 0) < 60:
            return
        self._events_seen[key] = now
        if len(self._events_seen) > 5000:
            self._events_seen = {k: v for k, v in self._events_seen.items() if now - v < 60}
        ev = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{md['name']}.", "namespace": md["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": md["name"],
                "namespace": md["namespace"],
                "uid": md.get("uid", ""),
            },
            "type": etype,
            "reason": reason,
            "message": message,
            "source": {"component": "kubelet", "host": self.cfg.name},
            "firstTimestamp": rfc3339(now),
            "lastTimestamp": rfc3339(now),
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.cfg.name,
        }

        async def send() -> None:
            with contextlib.suppress(ApiError, aiohttp.ClientError, OSError, asyncio.TimeoutError):
                await self.client.create(CORE_EVENTS, ev, md["namespace"])

        self.spawn(send())

    # --- watches -----------------------------------------------------------------------------------

    async def informer(
        self,
        res: Resource,
        field_selector: str | None,
        on_event: Callable[[str, Obj], None],
        on_sync: Callable[[list[Obj]], None],
    ) -> None:
        while True:
            try:
                lst = await self.client.list(res, field_selector=field_selector)
                on_sync(lst["items"])
                rv = lst["metadata"].get("resourceVersion")
                while True:
                    async for ev in self.client.watch(
                        res, resource_version=rv, field_selector=field_selector, timeout_seconds=240
                    ):
                        obj = ev["object"]
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            on_event(ev["type"], obj)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if not e.gone:
                    log.warning("watch %s: %s", res.plural, e)
                    await asyncio.sleep(1)
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
                log.warning("watch %s: %s", res.plural, e)
                await asyncio.sleep(1)
            except Exception:
                log.exception("watch %s handler failed", res.plural)
                await asyncio.sleep(1)

    def on_own_pod(self, etype: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        w = self.workers.get(uid)
        if etype == "DELETED":
            if w is not None:
                w.gone = True
                w.wake.set()
            self._bind_wake.set()
            return
        if w is None:
            self.add_worker(pod)
        else:
            w.update(pod)

    def on_own_sync(self, pods: list[Obj]) -> None:
        seen = set()
        for p in pods:
            seen.add(p["metadata"]["uid"])
            self.on_own_pod("MODIFIED", p)
        for uid, w in list(self.workers.items()):
            if uid not in seen:
                w.gone = True
                w.wake.set()

    def add_worker(self, pod: Obj, state: PodState | None = None) -> PodWorker:
        w = PodWorker(self, pod, state)
        phase = (pod.get("status") or {}).get("phase")
        if state is None and phase in TERMINAL:
            # Finished before this agent knew it (restart with its state gone): never run it again.
            w.state.phase = str(phase)
        self.workers[w.uid] = w
        w.start()
        task = w.task

        def done(_: object) -> None:
            if self.workers.get(w.uid) is w:
                del self.workers[w.uid]
            self._bind_wake.set()
            self._dns_wake.set()

        if task is not None:
            task.add_done_callback(done)
        self._dns_wake.set()
        return w

    def on_pending_pod(self, etype: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        if etype == "DELETED" or pod["spec"].get("nodeName"):
            self.pending.pop(uid, None)
            self.unschedulable.pop(uid, None)
            return
        self.pending[uid] = pod
        self._bind_wake.set()

    def on_pending_sync(self, pods: list[Obj]) -> None:
        self.pending = {p["metadata"]["uid"]: p for p in pods if not p["spec"].get("nodeName")}
        self._bind_wake.set()

    def on_node(self, etype: str, node: Obj) -> None:
        if etype != "DELETED":
            # Taints (not-ready at first, set by the node lifecycle controller) and labels gate binding.
            self.node = node
            self._bind_wake.set()

    def on_node_sync(self, items: list[Obj]) -> None:
        for n in items:
            self.on_node("MODIFIED", n)

    def on_service(self, etype: str, svc: Obj) -> None:
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        if etype == "DELETED":
            self.services.pop(key, None)
        else:
            self.services[key] = svc
        self._dns_wake.set()

    def on_service_sync(self, items: list[Obj]) -> None:
        self.services = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in items}
        self._dns_wake.set()

    def on_slice(self, etype: str, sl: Obj) -> None:
        key = (sl["metadata"]["namespace"], sl["metadata"]["name"])
        if etype == "DELETED":
            self.slices.pop(key, None)
        else:
            self.slices[key] = sl
        self._dns_wake.set()

    def on_slice_sync(self, items: list[Obj]) -> None:
        self.slices = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in items}
        self._dns_wake.set()

    # --- DNS ---------------------------------------------------------------------------------------

    async def dns_loop(self) -> None:
        while True:
            await self._dns_wake.wait()
            # Coalesce a burst of endpoint changes into one rewrite.
            await asyncio.sleep(0.1)
            self._dns_wake.clear()
            self.records = podspec.service_records(self.services.values(), self.slices.values())
            for w in list(self.workers.values()):
                if w.state.ip and w.dir.exists():
                    try:
                        w.write_hosts()
                    except OSError as e:
                        log.warning("hosts for %s/%s: %s", *w.key, e)

    # --- scheduling --------------------------------------------------------------------------------

    def used(self) -> tuple[dict[str, int], int]:
        total = {"cpu": 0, "memory": 0}
        n = 0
        now = time.monotonic()
        # Bound, but this agent's watch has not delivered them yet: they count already.
        self.bound = {u: b for u, b in self.bound.items() if u not in self.workers and now - b[1] < 60}
        for pod, _ in self.bound.values():
            n += 1
            r = podspec.pod_requests(pod)
            for k in total:
                total[k] += r[k]
        for w in self.workers.values():
            if w.state.phase in TERMINAL or w.gone:
                continue
            n += 1
            r = podspec.pod_requests(w.pod)
            for k in total:
                total[k] += r[k]
        return total, n

    async def binder_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._bind_wake.wait(), self.cfg.resync_seconds)
            self._bind_wake.clear()
            try:
                await self.bind_pending()
            except (TimeoutError, ApiError, aiohttp.ClientError, OSError) as e:
                log.warning("binding: %s", e)

    async def bind_pending(self) -> None:
        used, n = self.used()
        pods = sorted(self.pending.values(), key=lambda p: p["metadata"].get("creationTimestamp", ""))
        for pod in pods:
            md = pod["metadata"]
            if md.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in TERMINAL:
                continue
            reason = podspec.unschedulable_reason(pod, self.node, used, n)
            if reason is None:
                binding = {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": md["name"], "namespace": md["namespace"], "uid": md["uid"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": self.cfg.name},
                }
                try:
                    await self.client.request(
                        "POST", PODS.path(md["namespace"], md["name"], "binding"), body=binding
                    )
                except ApiError as e:
                    if not (e.not_found or e.conflict):
                        raise
                self.pending.pop(md["uid"], None)
                self.unschedulable.pop(md["uid"], None)
                self.bound[md["uid"]] = (pod, time.monotonic())
                req = podspec.pod_requests(pod)
                for k in used:
                    used[k] += req[k]
                n += 1
                continue
            if self.unschedulable.get(md["uid"]) == reason:
                continue
            cond = {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": reason,
                "lastProbeTime": None,
                "lastTransitionTime": rfc3339(time.time()),
            }
            try:
                await self.client.patch(
                    PODS,
                    md["name"],
                    # resourceVersion: another node agent may have bound it meanwhile; then this is a 409.
                    {
                        "metadata": {"resourceVersion": md.get("resourceVersion")},
                        "status": {"phase": "Pending", "conditions": [cond]},
                    },
                    md["namespace"],
                    sub="status",
                )
            except ApiError as e:
                if e.not_found or e.conflict:
                    continue
                raise
            self.unschedulable[md["uid"]] = reason
            self.event(pod, "Warning", "FailedScheduling", reason)

    # --- restart recovery --------------------------------------------------------------------------

    async def recover(self) -> None:
        """Re-adopt the pods a previous agent started that are still wanted; clean up the rest."""
        api = await self.client.list(PODS, field_selector=f"spec.nodeName={self.cfg.name}")
        wanted = {p["metadata"]["uid"]: p for p in api["items"] if not p["metadata"].get("deletionTimestamp")}
        kept: set[str] = set()
        for d in sorted(self.pods_dir.iterdir()) if self.pods_dir.is_dir() else []:
            state = PodWorker.load(d)
            pod = wanted.get(d.name)
            if state is not None and pod is not None:
                self.adopt(pod, state)
                kept.add(state.netns)
                continue
            await self.cleanup_leftover(d, state)
        for ns in self.network.own_netns():
            if ns not in kept:
                _, veth = self.network.names_for(ns.split("-", 1)[1])
                await self.network.delete_pod_net(PodNet(ns, veth, ""))

    def adopt(self, pod: Obj, state: PodState) -> None:
        if state.ip and state.phase not in TERMINAL:
            self.network.reserve(state.ip, state.uid)
        # A recorded PID counts as ours only if its command line names this pod's folder: after a
        # reboot or a long outage the number may belong to another pod's process, or to anyone's.
        marker = f"{self.pods_dir / state.uid}/"
        if state.sandbox_pid and marker not in cmdline(state.sandbox_pid):
            state.sandbox_pid = 0
        w = PodWorker(self, pod, state)
        w.sandbox_ready = bool(state.sandbox_pid)
        for r in state.containers.values():
            if r.pid and marker in cmdline(r.pid) and pid_alive(r.pid):
                continue
            if r.pid:
                exit_file = w.dir / "containers" / r.name / str(r.attempt) / "exit.json"
                try:
                    r.exit = json.loads(exit_file.read_text())
                except (OSError, ValueError):
                    r.exit = {"exitCode": 137, "signal": 9, "finishedAt": time.time()}
                r.pid = 0
                w.schedule_backoff(r)
        self.workers[w.uid] = w

        async def resume() -> None:
            for r in state.containers.values():
                if r.pid:
                    w.watch(r)
                    w.start_probes(r, w.container_spec(r.name))

        self.spawn(resume())
        w.start()
        log.info("re-adopted pod %s/%s", *w.key)

    async def cleanup_leftover(self, d: Path, state: PodState | None) -> None:
        for pid in containers.find_pod_processes(str(d) + "/"):
            containers.kill(pid, signal.SIGKILL)
            await containers.wait_exit(pid)
        if state is not None:
            marker = str(d) + "/"
            for r in state.containers.values():
                if r.pid and marker in cmdline(r.pid):
                    containers.kill(r.pid, signal.SIGKILL)
                    await containers.wait_exit(r.pid)
            if state.sandbox_pid and marker in cmdline(state.sandbox_pid):
                containers.kill(state.sandbox_pid, signal.SIGKILL)
                await containers.wait_exit(state.sandbox_pid)
            if state.netns:
                await self.network.delete_pod_net(PodNet(state.netns, state.veth, state.ip))
            self.cgroups.remove(state.uid)
        shutil.rmtree(d, ignore_errors=True)

    # --- helpers for `rayop logs` / `rayop exec` and benchmarks ---------------------------------------

    def pod_memory(self, uid: str) -> int:
        return self.cgroups.usage(uid)

    def pod_processes(self, uid: str) -> list[int]:
        """Host PIDs of everything running in a pod's containers (their PID namespaces)."""
        w = self.workers.get(uid)
        if w is None:
            return []
        namespaces = set()
        for r in w.state.containers.values():
            with contextlib.suppress(OSError):
                if r.pid:
                    namespaces.add(os.readlink(f"/proc/{r.pid}/ns/pid"))
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/pid") in namespaces:
                        out.append(int(entry))
        return out
