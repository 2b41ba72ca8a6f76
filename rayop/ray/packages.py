"""A local directory as a Ray runtime-env package (`working_dir`), the way `ray job submit --working-dir`
ships it: a zip of the directory's files (paths relative to it), named by a hash of its content,
`gcs://_ray_pkg_<hex>.zip`, uploaded once to the head's dashboard (`PUT /api/packages/gcs/<name>`)
and unpacked by Ray as the job's working directory (ray/_private/runtime_env/packaging.py).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import stat
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

RAY_PKG_PREFIX = "_ray_pkg_"
# The dashboard's HTTP server refuses bodies above 100 MiB (ray_constants.DASHBOARD_CLIENT_MAX_SIZE).
MAX_PACKAGE_BYTES = 100 * 1024 * 1024
# Never shipped: version control data and Python's caches (Ray skips what .gitignore lists; these are
# the usual bulk of it).
DEFAULT_EXCLUDES = (".git", "__pycache__", "*.pyc", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache")
# A fixed timestamp makes the zip of unchanged files byte-identical (zip needs a date from 1980 on).
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PackageError(ValueError):
    """The directory cannot be shipped (missing, not a directory, too large)."""


@dataclass(frozen=True)
class Package:
    uri: str  # gcs://_ray_pkg_<hex>.zip
    data: bytes
    files: int

    @property
    def protocol(self) -> str:
        return self.uri.split("://", 1)[0]

    @property
    def name(self) -> str:
        return self.uri.split("://", 1)[1]


def _excluded(rel: str, excludes: Sequence[str]) -> bool:
    parts = rel.split("/")
    for pattern in excludes:
        if fnmatch.fnmatch(rel, pattern) or any(fnmatch.fnmatch(p, pattern) for p in parts):
            return True
    return False


def _walk(root: Path, excludes: Sequence[str]) -> Iterator[tuple[str, Path]]:
    """(relative path, path) of every file and empty directory, sorted, symlinks to files followed."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        dirnames[:] = sorted(d for d in dirnames if not _excluded(_join(rel_dir, d), excludes))
        kept = sorted(f for f in filenames if not _excluded(_join(rel_dir, f), excludes))
        if not dirnames and not kept and rel_dir != ".":
            yield rel_dir + "/", base
        for f in kept:
            yield _join(rel_dir, f), base / f


def _join(rel_dir: str, name: str) -> str:
    return name if rel_dir == "." else f"{rel_dir}/{name}"


def package_directory(directory: str | os.PathLike[str], excludes: Sequence[str] = ()) -> Package:
    root = Path(directory).expanduser()
    if not root.exists():
        raise PackageError(f"--working-dir {directory}: no such directory")
    if not root.is_dir():
        raise PackageError(f"--working-dir {directory}: not a directory")
    patterns = (*DEFAULT_EXCLUDES, *excludes)
    digest = hashlib.sha1(usedforsecurity=False)
    buf = io.BytesIO()
    files = 0
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel, path in _walk(root, patterns):
            info = zipfile.ZipInfo(rel, _ZIP_TIME)
            digest.update(rel.encode() + b"\0")
            if rel.endswith("/"):
                info.external_attr = (stat.S_IFDIR | 0o755) << 16
                zf.writestr(info, b"")
                continue
            try:
                data = path.read_bytes()
                mode = path.stat().st_mode
            except OSError as e:
                raise PackageError(f"--working-dir: cannot read {path}: {e.strerror}") from e
            # Keep the executable bit (scripts run as ./run.sh); the rest as a plain file.
            info.external_attr = (stat.S_IFREG | (0o755 if mode & 0o111 else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
            digest.update(len(data).to_bytes(8, "big") + data + (b"x" if mode & 0o111 else b"-"))
            files += 1
            if buf.tell() > MAX_PACKAGE_BYTES:
                break
    data = buf.getvalue()
    if len(data) > MAX_PACKAGE_BYTES:
        raise PackageError(
            f"--working-dir {directory}: more than {MAX_PACKAGE_BYTES // (1024 * 1024)} MiB zipped, the most Ray's "
            "dashboard accepts; leave large files out with --exclude"
        )
    return Package(uri=f"gcs://{RAY_PKG_PREFIX}{digest.hexdigest()}.zip", data=data, files=files)
