"""The token Secret for `authOptions.mode: token` (docs/compatibility.md#auth-secret)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from rayop.api import constants as C
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders.pod import auth_secret_name


def needs_auth_secret(cluster: Mapping[str, Any]) -> bool:
    """The operator makes the Secret only for token mode without a user Secret and without K8s token auth."""
    auth = (cluster.get("spec") or {}).get("authOptions") or {}
    return cl.is_auth_enabled(cluster) and not auth.get("secretName") and not cl.is_k8s_auth_enabled(cluster)


def build_auth_secret(cluster: Mapping[str, Any], token: str) -> Obj:
    """The Secret `<cluster>` holding `auth_token`; the caller generates the token (builders take no randomness)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": cl.child_metadata(cluster, auth_secret_name(cluster)),
        "data": {C.AUTH_TOKEN_SECRET_KEY: base64.b64encode(token.encode()).decode()},
    }
