"""docs/troubleshooting.md explains every event reason and status reason the operator writes."""

from __future__ import annotations

from pathlib import Path

from rayop.api import constants as C
from rayop.builders import status as cluster_status
from rayop.controllers import rayjob_machine

REPO = Path(__file__).resolve().parents[2]


def _reasons() -> list[str]:
    out = [v for k, v in vars(C).items() if k.startswith("EV_")]
    out += [v for k, v in vars(cluster_status).items() if k.startswith("REASON_")]
    out += [v for k, v in vars(rayjob_machine).items() if k.startswith("REASON_")]
    return sorted(set(out))


def test_every_event_and_status_reason_is_explained() -> None:
    text = (REPO / "docs" / "troubleshooting.md").read_text()
    missing = [r for r in _reasons() if f"`{r}`" not in text]
    assert not missing, f"docs/troubleshooting.md does not explain {missing}"
