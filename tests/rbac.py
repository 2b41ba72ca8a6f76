"""The operator's own identity in the integration and e2e tiers, and the audit log that measures it.

Every operator a test starts (in-process or as a process) talks to the API server as the user
``rayop-operator`` (a client certificate from the plane's client CA), bound to the ClusterRole the chart
renders (``config/default/rayop.yaml``, generated from ``charts/rayop`` and checked against it). A
permission the chart lacks therefore fails the test that needs it, with a 403 in the operator's log.

The planes the tests start write an audit log (``--audit-policy-file``/``--audit-log-path``) of that
user's requests (and of the chart's ServiceAccount, when the chart itself runs on a plane);
``tests/e2e/test_least_privilege.py`` turns the logs of all tiers into the set of (group, resource,
verb) the operator used and compares it with what the chart grants.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from rayop.base import pki
from rayop.local.plane import ControlPlane, PlaneOptions, audit_args
from rayop.runtime.client import ApiClient, load_kubeconfig

REPO = Path(__file__).resolve().parents[1]
CHART_MANIFESTS = REPO / "config" / "default" / "rayop.yaml"
OPERATOR_USER = "rayop-operator"
# The identities whose requests are audited: the test user, and the chart's ServiceAccount in the
# namespaces the chart tests install it to.
CHART_NAMESPACES = ("rayop-system",)
AUDITED_USERS = (OPERATOR_USER, *(f"system:serviceaccount:{ns}:rayop" for ns in CHART_NAMESPACES))

Use = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)


# The chart's roles ------------------------------------------------------------------------------------
def chart_objects(path: Path = CHART_MANIFESTS) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def chart_role(kind: str, suffix: str = "", path: Path = CHART_MANIFESTS) -> dict[str, Any]:
    """The chart's ClusterRole or Role named ``rayop<suffix>`` (as rendered with default values)."""
    for d in chart_objects(path):
        if d["kind"] == kind and d["metadata"]["name"] == f"rayop{suffix}":
            return d
    raise LookupError(f"no {kind} rayop{suffix} in {path}")


# Audit ------------------------------------------------------------------------------------------------
def audit_policy(users: Iterable[str] = AUDITED_USERS) -> dict[str, Any]:
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [{"level": "Metadata", "users": list(users)}, {"level": "None"}],
    }


def audit_log_path(state_dir: Path) -> Path:
    return state_dir / "logs" / "audit.log"


def audited(options: PlaneOptions) -> PlaneOptions:
    """``options`` plus an audit log of the operator identities' requests in the plane's log folder."""
    state = options.state_dir.resolve()
    (state / "logs").mkdir(parents=True, exist_ok=True)
    policy = state / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(audit_policy()))
    args = audit_args(policy, audit_log_path(state))
    return replace(options, extra_apiserver_args=[*options.extra_apiserver_args, *args])


@dataclass
class Usage:
    """What the operator identities did: (group, resource, verb) -> a count, and what was refused."""

    used: dict[Use, int] = field(default_factory=dict)
    denied: dict[Use, str] = field(default_factory=dict)

    def add(self, other: Usage) -> None:
        for k, n in other.used.items():
            self.used[k] = self.used.get(k, 0) + n
        self.denied.update(other.denied)

    def to_json(self) -> dict[str, Any]:
        return {
            "used": [[*k, n] for k, n in sorted(self.used.items())],
            "denied": [[*k, v] for k, v in sorted(self.denied.items())],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Usage:
        u = cls()
        for g, r, v, n in data.get("used", []):
            u.used[(g, r, v)] = int(n)
        for g, r, v, why in data.get("denied", []):
            u.denied[(g, r, v)] = str(why)
        return u


def read_audit(path: Path, users: Iterable[str] = AUDITED_USERS) -> Usage:
    """The resource requests of ``users`` in an audit log (non-resource URLs, like discovery, are left
    out: RBAC grants them to every authenticated user)."""
    wanted = set(users)
    usage = Usage()
    seen: set[str] = set()
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return usage
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue  # a line cut short by a plane that was being stopped
        if ev.get("stage") != "ResponseComplete" and ev.get("verb") != "watch":
            continue
        if (ev.get("user") or {}).get("username") not in wanted:
            continue
        ref = ev.get("objectRef")
        if not ref or not ref.get("resource"):
            continue
        # A watch logs ResponseStarted and ResponseComplete: count the request once.
        if ev.get("auditID") in seen:
            continue
        seen.add(ev["auditID"])
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        key = (ref.get("apiGroup") or "", resource, ev["verb"])
        code = int((ev.get("responseStatus") or {}).get("code") or 0)
        if code == 403:
            reason = (ev.get("annotations") or {}).get("authorization.k8s.io/reason", "")
            usage.denied[key] = f"{ev.get('requestURI', '')} {reason}".strip()
            continue
        usage.used[key] = usage.used.get(key, 0) + 1
    return usage


# Registry of the planes this session started, so the least-privilege test can read their logs while
# they still run (session planes stop only after the last test).
_PLANES: dict[str, ControlPlane] = {}  # server URL -> plane
_KUBECONFIGS: dict[str, Path] = {}  # server URL -> the operator's kubeconfig on it
_LOGS: set[Path] = set()  # audit logs of planes started otherwise (`rayop local up --audit-log-path`)
SESSION_USAGE = Usage()


def watch_audit_log(path: Path) -> None:
    _LOGS.add(path)


def collect_audit_log(path: Path) -> None:
    if path in _LOGS:
        _LOGS.discard(path)
        SESSION_USAGE.add(read_audit(path))


def enable(plane: ControlPlane) -> Path:
    """Give ``plane`` the operator identity: the chart's ClusterRole bound to ``rayop-operator``, and a
    kubeconfig for that user (returned). Remember the plane for the audit."""
    assert plane.pki is not None
    crt, key = plane.pki.client_cert(OPERATOR_USER)
    if not crt.exists():
        ca = pki.load_cert(plane.pki.client_ca.read_bytes())
        ca_key = pki.load_key(plane.pki.client_ca_key.read_bytes())
        cert, k = pki.make_leaf(ca, ca_key, OPERATOR_USER, client=True, validity=dt.timedelta(days=30))
        crt.write_bytes(pki.pem(cert))
        key.write_bytes(pki.key_pem(k))
        os.chmod(key, 0o600)
    role = chart_role("ClusterRole")
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"rayop-test-{OPERATOR_USER}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "rayop"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": OPERATOR_USER}],
    }
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=_docs(role, binding))
    path = plane.write_kubeconfig(plane.state_dir / "operator.kubeconfig", user=OPERATOR_USER)
    _PLANES[plane.server] = plane
    _KUBECONFIGS[plane.server] = path
    return path


