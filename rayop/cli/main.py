"""The `rayop` command. Each area contributes one sub-command group from its own module."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

import typer

from rayop.cli import helpfmt

helpfmt.install()

HELP = "rayop: KubeRay rebuilt in Python. Ray clusters, jobs and services on any Kubernetes cluster."
# Two panels in `rayop --help`: what users run against any cluster, and rayop's own parts.
RAY = "Ray on any cluster"
PARTS = "rayop itself"


@functools.cache
def full_app() -> typer.Typer:
    from rayop.cli import (
        create,
        delete,
        demo,
        dev,
        get,
        job,
        local,
        node,
        operator,
        podcmds,
        scale,
        session,
        ui,
        webhook,
    )

    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help=HELP)
    app.add_typer(get.app, name="get", rich_help_panel=RAY)
    app.add_typer(create.app, name="create", rich_help_panel=RAY)
    app.add_typer(scale.app, name="scale", rich_help_panel=RAY)
    app.add_typer(delete.app, name="delete", rich_help_panel=RAY)
    app.add_typer(job.app, name="job", rich_help_panel=RAY)
    app.command("logs", rich_help_panel=RAY)(podcmds.logs)
    app.command("session", rich_help_panel=RAY)(session.session)
    app.command("ui", rich_help_panel=RAY)(ui.run_ui)
    app.command("exec", rich_help_panel=PARTS)(podcmds.exec_)
    app.add_typer(
        local.app,
        name="local",
        help="Embedded local control plane (etcd + kube-apiserver + controllers).",
        rich_help_panel=PARTS,
    )
    app.command("demo", rich_help_panel=PARTS)(demo.run_demo)
    app.command("operator", rich_help_panel=PARTS)(operator.run_operator)
    app.command("webhook", rich_help_panel=PARTS)(webhook.run_webhook)
    app.command("node", rich_help_panel=PARTS)(node.run_node)
    app.add_typer(dev.app, name="dev", help="Developer tasks (CRD generation).", rich_help_panel=PARTS)
    return app


def operator_app() -> typer.Typer:
    """`rayop operator` alone: the operator is a long-running process, and the other sub-commands would
    load what it never runs (the node agent, the local control plane, the CRD generator, the CLI), a few
    MiB of its resident memory."""
    from rayop.cli import operator

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=HELP)
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


def main(reexec: bool = True) -> None:
    """The `rayop` entry point. `reexec=False` keeps `rayop operator` in this interpreter (a harness that
    patches the operator in-process before calling this); see rayop.operator.config.exec_operator."""
    try:
        argv = normalize_go_bools(sys.argv[1:])
        if argv[:1] == ["operator"]:
            from rayop.cli import operator

            operator.REEXEC = reexec
            app = operator_app()
        else:
            app = full_app()
        app(args=argv, prog_name="rayop")
    except Exception as e:
        # Commands turn the failures they expect into one line (rayop.cli.kube.run); anything else is a
        # bug, still reported in one line unless RAYOP_DEBUG asks for the traceback.
        if os.environ.get("RAYOP_DEBUG"):
            raise
        print(f"error: {type(e).__name__}: {e} (RAYOP_DEBUG=1 shows where)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
