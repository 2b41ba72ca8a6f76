"""The small processes the node agent leaves running for a pod, so pods outlive the agent itself.

`python -m rayop.node.shim sandbox ...`  holds the pod's namespaces: it joins the pod's named network
    namespace, creates UTS, IPC and mount namespaces (hostname = pod name; /etc/hosts, /etc/resolv.conf
    and /dev/shm private to the pod), then execs `sleep infinity` so the holder costs almost nothing.
`python -m rayop.node.shim run ...`  starts one container: joins the sandbox's namespaces, takes a private
    copy of the pod's mount namespace (the container's volumes and its own /tmp), creates a PID
    namespace and forks a tiny init inside it. The init forwards signals to the command's process
    group, reaps orphans (Ray daemonises gcs_server, raylet and friends), writes the command's output
    to the log file line by line with timestamps, and writes the exit status to a file, then exits; the kernel then kills whatever is left in the container's PID namespace,
    so a container never leaves stray processes behind.
`python -m rayop.node.shim exec ...`  runs a command inside a running container (exec probes,
    `rayop exec`), with the container's environment and working directory.

Only the standard library is imported here: these processes start often and must start fast.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import select
import shutil
import signal
import socket
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_PDEATHSIG = 1
NETNS_DIR = Path("/run/netns")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _setns_fds(fds: list[tuple[int, int]]) -> None:
    for fd, kind in fds:
        try:
            _check(_libc.setns(fd, kind), f"setns({kind:#x})")
        finally:
            os.close(fd)


def _open_ns(pid: int, names: list[tuple[str, int]]) -> list[tuple[int, int]]:
    # Open every namespace file before joining any: after joining the mount namespace /proc may differ.
    return [(os.open(f"/proc/{pid}/ns/{n}", os.O_RDONLY), kind) for n, kind in names]


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), f"unshare({flags:#x})")


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            None if src is None else src.encode(),
            dst.encode(),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            None if data is None else data.encode(),
        ),
        f"mount {src} on {dst} ({fstype})",
    )


def _pdeathsig(sig: int) -> None:
    _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


# Paths this process created for mount targets or the working directory. There is no image root
# filesystem: they exist on the host's, and the agent removes them with the pod (see pod.py).
CREATED: list[str] = []


def _ensure_target(target: str, is_dir: bool) -> None:
    p = Path(target)
    if p.exists() or p.is_symlink():
        return
    top = p
    while not top.parent.exists():
        top = top.parent
    if is_dir:
        p.mkdir(parents=True, exist_ok=True)
    else:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
    CREATED.append(str(top))


def apply_mounts(mounts: list[dict[str, Any]]) -> None:
    # Sources are opened before anything is mounted: an early mount (a private /tmp, say) may hide the
    # source of a later one; a bind from /proc/self/fd/N still reaches it.
    fds: list[int | None] = []
    for m in mounts:
        fds.append(None if m.get("type") == "tmpfs" else os.open(m["source"], os.O_PATH))
    try:
        for m, fd in zip(mounts, fds, strict=True):
            target = m["target"]
            if fd is None:
                _ensure_target(target, True)
                opts = m.get("options") or ""
                _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, opts or None)
                continue
            _ensure_target(target, os.path.isdir(f"/proc/self/fd/{fd}"))
            _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
            if m.get("readOnly"):
                _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)
    finally:
        for fd in fds:
            if fd is not None:
                os.close(fd)


def _write_json_atomic(path: str, data: dict[str, Any], dir_fd: int | None = None) -> None:
    name = os.path.basename(path) if dir_fd is not None else path
    tmp = f"{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=dir_fd)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _raise_nofile() -> None:
    # Container runtimes give containers a high open-files limit; Ray's start command raises its
    # soft limit to 65536 and fails quietly below that.
    try:
        nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        nr_open = 1048576
    want = min(1048576, nr_open)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (OSError, ValueError):
        pass


# --- sandbox ---------------------------------------------------------------------------------------


def sandbox(spec: dict[str, Any]) -> None:
    fd = os.open(str(NETNS_DIR / spec["netns"]), os.O_RDONLY)
    _setns_fds([(fd, CLONE_NEWNET)])
    _unshare(CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNS)
    socket.sethostname(spec["hostname"])
    # Nothing the pod mounts may propagate back to the host.
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    apply_mounts(spec.get("mounts") or [])
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_RDWR)
    for n in (0, 1):
        os.dup2(devnull, n)
    sleep = shutil.which("sleep") or "/bin/sleep"
    # argv[0] names the pod, so the agent can tell its holders from any other `sleep`.
    os.execv(sleep, [f"rayop-sandbox:{spec.get('podDir', '')}/", "infinity"])


# --- run -------------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


# --- container logs --------------------------------------------------------------------------------
# The container's stdout and stderr are pipes read by its init, which writes each line to the log file in
# the CRI logging format that kubelets read: `<RFC 3339 time, ns> <stdout|stderr> <F|P> <content>\n`, where
# P marks a part of a line longer than LOG_LINE_MAX that continues in the next record. The time of each
# line makes `kubectl logs --timestamps/--since` exact; rayop/node/logs.py reads the format.
LOG_LINE_MAX = 16 * 1024
LOG_DRAIN_SECONDS = 2.0


def log_record(stream: str, content: bytes, partial: bool, now_ns: int | None = None) -> bytes:
    ns = time.time_ns() if now_ns is None else now_ns
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    head = f"{stamp}.{ns % 1_000_000_000:09d}Z {stream} {'P' if partial else 'F'} ".encode()
    return head + content + b"\n"


class _LogCopier:
    """Copies one pipe to the log file, a record per line, on its own thread."""

    def __init__(self, fd: int, stream: str, log: int, lock: threading.Lock) -> None:
        self.fd, self.stream, self.log, self.lock = fd, stream, log, lock
        # finish() writes here to wake the thread: no polling, so an idle container costs no CPU.
        self.wake_r, self.wake_w = os.pipe()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _emit(self, content: bytes, partial: bool) -> None:
        rec = log_record(self.stream, content, partial)
        with self.lock:
            try:
                os.write(self.log, rec)
            except OSError:
                pass  # a full disk must not take the container down with it

    def _run(self) -> None:
        buf = b""
        closing = False
        while True:
            # Once closing, stop at the first moment the pipe holds nothing: orphans of the container
            # may keep its write end open for ever.
            ready, _, _ = select.select([self.fd, self.wake_r], [], [], 0 if closing else None)
            if self.wake_r in ready:
                closing = True
            if self.fd not in ready:
                if closing:
                    break
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                break
            buf = self._lines(buf + chunk)
        if buf:
            self._emit(buf, False)
        os.close(self.fd)

    def _lines(self, buf: bytes) -> bytes:
        """Emit the complete lines (and the parts of over-long ones) in buf; return the rest."""
        while True:
            nl = buf.find(b"\n", 0, LOG_LINE_MAX + 1)
            if nl >= 0:
                self._emit(buf[:nl], False)
                buf = buf[nl + 1 :]
            elif len(buf) > LOG_LINE_MAX:
                self._emit(buf[:LOG_LINE_MAX], True)
                buf = buf[LOG_LINE_MAX:]
            else:
                return buf

    def finish(self) -> None:
        """Write what the pipe still holds, then stop (processes left in the namespace die with it)."""
        os.write(self.wake_w, b"x")
        self.thread.join(LOG_DRAIN_SECONDS)


def _init(spec: dict[str, Any], ready_w: int, log: int, exit_dir: int) -> int:
    """PID 1 of the container's PID namespace. `log` and `exit_dir` were opened before the container's
    mounts, which may hide the agent's state directory (a volume over /tmp, say)."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    err_r, err_w = os.pipe()
    os.set_inheritable(err_w, False)
    out_r, out_w = os.pipe()
    errs_r, errs_w = os.pipe()
    started = time.time()
    child = os.fork()
    if child == 0:
        os.close(err_r)
        os.close(out_r)
        os.close(errs_r)
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(out_w, 1)
            os.dup2(errs_w, 2)
            os.close(out_w)
            os.close(errs_w)
            for s in FORWARDED:
                signal.signal(s, signal.SIG_DFL)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.chdir(spec.get("cwd") or "/")
            argv = spec["argv"]
            os.execvpe(argv[0], argv, spec["env"])
        except BaseException as e:
            os.write(err_w, f"{type(e).__name__}: {e}".encode())
        os._exit(127)
    os.close(err_w)
    os.close(out_w)
    os.close(errs_w)
    lock = threading.Lock()
    copiers = [_LogCopier(out_r, "stdout", log, lock), _LogCopier(errs_r, "stderr", log, lock)]
    failure = b""
    while True:
        chunk = os.read(err_r, 4096)
        if not chunk:
            break
        failure += chunk
    os.close(err_r)

    stopping = False

    def forward(sig: int, _frame: Any) -> None:
        # To the main process and its direct children. A shell running `...; ray start --block` (KubeRay's
        # container command) forwards nothing itself, and Ray must not get the signal in every process:
        # `ray start` drains the node and stops its daemons in a few seconds, but with raylet and GCS
        # signalled at the same time its drain waits out its whole 30 s deadline.
        nonlocal stopping
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            stopping = True
        for pid in [child, *_children(child)]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    for s in FORWARDED:
        signal.signal(s, forward)
    os.write(ready_w, b"x")
    os.close(ready_w)
    status = 0
    main_done = False
    while True:
        try:
            pid, st = os.wait()
        except ChildProcessError:
            break
        if pid == child:
            status = st
            main_done = True
        # The container ends with its main process, except while stopping: then the rest (orphaned to
        # this init) may finish shutting down within the grace period the agent enforces.
        if main_done and not stopping:
            break
    finished = time.time()
    for c in copiers:
        c.finish()
    result: dict[str, Any] = {"startedAt": started, "finishedAt": finished}
    if failure:
        result.update(exitCode=128, reason="StartError", message=failure.decode(errors="replace"))
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        result.update(exitCode=128 + sig, signal=sig)
    else:
        result.update(exitCode=os.WEXITSTATUS(status))
    _write_json_atomic(spec["exitFile"], result, exit_dir)
    return int(result["exitCode"]) & 0xFF


