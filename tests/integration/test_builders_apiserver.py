"""Every object the golden RayClusters build is accepted by a real kube-apiserver with strict field
validation (server-side dry run): no unknown or mistyped fields, valid names, labels and quantities."""

from __future__ import annotations

from typing import Any

import pytest

from rayop.builders.options import BuildOptions
from rayop.runtime.client import (
    INGRESSES,
    JOBS,
    PODS,
    PVCS,
    ROLEBINDINGS,
    ROLES,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    ApiClient,
    ApiError,
    Resource,
)
from tests.unit.test_builders_golden import CASES, GOLDEN, builders, load

RESOURCES: dict[str, Resource] = {
    "Pod": PODS,
    "Service": SERVICES,
    "ServiceAccount": SERVICEACCOUNTS,
    "Role": ROLES,
    "RoleBinding": ROLEBINDINGS,
    "Ingress": INGRESSES,
    "PersistentVolumeClaim": PVCS,
    "Secret": SECRETS,
    "Job": JOBS,
}


@pytest.mark.parametrize("case_name", CASES)
async def test_built_objects_pass_strict_dry_run(kube: ApiClient, namespace: str, case_name: str) -> None:
    case = GOLDEN / case_name
    cluster = load(case / "raycluster.yaml")
    cluster["metadata"]["namespace"] = namespace
    options = load(case / "options.yaml") if (case / "options.yaml").exists() else {}
    options.setdefault("auth_token", "dry-run-token")
    opts = BuildOptions(**(options.get("build_options") or {}))
    table = builders(case, cluster, opts, options)
    failures: list[str] = []
    checked = 0
    for kind, build in table.items():
        if kind == "status" or (kind == "worker-pod" and not (cluster["spec"].get("workerGroupSpecs") or [])):
            continue
        obj: Any = build()
        if obj is None:
            continue
        res = RESOURCES[obj["kind"]]
        if obj["kind"] == "Pod":
            # The test plane runs without the ServiceAccount admission plugin, which on a real cluster fills in
            # `default`; projected service-account tokens are only valid once a serviceAccountName is set.
            obj["spec"].setdefault("serviceAccountName", "default")
        try:
            await kube.create(res, obj, namespace, dryRun="All", fieldValidation="Strict")
            checked += 1
        except ApiError as e:
            failures.append(f"{kind}: {e}")
    assert checked >= 3
    assert not failures, "\n".join(failures)
