"""Operator wiring: configuration from flags/env/file, and the manager with every controller."""

from rayop.operator.config import FEATURE_GATE_DEFAULTS, OperatorConfig
from rayop.operator.main import build_manager, run

__all__ = ["FEATURE_GATE_DEFAULTS", "OperatorConfig", "build_manager", "run"]
