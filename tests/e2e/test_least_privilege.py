"""Least privilege, measured: the chart grants the operator only what the operator was seen to use.

Every operator in the integration and e2e tiers runs as itself under the chart's roles (tests/rbac.py),
and the API servers audit its requests. This test runs after all others, folds the audit logs of both
tiers (this session's, or for a tier this session did not run in full, the last complete passing run of
it, kept in pytest's cache) into the (group, resource, verb) triples used, and fails when:

* the operator was refused anything (a permission the chart lacks),
* a role of the chart grants a triple that was neither used, nor needed to grant the autoscaler's Role
  (Kubernetes lets the operator grant only what it holds), nor listed in RARELY_USED with a reason,
* any rule holds a wildcard.
"""

from __future__ import annotations

from typing import Any

import pytest

from rayop.builders.rbac import build_role
from tests import rbac

pytestmark = pytest.mark.after_all_tiers

# Granted but not exercised by the test suite, each with why it must stay. Keep this list short.
RARELY_USED: dict[rbac.Use, str] = {
    ("ray.io", "rayclusters/finalizers", "update"): (
        "checked (not requested) by the OwnerReferencesPermissionEnforcement admission plugin when the "
        "operator sets blockOwnerDeletion on a RayCluster's children (OpenShift turns it on)"
    ),
    ("ray.io", "rayjobs/finalizers", "update"): (
        "the same check for a RayJob's children (its RayCluster, submitter Job and Service)"
    ),
    ("ray.io", "rayservices/finalizers", "update"): (
        "the same check for a RayService's children (its RayClusters, serve Services and RayWorkerGroups)"
    ),
    ("rayop.io", "rayworkergroups/finalizers", "update"): (
        "the same check for a RayWorkerGroup's drain Pods (docs/scaling.md, RBAC)"
    ),
    # The RayService and RayWorkerGroup controllers' writes (rayop/controllers/rayservice.py,
    # rayworkergroup.py). Their end-to-end tests still run the operator with the plane's admin
    # credentials, so some of these may go unseen by the audit in a given run.
    ("", "services", "update"): "a RayService points its serve and head Services at the new cluster (PUT)",
    ("", "services", "delete"): "a RayService deletes the Services of a cluster it no longer uses",
    ("ray.io", "rayclusters", "update"): "a RayService replaces its pending cluster's spec in place",
    ("ray.io", "rayservices", "get"): "the RayService controller reads the object it reconciles",
    ("ray.io", "rayservices", "patch"): "the RayService finalizer is added and removed with a merge patch",
    ("ray.io", "rayservices/status", "update"): "the RayService status is written with PUT",
    ("rayop.io", "rayworkergroups", "get"): "a create that finds the RayWorkerGroup's name taken reads it",
    (
        "rayop.io",
        "rayworkergroups",
        "delete",
    ): "a worker group removed from its RayCluster loses its RayWorkerGroup",
    ("", "services", "get"): (
        "Services are cached without a label selector, so a create that finds the name taken reads it "
        "only when the cache lags behind; without it that race would fail a reconcile with 403"
    ),
}


def _usage(config: pytest.Config) -> tuple[rbac.Usage, list[str]]:
    """This session's usage, plus the remembered usage of each tier this session did not run in full."""
    usage = rbac.session_usage()
    sources = ["this session"]
    complete = rbac.SESSION_TIERS.complete()
    cache = getattr(config, "cache", None)
    for tier in rbac.TIERS:
        if tier in complete:
            continue
        saved = cache.get(rbac.CACHE_KEY.format(tier=tier), None) if cache is not None else None
        if saved is None:
            pytest.skip(
                f"the {tier} tier did not run in full in this session and no complete passing run of it "
                "is remembered: run `make test` (or `make test-{tier}` first)"
            )
        usage.add(rbac.Usage.from_json(saved))
        sources.append(f"the last complete {tier} run")
    return usage, sources


def _chart_roles() -> list[dict[str, Any]]:
    return [d for d in rbac.chart_objects() if d["kind"] in ("ClusterRole", "Role")]


def _delegated() -> set[rbac.Use]:
    """What the operator grants the autoscaler's Role, so must hold itself."""
    role = build_role({"metadata": {"name": "c", "namespace": "n", "uid": "u"}, "spec": {}})
    return {use for use, _ in rbac.rules_of(role)}


def test_chart_roles_hold_no_wildcards() -> None:
    for role in _chart_roles():
        for (group, resource, verb), _ in rbac.rules_of(role):
            assert "*" not in (group, resource, verb), f"{role['kind']} {role['metadata']['name']} grants *"


def test_the_chart_grants_what_the_operator_uses_and_nothing_more(request: pytest.FixtureRequest) -> None:
    usage, sources = _usage(request.config)
    assert usage.used, "no operator request was audited: are the planes started through tests.rbac?"
    assert not usage.denied, "the operator was refused (the chart's roles lack these):\n" + "\n".join(
        f"  {g or 'core'} {r} {v}: {why}" for (g, r, v), why in sorted(usage.denied.items())
    )
    granted: dict[rbac.Use, str] = {}
    for role in _chart_roles():
        for use, _names in rbac.rules_of(role):
            granted.setdefault(use, f"{role['kind']} {role['metadata']['name']}")
    delegated = _delegated()
    unused = {
        use: where
        for use, where in granted.items()
        if use not in usage.used and use not in delegated and use not in RARELY_USED
    }
    assert not unused, (
        f"the chart grants what no test saw the operator use (audit of {', '.join(sources)}); remove it, "
        "or list it in RARELY_USED with the reason it must stay:\n"
        + "\n".join(f"  {g or 'core'} {r} {v} ({where})" for (g, r, v), where in sorted(unused.items()))
    )
    stale = [use for use in RARELY_USED if use not in granted]
    assert not stale, f"RARELY_USED lists what the chart no longer grants: {stale}"
    missing = delegated - set(granted)
    assert not missing, f"the autoscaler's Role grants what the chart does not give the operator: {missing}"
