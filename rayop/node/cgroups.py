"""Per-container cgroups (v1): memory limits, and the memory and CPU usage the kubelet API reports.

Two controllers, each where the machine has it and lets us write:
- memory: the container's limit (`memory.limit_in_bytes`) and its working set;
- cpuacct: the CPU time of everything the container ran, exited processes included (`cpuacct.usage`).

Limits are "recorded and ignored" when unavailable: the pod still runs, and Ray gets its resources from
its own `--memory`/`--num-cpus` flags anyway (KubeRay derives them from the container limits). Usage is
then read from /proc instead (see stats.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayop.node import podspec

log = logging.getLogger("rayop.node.cgroups")

V1_ROOT = Path("/sys/fs/cgroup")


def _own_v1_path(controller: str) -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            if controller in ctrls.split(","):
                return path
    except OSError:
        return None
    return None


def _make_root(controller: str, prefix: str) -> Path | None:
    """Our folder in the controller's hierarchy, under the agent's own cgroup (None: not available)."""
    own = _own_v1_path(controller)
    # A combined hierarchy (cpu,cpuacct) is mounted once; the per-controller name is a symlink to it.
    mount = V1_ROOT / controller
    if own is None or not mount.is_dir():
        return None
    root = mount / own.lstrip("/") / prefix
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.info("cannot create %s cgroups (%s)", controller, e)
        return None
    return root


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _inactive_file(memory_stat: Path) -> int:
    try:
        for line in memory_stat.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "total_inactive_file":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class ContainerCgroups:
    """The cgroups one container run joins (its init writes its PID to each `cgroup.procs`)."""

    procs: list[str] = field(default_factory=list)
    memory_dir: str | None = None  # shown to the container at /sys/fs/cgroup/memory, where Ray reads it


@dataclass(frozen=True)
class CgroupUsage:
    cpu_ns: int | None  # None: no cpuacct cgroup for this container
    memory_working_set: int | None  # None: no memory cgroup


class Cgroups:
    def __init__(self, prefix: str, enabled: bool = True) -> None:
        self.root: Path | None = None  # memory
        self.cpu_root: Path | None = None  # cpuacct
        if not enabled:
            return
        self.root = _make_root("memory", prefix)
        if self.root is None:
            log.info("no cgroup v1 memory controller: container memory limits are not enforced")
        self.cpu_root = _make_root("cpuacct", prefix)
        if self.cpu_root is None:
            log.info("no cgroup v1 cpuacct controller: container CPU usage is read from /proc")

    def _roots(self) -> list[Path]:
        return [r for r in (self.root, self.cpu_root) if r is not None]

    def prepare(self, uid: str, container: str, spec: dict[str, Any]) -> ContainerCgroups:
        """Cgroups for one container run (fresh counters: a restarted container starts from zero, like a
        new container of a CRI runtime)."""
        out = ContainerCgroups()
        if self.root is not None:
            d = self.root / uid / container
            try:
                d.mkdir(parents=True, exist_ok=True)
                limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
                value = str(podspec.mem_bytes(limit)) if limit else "-1"
                (d / "memory.limit_in_bytes").write_text(value)
                out.procs.append(str(d / "cgroup.procs"))
                out.memory_dir = str(d)
            except OSError as e:
                log.warning("memory cgroup for %s/%s: %s", uid, container, e)
        if self.cpu_root is not None:
            d = self.cpu_root / uid / container
            try:
                d.mkdir(parents=True, exist_ok=True)
                (d / "cpuacct.usage").write_text("0")
                out.procs.append(str(d / "cgroup.procs"))
            except OSError as e:
                log.warning("cpuacct cgroup for %s/%s: %s", uid, container, e)
        return out

    def usage(self, uid: str) -> int:
        """Bytes charged to a pod's containers (RSS + page cache + tmpfs)."""
        if self.root is None:
            return 0
        total = 0
        for f in (self.root / uid).glob("*/memory.usage_in_bytes"):
            try:
                total += int(f.read_text())
            except (OSError, ValueError):
                pass
        return total

    def container_usage(self, uid: str, container: str) -> CgroupUsage:
        """CPU time and working set (usage less inactive page cache, as the kubelet counts it)."""
        cpu = mem = None
        if self.cpu_root is not None:
            cpu = _read_int(self.cpu_root / uid / container / "cpuacct.usage")
        if self.root is not None:
            d = self.root / uid / container
            used = _read_int(d / "memory.usage_in_bytes")
            if used is not None:
                mem = max(0, used - _inactive_file(d / "memory.stat"))
        return CgroupUsage(cpu, mem)

    def remove(self, uid: str) -> None:
        for root in self._roots():
            d = root / uid
            if not d.is_dir():
                continue
            for sub in d.iterdir():
                if sub.is_dir():
                    try:
                        os.rmdir(sub)
                    except OSError as e:
                        log.debug("rmdir %s: %s", sub, e)
            try:
                os.rmdir(d)
            except OSError as e:
                log.debug("rmdir %s: %s", d, e)

    def remove_root(self) -> None:
        for root in self._roots():
            for d in root.iterdir():
                if d.is_dir():
                    self.remove(d.name)
            try:
                os.rmdir(root)
            except OSError as e:
                log.debug("rmdir %s: %s", root, e)
