"""A pytest plugin: a test that pytest-timeout stopped does not go on running beside the next tests.

pytest-timeout stops a test by raising from its SIGALRM handler, which lands in the event loop's
`select()`: `run_until_complete` returns with the exception and the test's own task stays pending on the
session's loop. Every later test runs that loop again, so the stopped test resumes whenever it can: its
load generators keep sending, its waits keep polling, and its `finally` blocks (which stop processes) run
whenever it finishes, if ever. On a slow machine one timed-out e2e test then slows every test after it.

Before a test's fixtures are torn down, this cancels the test's task if it is still pending and waits
(bounded) for its cleanup, so a timeout costs one test, not the rest of the session.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import pytest

# How long a cancelled test may take to run its cleanup (stopping processes, closing clients).
CLEANUP_SECONDS = 120.0

_loops: list[asyncio.AbstractEventLoop] = []


@pytest.fixture(scope="session", autouse=True)
async def _session_event_loop() -> AsyncIterator[None]:
    """Remembers the session's event loop (every test here runs on it: pyproject.toml)."""
    _loops.append(asyncio.get_running_loop())
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    function = getattr(item, "function", None)
    if not _loops or function is None or not inspect.iscoroutinefunction(function):
        return
    loop = _loops[-1]
    if loop.is_closed() or loop.is_running():
        return
    code = inspect.unwrap(function).__code__
    stuck = [t for t in asyncio.all_tasks(loop) if getattr(t.get_coro(), "cr_code", None) is code]
    if not stuck:
        return
    for task in stuck:
        task.cancel()
    loop.run_until_complete(asyncio.wait(stuck, timeout=CLEANUP_SECONDS))
