"""The API server's error answers, as one exception type that says what the caller may do next."""

from __future__ import annotations

import json
from typing import Any

import aiohttp


def api_error(resp: aiohttp.ClientResponse, raw: bytes, method: str, url: str) -> ApiError:
    try:
        err = json.loads(raw)
    except ValueError:
        err = {"message": raw.decode(errors="replace")}
    if not isinstance(err, dict):
        err = {"message": str(err)}
    retry_after = resp.headers.get("Retry-After")
    if retry_after and retry_after.isdigit():
        # Keep the header's hint where a Status body carries it, so callers read one place.
        details = err.setdefault("details", {})
        if isinstance(details, dict):
            details.setdefault("retryAfterSeconds", int(retry_after))
    return ApiError(resp.status, err, method, url)


class ApiError(Exception):
    """An error answer from the API server, with its HTTP status and Status body."""

    def __init__(self, status: int, body: Any, method: str = "", url: str = "") -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        self.reason = str(self.body.get("reason", ""))
        self.message = str(self.body.get("message", body))
        self.method = method
        self.url = url
        super().__init__(f"{method} {url}: {status} {self.reason}: {self.message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def retryable(self) -> bool:
        """The server asked to be asked again later: 429 (API Priority and Fairness, max-in-flight), or a 5xx
        with Retry-After (client-go's checkWait)."""
        return self.status == 429 or (self.status >= 500 and self.retry_after > 0)

    @property
    def retry_after(self) -> float:
        """Seconds the server asked us to wait (429/503 Retry-After or Status details), else 0."""
        details = self.body.get("details") or {}
        try:
            return float(details.get("retryAfterSeconds") or 0) if isinstance(details, dict) else 0.0
        except (TypeError, ValueError):
            return 0.0
