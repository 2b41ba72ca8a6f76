"""The `rayop` command. Each area contributes one sub-command group from its own module."""

from __future__ import annotations

import typer

from rayop.cli import demo, dev, local, node, operator, podcmds, webhook

app = typer.Typer(no_args_is_help=True, add_completion=False, help="rayop: KubeRay rebuilt in Python.")
app.add_typer(
    local.app, name="local", help="Embedded local control plane (etcd + kube-apiserver + controllers)."
)
app.add_typer(dev.app, name="dev", help="Developer tasks (CRD generation).")
app.command("operator")(operator.run_operator)
app.command("webhook")(webhook.run_webhook)
app.command("node")(node.run_node)
app.command("demo")(demo.run_demo)
podcmds.register(app)

if __name__ == "__main__":
    app()
