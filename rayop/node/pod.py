"""One pod on the local node: its sandbox, containers, probes and status (a kubelet's pod worker)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from rayop.base.procs import pid_alive
from rayop.base.times import format_time
from rayop.base.types import Obj
from rayop.node import containers, podspec
from rayop.node.cgroups import Cgroups
from rayop.node.network import Network, PodNet
from rayop.node.probes import ProbeWorker, run_probe
from rayop.node.volumes import RefCache, VolumeError, VolumeManager
from rayop.runtime.client import PODS, ApiClient, ApiError

# Pods get their own /etc/profile (podspec.LOGIN_PROFILE) where the host has one to shadow.
HOST_HAS_PROFILE = os.path.isfile("/etc/profile")
log = logging.getLogger("rayop.node.pod")

TERMINAL = ("Succeeded", "Failed")


def rfc3339(t: float | None) -> str | None:
    return None if t is None else format_time(t)


@dataclass
class ContainerRun:
    """What the node knows about one container; persisted so a restarted agent can re-adopt it."""

    name: str
    init: bool = False
    attempt: int = -1  # index of the current/last run; -1: never started
    restart_count: int = 0
    pid: int = 0  # host PID of the container's init, 0 when not running
    started_at: float | None = None
    exit: dict[str, Any] | None = None  # last termination of the current run
    last_exit: dict[str, Any] | None = None  # termination before that (lastState)
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    backoff_until: float = 0.0
    backoff: float = 0.0
    ready: bool = False
    started: bool = False
    liveness_killed: bool = False

    @property
    def running(self) -> bool:
        return self.pid != 0

    def persist(self) -> dict[str, Any]:
        d = asdict(self)
        d["ready"] = False
        return d


@dataclass
class PodState:
    uid: str
    namespace: str
    name: str
    ip: str = ""
    netns: str = ""
    veth: str = ""
    sandbox_pid: int = 0
    start_time: float | None = None
    phase: str = "Pending"
    containers: dict[str, ContainerRun] = field(default_factory=dict)


class PodHost(Protocol):
    """What a pod worker needs from its node: `NodeAgent` implements it. A worker reaches other pods only
    through these (the host-path claims, the hosts file), never through their workers."""

    @property
    def client(self) -> ApiClient: ...

    @property
    def http(self) -> aiohttp.ClientSession:
        """For HTTP probes."""
        ...

    @property
    def network(self) -> Network: ...

    @property
    def cgroups(self) -> Cgroups: ...

    @property
    def allocatable(self) -> Obj:
        """The node's allocatable resources: limits a container leaves unset default to these."""
        ...

    @property
    def pods_dir(self) -> Path:
        """Where each pod gets its folder (`<pods_dir>/<uid>`)."""
        ...

    @property
    def pvc_dir(self) -> Path:
        """Where PersistentVolumeClaims bound on this node keep their data."""
        ...

    @property
    def restart_backoff(self) -> tuple[float, float]:
        """(first, longest) delay before a failed container is started again, in seconds."""
        ...

    def event(self, pod: Obj, etype: str, reason: str, message: str) -> None:
        """A core/v1 Event about `pod` from this kubelet (best effort, repeats folded)."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A background task that outlives the call (kept referenced until it ends)."""
        ...

    def base_env(self, hostname: str, image: str = "") -> dict[str, str]:
        """The environment every container starts with (PATH, HOME, the API server's variables); the
        image picks the environment whose bin/ leads PATH (`rayop node --image-env`)."""
        ...

    def resolv_conf(self, namespace: str) -> str: ...

    def hosts_file(self, ip: str, hostname: str, namespace: str, subdomain: str | None) -> str:
        """The pod's /etc/hosts: its own names, the API server, and the Services it may resolve."""
        ...

    def ip_status(self, ip: str) -> Obj:
        """The hostIP/podIP fields of a pod status."""
        ...

    def release_host_paths(self, uid: str, created: set[str]) -> None:
        """Pod `uid` is gone: remove the (empty) host paths its shims created, unless another pod of the
        node claims them."""


