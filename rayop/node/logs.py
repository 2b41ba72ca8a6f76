"""Reading container logs the way a kubelet serves them (`kubectl logs` and its flags).

The container's init (shim.py) writes the CRI logging format, one record per line:

    2026-01-02T03:04:05.123456789Z stdout F the line's content
    <RFC 3339 time, ns precision>  <stdout|stderr>  <F: full line | P: part of a longer line>  <content>

`LogReader` turns such a file into what the kubelet's /containerLogs endpoint sends: the contents (a newline
after each full line), optionally each prefixed by its time, limited to the last `tailLines` records, to
records since a time, and to `limitBytes`. Following is the caller's loop: call `read()` again when the
file grew, and stop when the container is gone (see `follow_done`).
"""

from __future__ import annotations

import calendar
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

STREAMS = ("All", "Stdout", "Stderr")
_RECORD = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z (stdout|stderr) ([FP]) ?")
_TAIL_BLOCK = 64 * 1024


class LogOptionError(ValueError):
    """A log option that the kubelet would reject (the message names it)."""


@dataclass(frozen=True)
class LogOptions:
    """`PodLogOptions` as the kubelet takes them from the query string."""

    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: float | None = None  # seconds since the epoch
    limit_bytes: int | None = None
    stream: str = "All"

    def __post_init__(self) -> None:
        if self.tail_lines is not None and self.tail_lines < 0:
            raise LogOptionError("tailLines: must be greater than or equal to 0")
        if self.since_seconds is not None and self.since_seconds < 1:
            raise LogOptionError("sinceSeconds: must be greater than 0")
        if self.since_seconds is not None and self.since_time is not None:
            raise LogOptionError("sinceSeconds: at most one of sinceTime or sinceSeconds may be specified")
        if self.limit_bytes is not None and self.limit_bytes < 1:
            raise LogOptionError("limitBytes: must be greater than 0")
        if self.stream not in STREAMS:
            raise LogOptionError(f"stream: must be one of {', '.join(STREAMS)}")

    def since_ns(self, now: float) -> int:
        """Records older than this (ns since the epoch) are skipped; 0: none are."""
        if self.since_seconds is not None:
            return int((now - self.since_seconds) * 1e9)
        if self.since_time is not None:
            return int(self.since_time * 1e9)
        return 0


@dataclass(frozen=True)
class LogRecord:
    time_ns: int
    stream: str
    partial: bool
    content: bytes


def parse_record(line: bytes) -> LogRecord:
    """One line of a log file, without its newline. A line not in the CRI format (a file written before
    the format was adopted) is stdout content of unknown time."""
    m = _RECORD.match(line)
    if m is None:
        return LogRecord(0, "stdout", False, line)
    secs = calendar.timegm(time.strptime(m.group(1).decode(), "%Y-%m-%dT%H:%M:%S"))
    frac = (m.group(2) or b"0").decode().ljust(9, "0")
    return LogRecord(
        secs * 1_000_000_000 + int(frac), m.group(3).decode(), m.group(4) == b"P", line[m.end() :]
    )


def format_rfc3339_nano(ns: int) -> str:
    """Go's RFC3339Nano, which the kubelet prefixes lines with: trailing zeros of the fraction dropped."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return f"{stamp}.{frac}Z" if frac else f"{stamp}Z"


def tail_offset(path: Path, lines: int) -> int:
    """Where the last `lines` records of the file start (0: the whole file)."""
    if lines <= 0:
        return os.path.getsize(path)
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        # The file ends with a newline when its last record is complete: that one does not count.
        want = lines
        while pos > 0:
            size = min(_TAIL_BLOCK, pos)
            pos -= size
            f.seek(pos)
            block = f.read(size)
            if pos + size == end and block.endswith(b"\n"):
                block = block[:-1]
            idx = len(block)
            while True:
                idx = block.rfind(b"\n", 0, idx)
                if idx < 0:
                    break
                want -= 1
                if want == 0:
                    return pos + idx + 1
    return 0


class LogReader:
    """Reads one container log file incrementally, applying the options."""

    def __init__(self, path: Path, opts: LogOptions, now: float | None = None) -> None:
        self.path = path
        self.opts = opts
        self.since = opts.since_ns(time.time() if now is None else now)
        self.offset = 0 if opts.tail_lines is None else _tail_or_zero(path, opts.tail_lines)
        self.sent = 0

    @property
    def exhausted(self) -> bool:
        return self.opts.limit_bytes is not None and self.sent >= self.opts.limit_bytes

    def read(self, max_bytes: int = 1 << 20) -> bytes:
        """The output for the complete records written since the last call (at most about max_bytes of
        the file at a time; call again while it returns data)."""
        if self.exhausted:
            return b""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(max_bytes)
        except FileNotFoundError:
            return b""
        end = data.rfind(b"\n")
        if end < 0:
            return b""
        out = bytearray()
        want = {"Stdout": "stdout", "Stderr": "stderr"}.get(self.opts.stream)
        for line in data[:end].split(b"\n"):
            rec = parse_record(line)
            if rec.time_ns < self.since or (want is not None and rec.stream != want):
                continue
            if self.opts.timestamps:
                out += format_rfc3339_nano(rec.time_ns).encode() + b" "
            out += rec.content
            if not rec.partial:
                out += b"\n"
        self.offset += end + 1
        if self.opts.limit_bytes is not None:
            out = out[: max(0, self.opts.limit_bytes - self.sent)]
        self.sent += len(out)
        return bytes(out)

    def at_end(self) -> bool:
        try:
            return os.path.getsize(self.path) <= self.offset
        except OSError:
            return True


def _tail_or_zero(path: Path, lines: int) -> int:
    try:
        return tail_offset(path, lines)
    except FileNotFoundError:
        return 0
