"""`rayop operator` as its own process, reaching Ray through a fake fleet of dashboards.

The command line is the real one (`rayop operator ...`, parsed by rayop's CLI); the only change is where
dashboards and Serve proxies are dialled: a cluster's head Service name and a pod are mapped to the fleet
(`tests/fake_dashboard.FakeFleet`) at `RAYOP_CHAOS_FLEET`, as the in-process integration tests do with
`dashboard_resolver` and `pod_resolver`. The harness can SIGKILL this process like any operator.

    RAYOP_CHAOS_FLEET=http://127.0.0.1:PORT python -m tests.chaos.operator_entry operator --kubeconfig ...
"""

from __future__ import annotations

import os
from dataclasses import replace

from rayop.cli import main as cli
from rayop.controllers.settings import ControllerSettings
from rayop.operator.config import OperatorConfig

FLEET_ENV = "RAYOP_CHAOS_FLEET"


def resolvers(fleet: str) -> tuple[object, object]:
    def dashboard(address: str) -> str:
        host = address.split("://", 1)[-1].split(":", 1)[0].split(".", 1)[0]
        return f"{fleet}/c/{host.removesuffix('-head-svc')}"

    def pod(namespace: str, name: str, ip: str, port: int) -> str:
        del namespace, ip, port
        return f"{fleet}/p/{name}"

    return dashboard, pod


def install(fleet: str) -> None:
    dashboard, pod = resolvers(fleet)
    original = OperatorConfig.controller_settings

    def settings(self: OperatorConfig) -> ControllerSettings:
        s = original(self)
        return replace(
            s,
            rayjob=replace(s.rayjob, dashboard_resolver=dashboard),  # type: ignore[arg-type]
            rayservice=replace(s.rayservice, dashboard_resolver=dashboard, pod_resolver=pod),  # type: ignore[arg-type]
            workergroups=replace(s.workergroups, dashboard_resolver=dashboard),  # type: ignore[arg-type]
        )

    OperatorConfig.controller_settings = settings  # type: ignore[method-assign]


if __name__ == "__main__":
    install(os.environ[FLEET_ENV].rstrip("/"))
    # No exec into a fresh interpreter: the patch above lives in this one.
    cli.main(reexec=False)
