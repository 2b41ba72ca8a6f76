"""Fetch the OpenAPI v3 documents the CRD generator composes (the I/O half of `rayop.api.crdgen`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rayop.api.crdgen import REQUIRED_DOCUMENTS
from rayop.runtime.client import ApiClient


class OpenAPIError(RuntimeError):
    """The API server does not serve a document the generator needs."""


def _json(body: Any) -> Any:
    # The discovery document comes back as text/plain, which the client hands over undecoded.
    return json.loads(body) if isinstance(body, str) else body


async def fetch_documents(
    client: ApiClient, paths: Sequence[str] = REQUIRED_DOCUMENTS
) -> list[dict[str, Any]]:
    """The OpenAPI v3 documents at /openapi/v3/<path>, in the order of `paths`.

    The discovery document names each group's URL with a content hash; asking for that URL lets the API
    server answer from its cache, and a group it does not list is reported instead of guessed at.
    """
    index = _json(await client.request("GET", "/openapi/v3"))
    listed = index.get("paths", {}) if isinstance(index, dict) else {}
    docs: list[dict[str, Any]] = []
    for path in paths:
        entry = listed.get(path)
        if not entry:
            raise OpenAPIError(f"the API server does not serve /openapi/v3/{path}")
        doc = await client.request(
            "GET", entry.get("serverRelativeURL") or f"/openapi/v3/{path}", timeout=120
        )
        if not isinstance(doc, dict) or "components" not in doc:
            raise OpenAPIError(f"/openapi/v3/{path} is not an OpenAPI document")
        docs.append(doc)
    return docs
