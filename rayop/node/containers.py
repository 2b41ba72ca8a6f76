"""The node's container runtime: starting pod sandboxes and containers through the shim, finding, signalling,
waiting for and exec'ing into their processes (no API calls; `shim.py` is the program these start)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from rayop.base.procs import cmdline, pid_alive

SHIM = [sys.executable, "-m", "rayop.node.shim"]


class ContainerStartError(Exception):
    """A pod sandbox or a container did not start; the message ends with the shim's last log lines."""


def find_pod_processes(marker: str) -> list[int]:
    """Live shims, container inits and sandbox holders whose command line names `marker` (a pod's
    directory); container commands themselves die with their init's PID namespace."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            cl = cmdline(int(entry))
            if ("rayop.node.shim" in cl or "rayop-sandbox:" in cl) and marker in cl and pid_alive(int(entry)):
                out.append(int(entry))
    return out


def kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


async def wait_exit(pid: int) -> None:
    """Wait until a process (not necessarily our child) has exited, through a pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, ready)
    try:
        if not pid_alive(pid):
            return
        await fut
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _spawn_shim(mode: str, spec_path: Path, stderr_path: Path) -> tuple[int, str]:
    """Run the shim until it reports on stdout; returns (its exit code, its first output line)."""
    with open(stderr_path, "ab") as err:
        proc = await asyncio.create_subprocess_exec(
            *SHIM,
            mode,
            str(spec_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            # Pods must survive the agent: their shims are not in its session or process group.
            start_new_session=True,
        )
    assert proc.stdout
    line = (await proc.stdout.readline()).decode().strip()
    if mode == "run":
        code = await proc.wait()
    else:
        # The sandbox holder keeps running (it became `sleep infinity`); reap it in the background.
        code = 0 if line == "ready" else await proc.wait()
        if line == "ready":
            asyncio.get_running_loop().create_task(proc.wait())
            line = f"ready {proc.pid}"
    return code, line


async def start_sandbox(spec: dict[str, Any], pod_dir: Path) -> int:
    path = pod_dir / "sandbox.json"
    path.write_text(json.dumps(spec))
    code, line = await _spawn_shim("sandbox", path, pod_dir / "shim.log")
    if not line.startswith("ready "):
        raise ContainerStartError(f"sandbox failed (exit {code}): {_tail(pod_dir / 'shim.log')}")
    return int(line.split()[1])


async def start_container(spec: dict[str, Any], run_dir: Path) -> int:
    path = run_dir / "spec.json"
    path.write_text(json.dumps(spec))
    code, line = await _spawn_shim("run", path, run_dir / "shim.log")
    if code != 0 or not line.startswith("started "):
        raise ContainerStartError(f"container start failed (exit {code}): {_tail(run_dir / 'shim.log')}")
    return int(line.split()[1])


def _tail(p: Path, n: int = 5) -> str:
    try:
        return " | ".join(p.read_text(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return ""


def exec_argv(init_pid: int, spec_path: Path, argv: list[str], tty: bool = False) -> list[str]:
    return [*SHIM, "exec", str(init_pid), str(spec_path), *(["--tty"] if tty else []), "--", *argv]


async def exec_in(init_pid: int, spec_path: Path, argv: list[str], timeout: float) -> tuple[int, bytes]:
    """Run a command inside a container; output captured; exit code (-1 on timeout)."""
    proc = await asyncio.create_subprocess_exec(
        *exec_argv(init_pid, spec_path, argv),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        # The shim's child dies with it (PDEATHSIG).
        kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        return -1, b""
    return proc.returncode or 0, out
