"""Checks on processes by PID, for code that stops or adopts processes it started earlier."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether `pid` names a live process (a zombie has exited already and counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    # The command name (field 2) is in parentheses and may itself hold ") " or spaces: the state is the
    # first field after the *last* closing parenthesis.
    rest = stat.rsplit(")", 1)[-1].split()
    return bool(rest) and rest[0] != "Z"


def cmdline(pid: int) -> str:
    """The command line of `pid` with arguments joined by spaces ("" when it is gone or unreadable)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
