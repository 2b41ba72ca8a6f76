"""Container memory limits through cgroup v1 (where the machine has it and lets us write), else none.

Limits are "recorded and ignored" when unavailable: the pod still runs, and Ray gets its resources from
its own `--memory`/`--num-cpus` flags anyway (KubeRay derives them from the container limits).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from rayop.node import podspec

log = logging.getLogger("rayop.node.cgroups")

V1_MEMORY = Path("/sys/fs/cgroup/memory")


def _own_v1_path(controller: str) -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            if controller in ctrls.split(","):
                return path
    except OSError:
        return None
    return None


class Cgroups:
    def __init__(self, prefix: str, enabled: bool = True) -> None:
        self.root: Path | None = None
        if not enabled:
            return
        own = _own_v1_path("memory")
        if own is None or not V1_MEMORY.is_dir():
            log.info("no cgroup v1 memory controller: container memory limits are not enforced")
            return
        root = V1_MEMORY / own.lstrip("/") / prefix
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            log.info("cannot create cgroups (%s): container memory limits are not enforced", e)
            return
        self.root = root

    def prepare(self, uid: str, container: str, spec: dict[str, Any]) -> str | None:
        """A cgroup for one container run; returns its cgroup.procs path (None: no cgroups)."""
        if self.root is None:
            return None
        d = self.root / uid / container
        try:
            d.mkdir(parents=True, exist_ok=True)
            limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
            value = str(podspec.mem_bytes(limit)) if limit else "-1"
            (d / "memory.limit_in_bytes").write_text(value)
        except OSError as e:
            log.warning("cgroup for %s/%s: %s", uid, container, e)
            return None
        return str(d / "cgroup.procs")

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

    def remove(self, uid: str) -> None:
        if self.root is None:
            return
        d = self.root / uid
        if not d.is_dir():
            return
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
        if self.root is None:
            return
        for d in self.root.iterdir():
            if d.is_dir():
                self.remove(d.name)
        try:
            os.rmdir(self.root)
        except OSError as e:
            log.debug("rmdir %s: %s", self.root, e)
