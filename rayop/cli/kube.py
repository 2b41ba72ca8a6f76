"""What every command that talks to a cluster shares: where (kubeconfig, context, namespace), how to print
(table, yaml, json), shell completion of names, and errors a user can act on instead of tracebacks.

Commands take the kubectl options (`--kubeconfig`, `--context`, `-n/--namespace`, `-A`, `-o`) through the
`Annotated` aliases below, build a `Target`, and run their async body with `run()`, which turns every
expected failure (no kubeconfig, unreachable server, missing CRDs, not found, forbidden, a failing exec
plugin) into one `error: ...` line and exit code 1. `RAYOP_DEBUG=1` shows the traceback of the
unexpected ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote, urlsplit

import aiohttp
import typer
import yaml

from rayop.base.types import Obj
from rayop.builders.generate import ShapeError
from rayop.runtime.client import NAMESPACES, ApiClient, ApiError, Resource
from rayop.runtime.kubeconfig import (
    ClientConfig,
    ExecPluginError,
    KubeconfigError,
    default_paths,
    load_config,
    read_kubeconfig,
)

T = TypeVar("T")

USER_AGENT = "rayop-cli"
# Names of kinds in messages, by plural (the API server's Status names the plural).
KIND_NAMES = {
    "rayclusters": "RayCluster",
    "rayjobs": "RayJob",
    "rayservices": "RayService",
    "pods": "pod",
    "services": "service",
    "namespaces": "namespace",
}


class CliError(Exception):
    """A failure the user can act on: printed as `error: <message>`, exit code `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Output(StrEnum):
    table = "table"
    yaml = "yaml"
    json = "json"


class Dump(StrEnum):
    """The formats of commands that print one object they made (`create --dry-run`)."""

    yaml = "yaml"
    json = "json"


# Where: kubeconfig, context, namespace -------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None

    def config(self) -> ClientConfig:
        return load_config(self.kubeconfig, self.context)


@dataclass
class Kube:
    """A connected client, the namespace commands act in, and the configuration it came from."""

    api: ApiClient
    namespace: str
    config: ClientConfig


# The server and context in use, for messages about failures that happen before or outside a request.
_current: list[ClientConfig] = []


@asynccontextmanager
async def connect(target: Target, *, timeout: float = 30.0) -> AsyncIterator[Kube]:
    cfg = target.config()
    _current[:] = [cfg]
    async with ApiClient(cfg, user_agent=USER_AGENT, timeout=timeout) as api:
        yield Kube(api, target.namespace or cfg.namespace, cfg)


# Completion (names of clusters, jobs, contexts, namespaces) -----------------------------------------


def _target_of(ctx: typer.Context) -> Target:
    p = ctx.params
    return Target(p.get("kubeconfig"), p.get("context"), p.get("namespace"))


def complete_names(res: Resource) -> Callable[[typer.Context, str], list[str]]:
    """Names of `res` objects in the namespace the command line chose so far; nothing on any failure
    (completion must never print an error into the user's shell)."""

    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        async def names() -> list[str]:
            async with connect(_target_of(ctx), timeout=5) as kube:
                items = (await kube.api.list(res, kube.namespace))["items"]
            return sorted(str((o.get("metadata") or {}).get("name", "")) for o in items)

        try:
            return [n for n in asyncio.run(names()) if n.startswith(incomplete)]
        except Exception:
            return []

    return complete


def complete_namespaces(ctx: typer.Context, incomplete: str) -> list[str]:
    async def names() -> list[str]:
        async with connect(
            Target(ctx.params.get("kubeconfig"), ctx.params.get("context")), timeout=5
        ) as kube:
            items = (await kube.api.list(NAMESPACES))["items"]
        return sorted(str((o.get("metadata") or {}).get("name", "")) for o in items)

    try:
        return [n for n in asyncio.run(names()) if n.startswith(incomplete)]
    except Exception:
        return []


def complete_contexts(ctx: typer.Context, incomplete: str) -> list[str]:
    try:
        kc = read_kubeconfig(default_paths(ctx.params.get("kubeconfig")))
    except Exception:
        return []
    return sorted(n for n in kc.contexts if n.startswith(incomplete))


# The options, as kubectl spells them.
KubeconfigOpt = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        metavar="FILE",
        help="Kubeconfig file (default: the files in $KUBECONFIG, else ~/.kube/config).",
        show_default=False,
    ),
]
ContextOpt = Annotated[
    str | None,
    typer.Option(
        "--context",
        metavar="NAME",
        help="Kubeconfig context (default: its current context).",
        autocompletion=complete_contexts,
        show_default=False,
    ),
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "-n",
        "--namespace",
        metavar="NS",
        help="Namespace (default: the context's, else 'default').",
        autocompletion=complete_namespaces,
        show_default=False,
    ),
]
AllNamespacesOpt = Annotated[
    bool, typer.Option("-A", "--all-namespaces", help="List across all namespaces (ignores -n).")
]
OutputOpt = Annotated[
    Output,
    typer.Option("-o", "--output", help="Output format: table, yaml or json.", case_sensitive=False),
]


# Errors a user can act on ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiPath:
    """What an API URL addresses: `/apis/ray.io/v1/namespaces/ns/rayclusters/name/status`."""

    group: str = ""
    version: str = ""
    namespace: str = ""
    plural: str = ""
    name: str = ""
    sub: str = ""

    @property
    def resource(self) -> str:
        res = f"{self.plural}.{self.group}" if self.group else self.plural
        return f"{res}/{self.sub}" if self.sub else res


def parse_api_path(url: str) -> ApiPath:
    parts = [unquote(p) for p in urlsplit(url).path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return ApiPath()
    ns = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    elif len(rest) == 2 and rest[0] == "namespaces":
        return ApiPath(group, version, "", "namespaces", rest[1])
    return ApiPath(
        group,
        version,
        ns,
        rest[0] if rest else "",
        rest[1] if len(rest) > 1 else "",
        "/".join(rest[2:]),
    )


def verb_of(method: str, path: ApiPath) -> str:
    """The RBAC verb a request needs, as the API server's authorizer names it."""
    if method == "WATCH":
        return "watch"
    if method == "GET":
        return "get" if path.name else "list"
    if method == "DELETE" and not path.name:
        return "deletecollection"
    if path.sub in ("portforward", "exec", "attach", "proxy") or path.sub.startswith("proxy"):
        return "create" if method == "POST" else "get"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )


def kind_name(plural: str) -> str:
    return KIND_NAMES.get(plural, plural.removesuffix("s") or plural)


def explain_api_error(e: ApiError, server: str = "", context: str = "") -> str:
    """One sentence per failure a user meets, naming what failed and what to do."""
    path = parse_api_path(e.url)
    where = f' in namespace "{path.namespace}"' if path.namespace else ""
    raw_details = e.body.get("details")
    details: Mapping[str, Any] = raw_details if isinstance(raw_details, dict) else {}
    if e.status == 404:
        name = str(details.get("name") or "")
        if name or (path.name and path.sub and e.reason == "NotFound" and "not found" in e.message):
            return f'{kind_name(path.plural)} "{name or path.name}" not found{where}'
        if path.group == "ray.io":
            return (
                f"the {path.plural}.{path.group}/{path.version} API is not installed on this cluster "
                f"({server or 'the API server'}): install the Ray CRDs first "
                "(kubectl apply --server-side -f config/crd/, or install rayop or KubeRay)"
            )
        return f"{e.method} {e.url}: not found ({e.message})"
    if e.status == 403:
        verb = verb_of(e.method, path)
        what = f'{path.resource} "{path.name}"' if path.name else path.resource
        return (
            f"forbidden: you may not {verb} {what}{where}; ask a cluster admin for RBAC access "
            f"(the API server said: {e.message})"
        )
    if e.status == 401:
        ctx = f" (context {context!r})" if context else ""
        at = f" at {server}" if server else ""
        return (
            f"unauthorized: the API server{at} rejected your credentials{ctx}; "
            "log in again or check the kubeconfig's user"
        )
    if e.status == 409 and e.reason == "AlreadyExists":
        return f'{kind_name(path.plural)} "{details.get("name") or path.name}" already exists{where}'
    if e.status == 409:
        return f"conflict: {e.message} (it changed while we worked on it; run the command again)"
    if e.status in (400, 422):
        return e.message
    if e.status >= 500 and path.sub in ("log", "portforward", "exec", "attach"):
        return f"the API server could not reach the kubelet of the pod's node ({path.sub}): {e.message}"
    return f"{e.method} {e.url}: HTTP {e.status} {e.reason}: {e.message}"


def explain(exc: BaseException) -> str | None:
    """The message for an expected failure, or None for a bug (which keeps its traceback)."""
    cfg = _current[0] if _current else None
    server = cfg.server if cfg else ""
    context = cfg.context if cfg else ""
    at = f" at {server}" if server else ""
    ctx = f" (context {context!r})" if context else ""
    if isinstance(exc, CliError):
        return exc.message
    if isinstance(exc, (KubeconfigError, ExecPluginError, ShapeError)):
        return str(exc)
    if isinstance(exc, ApiError):
        return explain_api_error(exc, server, context)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"the API server{at} presented a certificate the kubeconfig does not trust{ctx}: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS with the API server{at} failed{ctx}: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or str(exc.os_error)
        return f"cannot reach the API server{at}{ctx}: {reason}. Is the cluster running?"
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return f"the API server{at} closed the connection{ctx}: {exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with the API server{at} failed{ctx}: {exc}"
    if isinstance(exc, TimeoutError):
        return f"the API server{at} did not answer in time{ctx}"
    if isinstance(exc, aiohttp.ClientError):
        return f"talking to the API server{at} failed{ctx}: {exc}"
    return None


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a command's async body; expected failures become one line on stderr and a non-zero exit."""
    try:
        return asyncio.run(main)
    except KeyboardInterrupt:
        typer.echo("", err=True)
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as e:
        msg = explain(e)
        if msg is None:
            if os.environ.get("RAYOP_DEBUG"):
                traceback.print_exc()
            msg = f"{type(e).__name__}: {e} (RAYOP_DEBUG=1 shows where)"
        raise fail(msg, e.code if isinstance(e, CliError) else 1) from None


async def gather_bounded(calls: Sequence[Callable[[], Awaitable[T]]], limit: int = 8) -> list[T]:
    sem = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


# Printing -------------------------------------------------------------------------------------------


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """kubectl's layout: upper-case headers, left-aligned columns three spaces apart."""
    cols = [h.upper() for h in headers]
    widths = [len(c) for c in cols]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [cols, *rows]:
        lines.append("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return "\n".join(lines) + "\n"


def render(data: Any, fmt: Output | Dump) -> str:
    if fmt in (Output.json, Dump.json):
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def as_list(items: Sequence[Mapping[str, Any]]) -> Obj:
    """Several objects as kubectl prints them with -o yaml/json."""
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {"resourceVersion": ""}}


def print_objects(
    fmt: Output,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    data: Any,
    *,
    empty: str,
) -> None:
    if fmt is not Output.table:
        sys.stdout.write(render(data, fmt))
        return
    if not rows:
        typer.echo(empty, err=True)
        return
    sys.stdout.write(render_table(headers, rows))
