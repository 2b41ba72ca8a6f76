"""The reconcilers, one per kind, and what they share.

- `raycluster` (a package, one module per reconcile step), `rayjob`, `rayservice`, `rayworkergroup`: a
  reconciler per kind and its `setup(manager, settings)`;
- `podplan`, `rayjob_machine`, `rayservice_machine`, `rayworkergroup_plan`: pure decisions (which Pods to
  create and delete; the RayJob and RayService state machines; which way a worker group's replica count
  flows and which workers a scale-down removes), tested by tables of cases;
- `dashboards`: reaching Ray head dashboards, direct or through the API server;
- `common`: event helpers, owner-scoped writes, status writes, shared cache selectors;
- `settings`: one settings dataclass per controller, built by `rayop.operator.config`;
- `raycluster_metrics`, `rayjob_metrics`, `rayservice_metrics`: the `kuberay_*` gauges.

`setup` registers them all on a runtime Manager.
"""

from __future__ import annotations

from collections.abc import Callable

from rayop.controllers import raycluster, rayjob, rayservice, rayworkergroup
from rayop.controllers.settings import ControllerSettings
from rayop.runtime.protocols import ControllerHandle, Manager

# Each entry registers one controller (or nothing, when its settings turn it off). Keep it a plain list.
SETUPS: list[Callable[[Manager, ControllerSettings], ControllerHandle | None]] = [
    raycluster.setup,
    rayjob.setup,
    rayservice.setup,
    rayworkergroup.setup,
]


def setup(manager: Manager, settings: ControllerSettings) -> list[ControllerHandle]:
    """Register every controller on `manager`; returns the controllers."""
    return [h for fn in SETUPS if (h := fn(manager, settings)) is not None]
