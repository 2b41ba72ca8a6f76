"""The operator process: its configuration and the manager that runs every controller.

config   `OperatorConfig`: KubeRay's flags, `--config` file, env vars and feature gates, and the controller
         settings built from them
main     build the manager (client, informers, controllers, webhook, servers, leader election) and run it
"""

from rayop.operator.config import FEATURE_GATE_DEFAULTS, OperatorConfig
from rayop.operator.main import build_manager, run

__all__ = ["FEATURE_GATE_DEFAULTS", "OperatorConfig", "build_manager", "run"]
