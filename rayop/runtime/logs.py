"""Structured logging: console text or one JSON object per line (`--log-stdout-encoder json|console`).

Context goes in `extra=` (controller, namespace, name, reconcileID, ...) and comes out as fields in JSON
or as key=value pairs in console mode, matching what zap prints for KubeRay.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, TextIO

# Attributes every LogRecord has; everything else on a record came from `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


def _ts(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _ts(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(_extras(record))
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        kv = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{_ts(record)}\t{record.levelname}\t{record.name}\t{record.getMessage()}"
        if kv:
            line += f"\t{kv}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(
    encoder: str = "console",
    level: str | int = "INFO",
    *,
    stream: TextIO | None = None,
    file_path: str | None = None,
    file_encoder: str | None = None,
) -> None:
    """Configure the root logger once for the process (replaces existing handlers)."""
    if encoder not in ("json", "console"):
        raise ValueError(f"log encoder {encoder!r}: want json or console")
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if encoder == "json" else ConsoleFormatter())
    root.addHandler(handler)
    if file_path:
        fh = logging.FileHandler(file_path)
        fenc = file_encoder or encoder
        fh.setFormatter(JsonFormatter() if fenc == "json" else ConsoleFormatter())
        root.addHandler(fh)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # aiohttp's access log and asyncio's debug chatter are noise at info level.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