def run(spec: dict[str, Any]) -> None:
    sb = int(spec["sandboxPid"])
    fds = _open_ns(
        sb, [("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET), ("mnt", CLONE_NEWNS)]
    )
    procs = spec.get("cgroupProcs") or []
    for path in [procs] if isinstance(procs, str) else procs:
        # Joined before forking so the init and everything under it are accounted to the container.
        Path(path).write_text(str(os.getpid()))
    log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    exit_dir = os.open(os.path.dirname(spec["exitFile"]) or ".", os.O_RDONLY | os.O_DIRECTORY)
    _setns_fds(fds)
    _unshare(CLONE_NEWNS | CLONE_NEWPID)
    apply_mounts(spec.get("mounts") or [])
    _ensure_target(spec.get("cwd") or "/", True)
    home = (spec.get("env") or {}).get("HOME")
    if home:
        _ensure_target(home, True)
    _write_json_atomic("created.json", {"paths": CREATED}, exit_dir)
    _raise_nofile()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        # The agent waits for the shim's stdout to close; the init must not keep it open.
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.close(devnull)
        code = 1
        try:
            code = _init(spec, ready_w, log, exit_dir)
        except BaseException as e:
            _write_json_atomic(
                spec["exitFile"],
                {"exitCode": 128, "reason": "StartError", "message": str(e), "finishedAt": time.time()},
                exit_dir,
            )
        os._exit(code)
    os.close(ready_w)
    os.close(log)
    os.close(exit_dir)
    # Wait until the command was exec'd (or failed to), so "started" means started.
    os.read(ready_r, 1)
    sys.stdout.write(f"started {pid}\n")
    sys.stdout.flush()


# --- exec ------------------------------------------------------------------------------------------


def exec_in(pid: int, spec: dict[str, Any], argv: list[str], tty: bool = False) -> int:
    """Run argv in the container whose init is `pid`. With `tty`, stdin is a terminal (a pty the caller
    opened) that becomes the command's controlling terminal, so shells get job control and ^C."""
    fds = _open_ns(
        pid,
        [
            ("ipc", CLONE_NEWIPC),
            ("uts", CLONE_NEWUTS),
            ("net", CLONE_NEWNET),
            ("pid", CLONE_NEWPID),
            ("mnt", CLONE_NEWNS),
        ],
    )
    _setns_fds(fds)
    env = dict(spec.get("env") or {})
    for k in ("TERM", "COLUMNS", "LINES"):
        if k in os.environ:
            env.setdefault(k, os.environ[k])
    child = os.fork()
    if child == 0:
        _pdeathsig(signal.SIGKILL)
        try:
            if tty:
                os.setsid()
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            os.chdir(spec.get("cwd") or "/")
            os.execvpe(argv[0], argv, env)
        except OSError as e:
            sys.stderr.write(f"exec {argv[0]}: {e}\n")
            os._exit(126 if isinstance(e, PermissionError) else 127)

    def forward(sig: int, _frame: Any) -> None:
        try:
            os.kill(child, sig)
        except ProcessLookupError:
            pass

    for s in FORWARDED:
        signal.signal(s, forward)
    while True:
        _, st = os.waitpid(child, 0)
        if os.WIFEXITED(st):
            return os.WEXITSTATUS(st)
        if os.WIFSIGNALED(st):
            return 128 + os.WTERMSIG(st)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: shim sandbox SPEC | run SPEC | exec PID SPEC [--tty] -- CMD...\n")
        return 2
    mode, rest = argv[0], argv[1:]
    if mode == "sandbox":
        sandbox(json.loads(Path(rest[0]).read_text()))
        return 0
    if mode == "run":
        run(json.loads(Path(rest[0]).read_text()))
        return 0
    if mode == "exec":
        pid, spec_path, cmd = int(rest[0]), rest[1], rest[2:]
        tty = bool(cmd) and cmd[0] == "--tty"
        if tty:
            cmd = cmd[1:]
        if cmd and cmd[0] == "--":
            cmd = cmd[1:]
        spec = json.loads(Path(spec_path).read_text()) if spec_path else {}
        return exec_in(pid, spec, cmd, tty)
    sys.stderr.write(f"unknown mode {mode}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