class PodWorker:
    def __init__(self, host: PodHost, pod: Obj, state: PodState | None = None) -> None:
        self.host = host
        self.pod = pod
        md = pod["metadata"]
        self.uid: str = md["uid"]
        self.key = (md["namespace"], md["name"])
        self.dir = host.pods_dir / self.uid
        self.state = state or PodState(self.uid, md["namespace"], md["name"])
        self.volumes = VolumeManager(host.client, self.dir, host.pvc_dir, host.allocatable)
        self.wake = asyncio.Event()
        self.gone = False
        self.task: asyncio.Task[None] | None = None
        self.watchers: dict[str, asyncio.Task[None]] = {}
        self.probes: dict[str, list[asyncio.Task[None]]] = {}
        self.last_status: Obj | None = None
        self.transitions: dict[str, tuple[str, float]] = {}
        self.last_volume_sync = 0.0
        self.sandbox_ready = state is not None and state.sandbox_pid != 0
        self.events_sent: set[str] = set()

    # --- bookkeeping -------------------------------------------------------------------------------

    @property
    def spec(self) -> Obj:
        spec: Obj = self.pod.get("spec") or {}
        return spec

    @property
    def restart_policy(self) -> str:
        return str(self.spec.get("restartPolicy") or "Always")

    @property
    def hostname(self) -> str:
        return str(self.spec.get("hostname") or self.pod["metadata"]["name"])[:63]

    def update(self, pod: Obj) -> None:
        self.pod = pod
        self.wake.set()

    def persist(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        d = asdict(self.state)
        d["containers"] = {k: v.persist() for k, v in self.state.containers.items()}
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(d))
        os.replace(tmp, self.dir / "state.json")

    @staticmethod
    def load(pod_dir: Path) -> PodState | None:
        try:
            d = json.loads((pod_dir / "state.json").read_text())
        except (OSError, ValueError):
            return None
        runs = {k: ContainerRun(**v) for k, v in (d.pop("containers") or {}).items()}
        return PodState(**d, containers=runs)

    def runs(self, init: bool) -> list[ContainerRun]:
        key = "initContainers" if init else "containers"
        out = []
        for c in self.spec.get(key) or []:
            run = self.state.containers.get(c["name"])
            if run is None:
                run = ContainerRun(c["name"], init=init)
                if init:
                    run.waiting_reason = "PodInitializing"
                self.state.containers[c["name"]] = run
            out.append(run)
        return out

    def container_spec(self, name: str) -> Obj:
        for c in (self.spec.get("initContainers") or []) + (self.spec.get("containers") or []):
            if c["name"] == name:
                return dict(c)
        raise KeyError(name)

    # --- main loop ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop(), name=f"pod {self.key}")

    async def _loop(self) -> None:
        failures = 0
        while True:
            self.wake.clear()
            try:
                next_in = await self.sync()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 1
                log.exception("pod %s/%s: sync failed", *self.key)
                self.host.event(self.pod, "Warning", "FailedSync", f"error syncing pod: {e}")
                next_in = min(30.0, 0.5 * 2**failures)
            if next_in is None:
                return
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), next_in)

    async def sync(self) -> float | None:
        """One pass; returns when to look again (None: the worker is finished)."""
        md = self.pod["metadata"]
        if self.gone:
            await self.kill_all(0)
            await self.teardown(remove_dir=True)
            return None
        if md.get("deletionTimestamp"):
            grace = md.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = self.spec.get("terminationGracePeriodSeconds", 30)
            await self.kill_all(float(grace))
            if self.state.phase not in TERMINAL:
                # Like the kubelet, a deleted pod ends in a terminal phase that reflects how it stopped.
                self.state.phase = podspec.pod_phase(
                    "Never", True, False, [self.container_status(r) for r in self.runs(False)]
                )
                if self.state.phase not in TERMINAL:
                    self.state.phase = "Failed"
            await self.teardown(remove_dir=False)
            await self.push_status()
            try:
                await self.host.client.delete(
                    PODS, md["name"], md["namespace"], grace_period=0, preconditions={"uid": self.uid}
                )
            except ApiError as e:
                if not (e.not_found or e.conflict):
                    raise
            await self.teardown(remove_dir=True)
            return None
        if self.state.phase in TERMINAL:
            await self.kill_all(0)
            await self.teardown(remove_dir=False)
            await self.push_status()
            return 60.0
        if self.state.start_time is None:
            self.state.start_time = time.time()
        wait = await self.ensure_sandbox()
        if wait is not None:
            await self.push_status()
            return wait
        next_in = 30.0
        now = time.time()
        if now - self.last_volume_sync > 30:
            # ConfigMap/Secret updates and token rotation reach running containers like on a kubelet.
            await self.sync_volumes()
        inits_ok, init_failed, n = await self.step_init()
        next_in = min(next_in, n)
        if inits_ok and not init_failed:
            next_in = min(next_in, await self.step_containers())
        self.state.phase = podspec.pod_phase(
            self.restart_policy,
            inits_ok,
            init_failed,
            [self.container_status(r) for r in self.runs(False)],
        )
        self.persist()
        await self.push_status()
        if self.state.phase in TERMINAL:
            self.wake.set()
        return max(0.05, next_in)

    # --- sandbox -----------------------------------------------------------------------------------

    async def ensure_sandbox(self) -> float | None:
        if self.sandbox_ready and pid_alive(self.state.sandbox_pid):
            return None
        if self.sandbox_ready:
            # The holder died under us (killed by hand?): start over, like a kubelet with a dead sandbox.
            log.warning("pod %s/%s: sandbox gone, recreating", *self.key)
            await self.kill_all(0)
            await self.teardown(remove_dir=False)
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            refs = RefCache(self.host.client, self.state.namespace)
            vols = await self.volumes.sync(self.pod, refs)
            self.last_volume_sync = time.time()
        except VolumeError as e:
            self.set_waiting_all("ContainerCreating", str(e))
            self.host.event(self.pod, "Warning", "FailedMount", str(e))
            return 5.0
        if not self.state.ip:
            self.state.ip = self.host.network.allocate(self.uid)
        net = await self.host.network.create_pod_net(self.uid, self.state.ip)
        self.state.netns, self.state.veth = net.netns, net.veth
        self.write_hosts()
        etc = self.dir / "etc"
        (etc / "hostname").write_text(self.hostname + "\n")
        (etc / "resolv.conf").write_text(self.host.resolv_conf(self.state.namespace))
        mounts: list[Obj] = [
            {"source": str(etc / "hosts"), "target": "/etc/hosts"},
            {"source": str(etc / "hostname"), "target": "/etc/hostname"},
            {"source": str(etc / "resolv.conf"), "target": "/etc/resolv.conf"},
            {"type": "tmpfs", "target": "/dev/shm", "options": "mode=1777"},
        ]
        if HOST_HAS_PROFILE:  # a bind mount needs its target
            (etc / "profile").write_text(podspec.LOGIN_PROFILE)
            mounts.append({"source": str(etc / "profile"), "target": "/etc/profile"})
        for v in vols.values():
            if v.tmpfs_options is not None:
                mounts.append({"type": "tmpfs", "target": str(v.path), "options": v.tmpfs_options})
        spec = {"netns": net.netns, "hostname": self.hostname, "mounts": mounts, "podDir": str(self.dir)}
        self.state.sandbox_pid = await containers.start_sandbox(spec, self.dir)
        self.sandbox_ready = True
        self.persist()
        log.info("pod %s/%s: sandbox up, ip %s", *self.key, self.state.ip)
        return None

    def write_hosts(self) -> None:
        etc = self.dir / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        content = self.host.hosts_file(
            self.state.ip, self.hostname, self.state.namespace, self.spec.get("subdomain")
        )
        p = etc / "hosts"
        try:
            if p.read_text() == content:
                return
        except OSError:
            pass
        # Rewritten in place: the pod sees this inode through a bind mount, a rename would be invisible.
        with open(p, "a+") as f:
            f.seek(0)
            f.truncate()
            f.write(content)

    async def sync_volumes(self) -> None:
        refs = RefCache(self.host.client, self.state.namespace)
        try:
            await self.volumes.sync(self.pod, refs)
        except VolumeError as e:
            log.warning("pod %s/%s: volume refresh: %s", *self.key, e)
        self.last_volume_sync = time.time()

    async def teardown(self, remove_dir: bool) -> None:
        for t in list(self.watchers.values()):
            t.cancel()
        self.watchers.clear()
        for name in list(self.probes):
            self.stop_probes(name)
        # Safety net: any container init of this pod the state does not know about (a start that was
        # interrupted after the shim forked) is found by its spec path and killed with its namespace.
        for pid in containers.find_pod_processes(str(self.dir) + "/"):
            containers.kill(pid, signal.SIGKILL)
            await containers.wait_exit(pid)
        if self.state.sandbox_pid:
            containers.kill(self.state.sandbox_pid, signal.SIGKILL)
            await containers.wait_exit(self.state.sandbox_pid)
            self.state.sandbox_pid = 0
        self.sandbox_ready = False
        if self.state.netns:
            await self.host.network.delete_pod_net(PodNet(self.state.netns, self.state.veth, self.state.ip))
            self.state.netns = ""
        self.host.cgroups.remove(self.uid)
        if self.state.ip and (remove_dir or self.state.phase in TERMINAL):
            # The status keeps showing a finished pod's IP, as a kubelet's does; the address is free.
            self.host.network.release(self.state.ip, self.uid)
        if remove_dir:
            self.remove_created_paths()
            shutil.rmtree(self.dir, ignore_errors=True)
        elif self.dir.exists():
            self.persist()

    def remove_created_paths(self) -> None:
        """Hand the host paths the shims created for mount targets and working directories to the node,
        which removes those no other pod of the node claims."""
        created: set[str] = set()
        for f in self.dir.glob("containers/*/*/created.json"):
            with contextlib.suppress(OSError, ValueError):
                created.update(json.loads(f.read_text()).get("paths") or [])
        if created:
            self.host.release_host_paths(self.uid, created)

    # --- containers --------------------------------------------------------------------------------

    def set_waiting_all(self, reason: str, message: str) -> None:
        for r in self.state.containers.values():
            if not r.running:
                r.waiting_reason, r.waiting_message = reason, message

    async def step_init(self) -> tuple[bool, bool, float]:
        """Init containers in order. Returns (all done, failed for good, when to look again)."""
        next_in = 30.0
        for r in self.runs(True):
            c = self.container_spec(r.name)
            sidecar = c.get("restartPolicy") == "Always"
            if r.running:
                if sidecar and r.started:
                    continue
                return False, False, next_in
            if r.exit is not None and r.exit.get("exitCode") == 0 and not sidecar:
                continue
            if r.exit is not None and not sidecar and self.restart_policy == "Never":
                return False, True, next_in
            wait = r.backoff_until - time.time()
            if r.exit is not None and wait > 0:
                r.waiting_reason = "CrashLoopBackOff" if r.exit else "PodInitializing"
                return False, False, wait
            await self.start_container(r)
            return False, False, 0.05 if not r.running else next_in
        return True, False, next_in

    async def step_containers(self) -> float:
        next_in = 30.0
        for r in self.runs(False):
            if r.running:
                continue
            if r.exit is not None:
                code = r.exit.get("exitCode", 0)
                policy = self.restart_policy
                if policy == "Never" or (policy == "OnFailure" and code == 0):
                    continue
                wait = r.backoff_until - time.time()
                if wait > 0:
                    r.waiting_reason = "CrashLoopBackOff"
                    r.waiting_message = (
                        f"back-off {int(r.backoff)}s restarting failed container={r.name} pod={self.key[1]}"
                    )
                    next_in = min(next_in, wait)
                    continue
            await self.start_container(r)
        return next_in

    async def start_container(self, r: ContainerRun) -> None:
        c = self.container_spec(r.name)
        refs = RefCache(self.host.client, self.state.namespace)
        cms, secs = await refs.text_maps(self.pod)
        pod_view = self.pod_with_status()
        try:
            env = podspec.build_env(
                pod_view,
                c,
                self.host.base_env(self.hostname, str(c.get("image") or "")),
                cms,
                secs,
                self.host.allocatable,
            )
        except podspec.MissingRef as e:
            r.waiting_reason, r.waiting_message = "CreateContainerConfigError", str(e)
            self.host.event(self.pod, "Warning", "Failed", f"Error: {e}")
            return
        argv = podspec.command_line(c, env)
        if not argv:
            r.waiting_reason = "CreateContainerError"
            r.waiting_message = "no command specified (the node agent runs no image entrypoint)"
            return
        vols = self.volumes.layout(self.pod)
        if r.attempt >= 0:
            r.restart_count += 1
        r.attempt += 1
        run_dir = self.dir / "containers" / r.name / str(r.attempt)
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "containers" / r.name / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        tmp.chmod(0o1777)
        mounts: list[Obj] = [{"source": str(tmp), "target": "/tmp"}]
        vm = sorted(c.get("volumeMounts") or [], key=lambda m: m["mountPath"].rstrip("/").count("/"))
        for m in vm:
            v = vols.get(m["name"])
            if v is None:
                r.waiting_reason = "CreateContainerConfigError"
                r.waiting_message = f"volume {m['name']!r} not found"
                return
            src = v.path / m["subPath"] if m.get("subPath") else v.path
            if m.get("subPath") and not src.exists():
                src.mkdir(parents=True, exist_ok=True)
            mounts.append({"source": str(src), "target": m["mountPath"], "readOnly": bool(m.get("readOnly"))})
        cgroups = self.host.cgroups.prepare(self.uid, r.name, c)
        if cgroups.memory_dir:
            # The container's own memory cgroup where a container sees it: Ray sizes its object store
            # and memory monitor from /sys/fs/cgroup/memory/memory.limit_in_bytes, as in a real pod.
            mounts.append({"source": cgroups.memory_dir, "target": "/sys/fs/cgroup/memory", "readOnly": True})
        spec = {
            "sandboxPid": self.state.sandbox_pid,
            "argv": argv,
            "env": env,
            "cwd": c.get("workingDir") or "/",
            "mounts": mounts,
            "log": str(run_dir / "log"),
            "exitFile": str(run_dir / "exit.json"),
            "cgroupProcs": cgroups.procs,
        }
        r.exit, r.last_exit = None, r.exit if r.exit is not None else r.last_exit
        r.ready = r.started = False
        r.liveness_killed = False
        try:
            r.pid = await containers.start_container(spec, run_dir)
        except containers.ContainerStartError as e:
            r.pid = 0
            r.exit = {"exitCode": 128, "reason": "StartError", "message": str(e), "finishedAt": time.time()}
            self.schedule_backoff(r)
            self.host.event(self.pod, "Warning", "Failed", f"Error: {e}")
            return
        r.started_at = time.time()
        r.waiting_reason, r.waiting_message = "", ""
        self.persist()
        self.host.event(self.pod, "Normal", "Started", f"Started container {r.name}")
        self.watch(r)
        self.start_probes(r, c)

    def watch(self, r: ContainerRun) -> None:
        old = self.watchers.pop(r.name, None)
        if old:
            old.cancel()
        self.watchers[r.name] = asyncio.get_running_loop().create_task(self._watch(r, r.pid, r.attempt))

    async def _watch(self, r: ContainerRun, pid: int, attempt: int) -> None:
        await containers.wait_exit(pid)
        if r.pid != pid:
            return
        exit_file = self.dir / "containers" / r.name / str(attempt) / "exit.json"
        try:
            info = json.loads(exit_file.read_text())
        except (OSError, ValueError):
            info = {"exitCode": 137, "signal": 9, "finishedAt": time.time()}
        info.setdefault("startedAt", r.started_at)
        if r.liveness_killed:
            info.setdefault("message", "container failed liveness probe")
        r.exit = info
        r.pid = 0
        r.ready = r.started = False
        self.stop_probes(r.name)
        self.schedule_backoff(r)
        self.persist()
        self.wake.set()

    def schedule_backoff(self, r: ContainerRun) -> None:
        ran = (r.exit or {}).get("finishedAt", time.time()) - (r.started_at or time.time())
        init, cap = self.host.restart_backoff
        # A container that ran for a while starts its back-off over, like the kubelet's.
        r.backoff = init if ran > 2 * cap or r.backoff == 0 else min(cap, r.backoff * 2)
        r.backoff_until = time.time() + r.backoff

    async def kill_container(self, r: ContainerRun, grace: float) -> None:
        pid = r.pid
        if not pid:
            return
        self.stop_probes(r.name)
        if grace > 0:
            containers.kill(pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(containers.wait_exit(pid), grace)
            except TimeoutError:
                pass
        # SIGKILL to the init: the kernel kills its whole PID namespace, daemons included.
        containers.kill(pid, signal.SIGKILL)
        await containers.wait_exit(pid)
        w = self.watchers.get(r.name)
        if w is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(w), 5)

    async def kill_all(self, grace: float) -> None:
        # Regular containers first, then init/sidecar containers, as the kubelet orders them.
        regular = [r for r in self.state.containers.values() if not r.init and r.running]
        await asyncio.gather(*(self.kill_container(r, grace) for r in regular))
        rest = [r for r in self.state.containers.values() if r.running]
        await asyncio.gather(*(self.kill_container(r, grace) for r in rest))

    # --- probes ------------------------------------------------------------------------------------

    def start_probes(self, r: ContainerRun, c: Obj) -> None:
        self.stop_probes(r.name)
        tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        startup, live, ready = c.get("startupProbe"), c.get("livenessProbe"), c.get("readinessProbe")
        pid = r.pid

        def attempt(probe: Obj) -> Callable[[], Any]:
            async def go() -> tuple[bool, str]:
                async def ex(argv: list[str], timeout: float) -> int:
                    code, _ = await containers.exec_in(pid, self.run_dir(r) / "spec.json", argv, timeout)
                    return code

                return await run_probe(probe, self.state.ip, c, ex, self.host.http)

            return go

        def on_change(kind: str, ok: bool, msg: str) -> None:
            if r.pid != pid:
                return
            if kind == "startup":
                if ok:
                    r.started = True
                    r.ready = r.ready or not ready
                    after_startup()
                else:
                    self.host.event(self.pod, "Warning", "Unhealthy", f"Startup probe failed: {msg}")
                    self.host.spawn(self.liveness_kill(r, c, startup or {}))
            elif kind == "readiness":
                r.ready = ok
                if not ok:
                    self.host.event(self.pod, "Warning", "Unhealthy", f"Readiness probe failed: {msg}")
            elif kind == "liveness" and not ok:
                self.host.event(self.pod, "Warning", "Unhealthy", f"Liveness probe failed: {msg}")
                self.host.spawn(self.liveness_kill(r, c, live or {}))
            self.wake.set()

        def after_startup() -> None:
            for kind, probe in (("liveness", live), ("readiness", ready)):
                if probe:
                    w = ProbeWorker(kind, probe, attempt(probe), on_change)
                    tasks.append(loop.create_task(w.run()))

        if startup:
            w = ProbeWorker("startup", startup, attempt(startup), on_change)
            tasks.append(loop.create_task(w.run()))
        else:
            r.started = True
            r.ready = not ready
            after_startup()
        self.probes[r.name] = tasks

    def stop_probes(self, name: str) -> None:
        for t in self.probes.pop(name, []):
            t.cancel()

    async def liveness_kill(self, r: ContainerRun, c: Obj, probe: Obj) -> None:
        r.liveness_killed = True
        grace = probe.get("terminationGracePeriodSeconds")
        if grace is None:
            grace = self.spec.get("terminationGracePeriodSeconds", 30)
        self.host.event(
            self.pod, "Normal", "Killing", f"Container {r.name} failed liveness probe, will be restarted"
        )
        await self.kill_container(r, float(grace))

    def run_dir(self, r: ContainerRun) -> Path:
        d: Path = self.dir / "containers" / r.name / str(max(r.attempt, 0))
        return d

    # --- status ------------------------------------------------------------------------------------

    def pod_with_status(self) -> Obj:
        pod = dict(self.pod)
        st = dict(pod.get("status") or {})
        st.update(self.host.ip_status(self.state.ip))
        pod["status"] = st
        return pod

    def container_status(self, r: ContainerRun) -> Obj:
        c = self.container_spec(r.name)
        cid = f"rayop://{self.uid}/{r.name}/{r.attempt}" if r.attempt >= 0 else None
        st: Obj = {
            "name": r.name,
            "image": c.get("image", ""),
            "imageID": "",
            "ready": bool(r.running and r.ready and self.state.phase not in TERMINAL),
            "started": bool(r.running and r.started),
            "restartCount": r.restart_count,
        }
        if cid:
            st["containerID"] = cid
        last = r.last_exit
        if r.running:
            st["state"] = {"running": {"startedAt": rfc3339(r.started_at)}}
        elif r.exit is not None and (self.terminal_for(r) or not r.waiting_reason):
            st["state"] = {"terminated": self.terminated(r.exit, cid)}
        else:
            waiting: Obj = {"reason": r.waiting_reason or "ContainerCreating"}
            if r.waiting_message:
                waiting["message"] = r.waiting_message
            st["state"] = {"waiting": waiting}
            if r.exit is not None:
                last = r.exit
        st["lastState"] = {"terminated": self.terminated(last, None)} if last else {}
        return st

    def terminal_for(self, r: ContainerRun) -> bool:
        """Will this terminated container stay terminated (no restart coming)?"""
        code = (r.exit or {}).get("exitCode", 0)
        if r.init:
            return code == 0 or self.restart_policy == "Never"
        return self.restart_policy == "Never" or (self.restart_policy == "OnFailure" and code == 0)

    @staticmethod
    def terminated(info: Obj | None, cid: str | None) -> Obj:
        info = info or {}
        code = int(info.get("exitCode", 0))
        t: Obj = {
            "exitCode": code,
            "reason": info.get("reason") or ("Completed" if code == 0 else "Error"),
            "startedAt": rfc3339(info.get("startedAt")),
            "finishedAt": rfc3339(info.get("finishedAt")),
        }
        if info.get("signal"):
            t["signal"] = int(info["signal"])
        if info.get("message"):
            t["message"] = info["message"]
        if cid:
            t["containerID"] = cid
        return t

    def _cond(self, ctype: str, ok: bool, reason: str = "") -> Obj:
        status = "True" if ok else "False"
        prev = self.transitions.get(ctype)
        if prev is None or prev[0] != status:
            self.transitions[ctype] = (status, time.time())
        c: Obj = {
            "type": ctype,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": rfc3339(self.transitions[ctype][1]),
        }
        if reason and not ok:
            c["reason"] = reason
        return c

    def build_status(self) -> Obj:
        inits = [self.container_status(r) for r in self.runs(True)]
        regular = [self.container_status(r) for r in self.runs(False)]
        init_done = all(
            ("terminated" in s["state"] and s["state"]["terminated"]["exitCode"] == 0)
            or (self.container_spec(s["name"]).get("restartPolicy") == "Always" and s["started"])
            for s in inits
        )
        terminal = self.state.phase in TERMINAL
        containers_ready = bool(regular) and all(s["ready"] for s in regular) and not terminal
        conds = [
            self._cond("PodReadyToStartContainers", self.sandbox_ready),
            self._cond("Initialized", init_done or terminal, "ContainersNotInitialized"),
            self._cond("Ready", containers_ready, "PodCompleted" if terminal else "ContainersNotReady"),
            self._cond(
                "ContainersReady", containers_ready, "PodCompleted" if terminal else "ContainersNotReady"
            ),
            self._cond("PodScheduled", True),
        ]
        if terminal:
            for c in conds[1:4]:
                if c["type"] == "Initialized":
                    c["status"] = "True"
                    c.pop("reason", None)
        ours = {c["type"] for c in conds}
        for c in (self.pod.get("status") or {}).get("conditions") or []:
            if c.get("type") not in ours:
                conds.append(c)
        status: Obj = {
            "phase": self.state.phase,
            "conditions": conds,
            **self.host.ip_status(self.state.ip),
            "startTime": rfc3339(self.state.start_time),
            "containerStatuses": regular,
        }
        if inits:
            status["initContainerStatuses"] = inits
        return status

    async def push_status(self) -> None:
        status = self.build_status()
        if status == self.last_status:
            return
        md = self.pod["metadata"]
        try:
            updated = await self.host.client.patch(
                PODS, md["name"], {"status": status}, md["namespace"], sub="status"
            )
        except ApiError as e:
            if e.not_found:
                return
            raise
        self.last_status = status
        if updated.get("metadata", {}).get("uid") == self.uid:
            self.pod = updated
