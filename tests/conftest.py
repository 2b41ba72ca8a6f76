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

TESTS = Path(__file__).parent

# Operators started by tests (in-process or as subprocesses) serve no admission webhook unless a test
# asks for one: several operators run at once here and would all want port 9443, and an unregistered
# webhook checks nothing anyway. Webhook tests turn it on explicitly.
os.environ.setdefault("ENABLE_WEBHOOKS", "false")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(TESTS.resolve())
        tier = rel.parts[0]
        if tier in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def plane() -> Iterator[ControlPlane]:
    """A started control plane with the CRDs installed and kube-controller-manager running."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    state = Path(tempfile.mkdtemp(prefix=f"rayop-plane-{worker}-"))
    cp = ControlPlane(PlaneOptions(state_dir=state))
    cp.start()
    try:
        yield cp
    finally:
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
