"""Shared test wiring: tier markers by folder, and the real control plane for integration/e2e tests.

One plane per test session (or per xdist worker), started lazily by the first test that asks for it,
and one fresh namespace per test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from rayop.local.plane import ControlPlane, PlaneOptions
from rayop.runtime.client import NAMESPACES, ApiClient, load_kubeconfig
from tests import rbac

TESTS = Path(__file__).parent

pytest_plugins = ["tests.timeouts"]

# Operators started by tests (in-process or as subprocesses) serve no admission webhook unless a test
# asks for one: several operators run at once here and would all want port 9443, and an unregistered
# webhook checks nothing anyway. Webhook tests turn it on explicitly.
os.environ.setdefault("ENABLE_WEBHOOKS", "false")


def _tier(item: pytest.Item) -> str:
    return Path(str(item.fspath)).resolve().relative_to(TESTS.resolve()).parts[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = _tier(item)
        if tier in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, tier))
    # The least-privilege check reads what every other test made the operator do: it runs last.
    last = [i for i in items if i.get_closest_marker("after_all_tiers")]
    items[:] = [i for i in items if not i.get_closest_marker("after_all_tiers")] + last
    # Which tiers this session collects in full (no file or test picked out of them).
    args = [a for a in config.args if a]
    for tier in rbac.TIERS:
        folder = (TESTS / tier).resolve()
        if not args or any("::" not in a and Path(a).resolve() in (folder, *folder.parents) for a in args):
            rbac.SESSION_TIERS.selected.add(tier)


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        rbac.SESSION_TIERS.deselected.add(_tier(item))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # The least-privilege check itself may fail: the usage the other tests measured is still sound.
    if report.failed and "after_all_tiers" not in report.keywords:
        rbac.SESSION_TIERS.failed = True


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remember the operator's API usage of each tier that ran in full and passed, for a later session
    that runs only the other tier (tests/e2e/test_least_privilege.py)."""
    cache = getattr(session.config, "cache", None)
    interrupted = exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    if rbac.SESSION_TIERS.failed or interrupted or cache is None or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    usage = rbac.session_usage().to_json()
    for tier in rbac.SESSION_TIERS.complete():
        cache.set(rbac.CACHE_KEY.format(tier=tier), usage)


@pytest.fixture(scope="session")
def plane() -> Iterator[ControlPlane]:
    """A started control plane with the CRDs installed and kube-controller-manager running."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    state = Path(tempfile.mkdtemp(prefix=f"rayop-plane-{worker}-"))
    cp = ControlPlane(rbac.audited(PlaneOptions(state_dir=state)))
    cp.start()
    try:
        rbac.enable(cp)
        yield cp
    finally:
        rbac.collect(cp)
        cp.stop()
        if not os.environ.get("RAYOP_KEEP_PLANE"):
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
async def kube(plane: ControlPlane) -> AsyncIterator[ApiClient]:
    client = ApiClient(load_kubeconfig(plane.kubeconfig))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def namespace(plane: ControlPlane) -> AsyncIterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting for it to be gone)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    client = ApiClient(load_kubeconfig(plane.kubeconfig))
    try:
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        yield name
        await client.delete(NAMESPACES, name, ignore_not_found=True)
    finally:
        await client.close()
