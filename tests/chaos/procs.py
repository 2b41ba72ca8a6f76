"""The processes the campaign starts, kills and restarts: operator replicas, the webhook, the node agent.

Each runs in its own session, is stopped by its PID (never by name), and appends to a log file of its own
per incarnation, so what a process said before it was killed stays readable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from rayop.base.procs import pid_alive
from rayop.local.plane import pick_free_ports

REPO = Path(__file__).resolve().parents[2]


class Proc:
    """One long-running child; `start` again after `kill` is a restart (a new incarnation)."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_dir = log_dir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.incarnation = 0
        self.kills = 0
        self.exits: list[int] = []  # exit codes of incarnations that ended without being killed or stopped
        self._accounted: set[int] = set()

    @property
    def log(self) -> Path:
        return self.log_dir / f"{self.name}.{self.incarnation}.log"

    def start(self) -> None:
        self.incarnation += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exited(self) -> int | None:
        """The exit code if this incarnation ended on its own (recorded in `exits` once), else None."""
        if self.proc is None or self.proc.poll() is None or self.incarnation in self._accounted:
            return None
        self._accounted.add(self.incarnation)
        self.exits.append(int(self.proc.returncode))
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL the whole process group: nothing is flushed, released or cleaned up."""
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
            self.kills += 1
            self._accounted.add(self.incarnation)  # not an exit of its own

    def stop(self, grace: float = 30.0) -> None:
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
            self._accounted.add(self.incarnation)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@dataclass
class OperatorSpec:
    kubeconfig: Path
    namespaces: list[str]
    log_dir: Path
    fleet_url: str = ""  # fake Ray: dashboards and Serve proxies at this fleet; else the API server's proxy
    leader_election: bool = False
    lease_namespace: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)


class OperatorReplica(Proc):
    """`rayop operator` as the chart runs it, watching the campaign's namespaces; webhook off (the
    campaign runs the webhook as its own process, and the fuzzers want it off)."""

    def __init__(self, spec: OperatorSpec, index: int) -> None:
        (self.probe_port,) = pick_free_ports(1)
        args = [
            "operator",
            f"--kubeconfig={spec.kubeconfig}",
            f"--watch-namespace={','.join(spec.namespaces)}",
            "--metrics-addr=0",
            f"--health-probe-bind-address=127.0.0.1:{self.probe_port}",
            f"--enable-leader-election={'true' if spec.leader_election else 'false'}",
            "--enable-webhook=false",
            "--log-stdout-encoder=console",
        ]
        if spec.lease_namespace:
            args.append(f"--leader-election-namespace={spec.lease_namespace}")
        env = dict(os.environ, **spec.extra_env)
        if spec.fleet_url:
            from tests.chaos.operator_entry import FLEET_ENV

            env[FLEET_ENV] = spec.fleet_url
            argv = [sys.executable, "-m", "tests.chaos.operator_entry", *args]
        else:
            args.append("--use-kubernetes-proxy=true")
            argv = [sys.executable, "-m", "rayop.cli.main", *args]
        super().__init__(f"operator-{index}", argv, spec.log_dir, env)
        self.spec = spec

    def ready(self) -> bool:
        return self.alive() and http_ok(f"http://127.0.0.1:{self.probe_port}/readyz")

    def leads(self) -> bool:
        """This incarnation holds the lease (it says so once it won)."""
        return self.alive() and (not self.spec.leader_election or "became leader" in self.text())


class Operators:
    """One replica (no leader election) or two (leader election, one standby)."""

    def __init__(self, spec: OperatorSpec, replicas: int) -> None:
        self.spec = spec
        self.replicas = [OperatorReplica(spec, i) for i in range(replicas)]

    def start(self) -> None:
        for r in self.replicas:
            r.start()

    def stop(self) -> None:
        for r in self.replicas:
            r.stop()

    def leader(self) -> OperatorReplica | None:
        leaders = [r for r in self.replicas if r.leads()]
        return leaders[0] if len(leaders) == 1 else None

    def ready(self) -> bool:
        """Every replica runs and answers /readyz, and exactly one leads."""
        return all(r.ready() for r in self.replicas) and self.leader() is not None

    def unexpected_exits(self) -> list[str]:
        out = []
        for r in self.replicas:
            code = r.exited()
            if code is not None:
                out.append(f"{r.name} (incarnation {r.incarnation}) exited with code {code}:\n{r.tail(15)}")
        return out

    def revive(self) -> None:
        """Start again any replica that ended on its own (what a Deployment's kubelet does)."""
        for r in self.replicas:
            if not r.alive():
                r.start()


def wait_until(pred: object, timeout: float, what: str, interval: float = 0.2) -> None:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout:.0f} s")


def pids_alive(pids: list[int]) -> list[int]:
    return [p for p in pids if pid_alive(p)]
