"""tests/timeouts.py: a test stopped by pytest-timeout is cancelled before the next test runs."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

STUCK = textwrap.dedent(
    """
    import asyncio

    async def test_stuck():
        try:
            while True:
                await asyncio.sleep(0.1)
                print("stuck test still running")
        finally:
            print("stuck test cleaned up")

    async def test_next():
        await asyncio.sleep(0.5)
        print("next test done")
    """
)


def test_a_timed_out_async_test_is_cancelled_and_cleans_up_before_the_next(tmp_path: Path) -> None:
    (tmp_path / "test_stuck.py").write_text(STUCK)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = session\n"
        "asyncio_default_test_loop_scope = session\ntimeout = 1\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", "-p", "tests.timeouts", "."],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = run.stdout
    assert "Timeout" in out and "1 failed, 1 passed" in out, out
    # pytest's progress letters share lines with the prints.
    lines = re.findall(r"(stuck test still running|stuck test cleaned up|next test done)", out)
    # The stopped test ran its cleanup, and ran nothing more, before the next test began.
    assert lines.index("stuck test cleaned up") == len(lines) - 2, lines
    assert lines[-1] == "next test done", lines
