"""The reconcilers, one per kind, and what they share.

- `raycluster` (a package, one module per reconcile step), `rayjob`, `rayservice`: a reconciler per kind
  and its `setup(manager, settings)`;
- `podplan`, `rayjob_machine`, `rayservice_machine`: pure decisions (which Pods to create and delete; the
  RayJob and RayService state machines), tested by tables of cases;
- `dashboards`: reaching Ray head dashboards, direct or through the API server;
- `common`: event helpers, owner-scoped writes, status writes, shared cache selectors;
- `settings`: one settings dataclass per controller, built by `rayop.operator.config`;
- `raycluster_metrics`, `rayjob_metrics`, `rayservice_metrics`: the `kuberay_*` gauges.

`setup` registers them all on a runtime Manager.
"""

from __future__ import annotations

from collections.abc import Callable

from rayop.controllers import raycluster, rayjob, rayservice
from rayop.controllers.settings import ControllerSettings
from rayop.runtime.protocols import ControllerHandle, Manager

# Each entry registers one controller. Keep it a plain list.
SETUPS: list[Callable[[Manager, ControllerSettings], ControllerHandle]] = [
    raycluster.setup,
    rayjob.setup,
    rayservice.setup,
]


def setup(manager: Manager, settings: ControllerSettings) -> list[ControllerHandle]:
    """Register every controller on `manager`; returns the controllers."""
    return [fn(manager, settings) for fn in SETUPS]
