"""Writing files that hold secrets (keys, tokens, kubeconfigs)."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path | str, data: bytes) -> None:
    """Write `data` to `path`, readable by its owner only, never visible to others even for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
        os.write(fd, data)
    finally:
        os.close(fd)


def replace_private(path: Path | str, data: bytes) -> None:
    """`write_private` to a temporary file, then rename over `path`: readers never see a half-written
    file (a server reloading its certificate, say)."""
    tmp = Path(f"{path}.tmp")
    write_private(tmp, data)
    os.replace(tmp, path)
