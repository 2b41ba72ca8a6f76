"""The `rayop` command. Each area contributes one sub-command group from its own module."""

from __future__ import annotations

import functools
import sys
from typing import Any

import typer

HELP = "rayop: KubeRay rebuilt in Python."


@functools.cache
def full_app() -> typer.Typer:
    from rayop.cli import demo, dev, local, node, operator, podcmds, ui, webhook

    app = typer.Typer(no_args_is_help=True, add_completion=False, help=HELP)
    app.add_typer(
        local.app, name="local", help="Embedded local control plane (etcd + kube-apiserver + controllers)."
    )
    app.add_typer(dev.app, name="dev", help="Developer tasks (CRD generation).")
    app.command("operator")(operator.run_operator)
    app.command("webhook")(webhook.run_webhook)
    app.command("node")(node.run_node)
    app.command("demo")(demo.run_demo)
    app.command("ui")(ui.run_ui)
    podcmds.register(app)
    return app


def operator_app() -> typer.Typer:
    """`rayop operator` alone: the operator is a long-running process, and the other sub-commands would
    load what it never runs (the node agent, the local control plane, the CRD generator), a few MiB of
    its resident memory."""
    from rayop.cli import operator

    app = typer.Typer(add_completion=False, help=HELP)
    app.callback()(lambda: None)  # keeps `operator` a sub-command, as in the full app
    app.command("operator")(operator.run_operator)
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return full_app()
    raise AttributeError(name)


# KubeRay's boolean flags are Go flags: a bare `--enable-leader-election` means true. typer wants a value,
# so a bare one is rewritten to `--flag=true` before parsing (`--flag=false` and `--flag false` pass as-is).
GO_BOOL_FLAGS = frozenset(
    {"--enable-leader-election", "--use-kubernetes-proxy", "--enable-metrics", "--enable-webhook"}
)
BOOL_WORDS = frozenset({"true", "false", "1", "0", "t", "f", "yes", "no"})


def normalize_go_bools(argv: list[str]) -> list[str]:
    out: list[str] = []
    for i, arg in enumerate(argv):
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if arg in GO_BOOL_FLAGS and (nxt is None or nxt.lower() not in BOOL_WORDS):
            out.append(f"{arg}=true")
        else:
            out.append(arg)
    return out


def main() -> None:
    argv = normalize_go_bools(sys.argv[1:])
    app = operator_app() if argv[:1] == ["operator"] else full_app()
    app(args=argv, prog_name="rayop")


if __name__ == "__main__":
    main()
