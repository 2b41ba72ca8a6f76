"""Pure parts of `rayop job submit`'s watch: the status line, when the job is over, and the exit code."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from rayop.base.objects import meta, status_of

JOB_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
# Deployment states after which no job result will come.
DEPLOYMENT_FAILED = frozenset({"Failed", "ValidationFailed"})


def entrypoint_of(args: Sequence[str]) -> str:
    """One argument is a shell command line as written (`-- "python a.py | tee x"`); several are quoted
    so each stays one word (`-- python -c 'print(1)'`)."""
    if len(args) == 1:
        return args[0]
    return shlex.join(args)


def format_elapsed(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def status_line(job: Mapping[str, Any], elapsed: float) -> str:
    st = status_of(job)
    deployment = str(st.get("jobDeploymentStatus") or "New")
    status = str(st.get("jobStatus") or "-")
    return f"RayJob {meta(job).get('name', '')}: {deployment}, job {status}, {format_elapsed(elapsed)}"


@dataclass(frozen=True)
class Outcome:
    code: int
    message: str


def outcome(job: Mapping[str, Any], driver_exit_code: int | None = None) -> Outcome | None:
    """None while the job may still finish; else the exit code and a one-line verdict.

    0 on SUCCEEDED; on FAILED the driver's exit code when Ray reports one, else 1; STOPPED and a failed
    deployment (cluster never ready, deadline exceeded, submitter failed) are 1."""
    st = status_of(job)
    name = meta(job).get("name", "")
    job_status = str(st.get("jobStatus") or "")
    deployment = str(st.get("jobDeploymentStatus") or "")
    reason = str(st.get("reason") or "")
    message = str(st.get("message") or "")
    if job_status == "SUCCEEDED":
        return Outcome(0, f"RayJob {name} succeeded")
    if job_status == "FAILED":
        code = driver_exit_code if driver_exit_code and driver_exit_code > 0 else 1
        detail = f": {message}" if message else ""
        return Outcome(code, f"RayJob {name} failed (exit code {code}){detail}")
    if job_status == "STOPPED":
        return Outcome(1, f"RayJob {name} was stopped{': ' + message if message else ''}")
    if deployment in DEPLOYMENT_FAILED:
        why = ", ".join(x for x in (reason, message) if x) or "see `rayop get jobs` and its events"
        return Outcome(1, f"RayJob {name} failed: {why}")
    return None


class StatusLine:
    """A status line on a terminal (rewritten in place, under the streamed logs); elsewhere one line per
    change of state, so a CI log stays readable."""

    def __init__(self, err: TextIO | None = None, out: TextIO | None = None, tty: bool | None = None) -> None:
        self.err = err or sys.stderr
        self.out = out or sys.stdout
        self.tty = self.err.isatty() if tty is None else tty
        self.shown = ""
        self.last_key = ""

    def update(self, line: str, key: str) -> None:
        if self.tty:
            self.err.write("\r\x1b[K" + line)
            self.err.flush()
            self.shown = line
        elif key != self.last_key:
            self.err.write(line + "\n")
            self.err.flush()
        self.last_key = key

    def log(self, text: str) -> None:
        if self.tty and self.shown:
            self.err.write("\r\x1b[K")
            self.err.flush()
        self.out.write(text)
        self.out.flush()
        if self.tty and self.shown:
            if not text.endswith("\n"):
                self.out.write("\n")
            self.err.write(self.shown)
            self.err.flush()

    def note(self, text: str) -> None:
        """A message that stays (not overwritten by the next update)."""
        if self.tty and self.shown:
            self.err.write("\r\x1b[K")
        self.err.write(text + "\n")
        if self.tty and self.shown:
            self.err.write(self.shown)
        self.err.flush()

    def close(self) -> None:
        if self.tty and self.shown:
            self.err.write("\n")
            self.err.flush()
            self.shown = ""
