"""ARCHITECTURE.md's code map names every module under rayop/, and nothing that is gone.

A new module without a line in the map fails here: say in one line what behaviour it holds.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def code_map_entries() -> set[str]:
    text = (REPO / "ARCHITECTURE.md").read_text()
    section = text.split("\n## Code map", 1)[1]
    section = re.split(r"\n## (?!#)", section, maxsplit=1)[0]
    # One entry per line: "- `rayop/<path>.py`: what lives there."
    return set(re.findall(r"^- `(rayop/[\w/]+\.py)`: \S", section, flags=re.MULTILINE))


def modules() -> set[str]:
    return {p.relative_to(REPO).as_posix() for p in (REPO / "rayop").rglob("*.py")}


def test_every_module_has_a_line_in_the_code_map() -> None:
    missing = sorted(modules() - code_map_entries())
    assert not missing, "add these modules to ARCHITECTURE.md's code map:\n" + "\n".join(missing)


def test_the_code_map_names_no_module_that_is_gone() -> None:
    stale = sorted(code_map_entries() - modules())
    assert not stale, "ARCHITECTURE.md's code map names modules that do not exist:\n" + "\n".join(stale)
