"""A real Ray head run as a local process by the test.

Every port is chosen free and the head gets its own --temp-dir, so it never collides with other Ray
processes on the machine; it is stopped by PID (SIGTERM to its process group, then SIGKILL), never with
`ray stop`, which would kill every Ray process on the host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

RAY_ENV = Path(os.environ.get("RAYOP_RAY_ENV") or Path.home() / ".cache" / "rayop" / "ray" / "2.60.0")
RAY_BIN = RAY_ENV / "bin"


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


@dataclass
class LocalRayHead:
    proc: subprocess.Popen[bytes]
    temp_dir: Path
    dashboard_port: int
    gcs_port: int
    log_path: Path

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Children that left the group (raylet workers re-parented) are found by the temp dir in argv.
        _kill_by_marker(str(self.temp_dir))
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _kill_by_marker(marker: str) -> None:
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid_dir.name), signal.SIGKILL)


def start_head(num_cpus: int = 2, timeout: float = 90.0) -> LocalRayHead:
    if not (RAY_BIN / "ray").exists():
        raise FileNotFoundError(f"no Ray environment at {RAY_ENV}")
    ports = free_ports(9)
    (gcs, dash, client, agent_http, agent_grpc, metrics, rt_agent, autoscaler_m, dash_m) = ports
    # Worker processes get their own range; Ray refuses a range that contains another chosen port.
    wmin = next(b for b in range(20000, 30000, 250) if not any(b <= p <= b + 200 for p in ports))
    # Short path: Ray's unix sockets live under the temp dir and the path limit is ~107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="rjh", dir="/tmp"))
    log_path = temp_dir / "ray-start.log"
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{RAY_BIN}:{env.get('PATH', '')}",
            "RAY_USAGE_STATS_ENABLED": "0",
            "AUTOSCALER_METRIC_PORT": str(autoscaler_m),
            "DASHBOARD_METRIC_PORT": str(dash_m),
            "VIRTUAL_ENV": str(RAY_ENV),
            # Ray 2.60 turns token auth on by itself when a token file exists in the home directory
            # (~/.ray/auth_token, shared by everyone on this machine); these tests run without auth.
            "RAY_AUTH_MODE": "disabled",
        }
    )
    env.pop("PYTHONPATH", None)
    argv = [
        str(RAY_BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--disable-usage-stats",
        f"--num-cpus={num_cpus}",
        "--memory=2000000000",
        "--object-store-memory=200000000",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={rt_agent}",
        f"--min-worker-port={wmin}",
        f"--max-worker-port={wmin + 200}",
        f"--temp-dir={temp_dir}",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head = LocalRayHead(proc, temp_dir, dash, gcs, log_path)
    deadline = time.monotonic() + timeout
    url = f"{head.dashboard_url}/api/gcs_healthz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log_path.read_text()[-3000:]
            head.stop()
            raise RuntimeError(f"ray start exited with {proc.returncode}: {text}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if b"success" in r.read():
                    # The job agent starts a little after the head module answers.
                    with urllib.request.urlopen(f"{head.dashboard_url}/api/jobs/", timeout=5) as j:
                        j.read()
                    return head
        except OSError:
            pass
        time.sleep(0.5)
    text = log_path.read_text()[-3000:]
    head.stop()
    raise TimeoutError(f"Ray head did not become healthy in {timeout}s: {text}")