def operator_kubeconfig(plane: ControlPlane) -> Path:
    return _KUBECONFIGS.get(plane.server) or enable(plane)


def grant_in_namespace(plane: ControlPlane, namespace: str) -> None:
    """The chart's leader-election Role, in a test's namespace (where the test puts the Lease)."""
    role = chart_role("Role", "-leader-election")
    role = {**role, "metadata": {"name": "rayop-leader-election", "namespace": namespace}}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "rayop-leader-election", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rayop-leader-election"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": OPERATOR_USER}],
    }
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=_docs(role, binding))


def operator_client(client: ApiClient) -> ApiClient:
    """A client for the same plane as ``client``, as the operator (the plane must have been enabled)."""
    try:
        path = _KUBECONFIGS[client.config.server]
    except KeyError:
        raise AssertionError(
            f"{client.config.server}: no operator identity on this plane; start it through tests.rbac"
        ) from None
    cfg = load_kubeconfig(path)
    cfg.qps, cfg.burst = client.config.qps, client.config.burst
    return ApiClient(cfg, user_agent="kuberay-operator/rayop")


def collect(plane: ControlPlane) -> None:
    """Fold a plane's audit log into this session's usage (call before stopping it)."""
    if _PLANES.pop(plane.server, None) is not None:
        SESSION_USAGE.add(read_audit(audit_log_path(plane.state_dir)))
    _KUBECONFIGS.pop(plane.server, None)


def session_usage() -> Usage:
    """What this session's operators did so far: stopped planes plus those still running."""
    total = Usage()
    total.add(SESSION_USAGE)
    for plane in _PLANES.values():
        total.add(read_audit(audit_log_path(plane.state_dir)))
    for path in _LOGS:
        total.add(read_audit(path))
    return total


def _docs(*objs: dict[str, Any]) -> str:
    return "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objs)


def rules_of(role: dict[str, Any]) -> Iterator[tuple[Use, tuple[str, ...]]]:
    """Each (group, resource, verb) a role grants, with the resourceNames it is limited to."""
    for rule in role.get("rules") or []:
        names = tuple(rule.get("resourceNames") or ())
        for g in rule.get("apiGroups") or []:
            for r in rule.get("resources") or []:
                for v in rule.get("verbs") or []:
                    yield (g, r, v), names


# Which tiers this session ran completely (conftest's hooks fill it), so that a session's usage is only
# remembered as a tier's usage when the whole tier ran and passed.
TIERS = ("integration", "e2e")


@dataclass
class SessionTiers:
    selected: set[str] = field(default_factory=set)  # tiers whose folder the session collected in full
    deselected: set[str] = field(default_factory=set)  # tiers with at least one deselected test
    failed: bool = False  # a test (other than the least-privilege check) failed

    def complete(self) -> set[str]:
        return self.selected - self.deselected


SESSION_TIERS = SessionTiers()
CACHE_KEY = "rayop/rbac-usage/{tier}"
