"""The Helm chart installed on the local plane the way a platform engineer installs it on a cluster.

`rayop local up --no-operator` (its own state folder, node name, pod network and bridge; the API server
audits the chart's ServiceAccount), then `helm install` of charts/rayop with two replicas. The node agent
runs the operator Pods as processes: the chart's image (`rayop:<appVersion>`) maps to the environment
that ran `local up`, each Pod has its own network namespace (both listen on :8080, :8082 and :9443) and
the ServiceAccount token the API server's ServiceAccount admission projected into it, at the path
in-cluster configuration reads. Then, in order:

- the two replicas elect one leader through the Lease, and both are Ready on their :8082 probes;
- the API server calls the webhook through its Service and rejects an invalid RayCluster;
- a RayCluster with real Ray becomes ready and a RayJob on it runs to SUCCEEDED;
- `helm upgrade` of reconcileConcurrency rolls both Pods, and a new one leads;
- `helm uninstall` removes the operator and its webhook but leaves the CRDs, the Ray objects and their
  Pods; a RayJob deleted then stays Terminating on its finalizer until the finalizer is removed by
  hand, while a RayCluster (no finalizer) goes at once with its Pods (docs/install.md, "Uninstall").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from rayop.controllers.podplan import is_running_and_ready
from rayop.local.plane import default_bin_dir, pick_free_ports
from tests import rbac
from tests.helpers import wait_for
from tests.integration.rayclusters import raycluster
from tests.integration.test_chart import CHART, HELM
from tests.nodes import RAY_ENV, needs_root, node_network

REPO = Path(__file__).resolve().parents[2]
NS = "rayop-system"
USERS = "team-ray"
SA_USER = f"system:serviceaccount:{NS}:rayop"
# The head and worker Pods of the test's RayCluster (not the RayJob's submitter).
RAY_PODS = "ray.io/cluster=charted,ray.io/node-type"
# Pods of real Ray on a loaded 2-core machine: generous deadlines, and every wait polls.
SLOW = 240.0

pytestmark = [
    needs_root,
    pytest.mark.skipif(not (RAY_ENV / "bin" / "ray").exists(), reason="no Ray environment (make deps)"),
    pytest.mark.skipif(not HELM.exists(), reason="no helm (make deps)"),
]


def _invalid() -> dict[str, Any]:
    rc = raycluster("invalid", USERS, replicas=1)
    rc["spec"]["workerGroupSpecs"][0].update(minReplicas=5, maxReplicas=3)
    return rc


INVALID = _invalid()
REJECTION = (
    "spec.workerGroupSpecs[0].minReplicas: Invalid value: 5: must be less than or equal to maxReplicas (3)"
)
CLUSTER = raycluster("charted", USERS, replicas=1)

JOB = {
    "apiVersion": "ray.io/v1",
    "kind": "RayJob",
    "metadata": {"name": "charted-job"},
    "spec": {
        # Tasks spread over the head and the worker: the job needs the whole cluster to work.
        "entrypoint": 'python -c "import ray; ray.init(); '
        "f = ray.remote(lambda x: x * x); print('total', sum(ray.get([f.remote(i) for i in range(8)])))\"",
        "clusterSelector": {"ray.io/cluster": "charted"},
    },
}


@dataclass
class Local:
    state: Path
    env: dict[str, str]

    def run(self, *args: str, input: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            list(args), input=input, capture_output=True, text=True, env=self.env, timeout=300, cwd=REPO
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args[:4])} ... exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
            )
        return proc.stdout + proc.stderr

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.run(str(default_bin_dir() / "kubectl"), *args, input=input, check=check)

    def helm(self, *args: str) -> str:
        return self.run(str(HELM), *args)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def apply(self, obj: dict[str, Any], namespace: str) -> None:
        self.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(obj))


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rayop.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
    )


@pytest.fixture(scope="module")
def local() -> Iterator[Local]:
    net = node_network("chart")
    # Not under /tmp: pods get a private /tmp, which would hide their volumes kept in the state folder.
    state = Path(tempfile.mkdtemp(prefix="rayop-chart-e2e-", dir="/var/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "ENABLE_WEBHOOKS"}
    env.update(
        KUBECONFIG=str(state / "kubeconfig"),
        # Helm's own folders (repositories, cache, plugins) stay in this plane's state folder.
        HELM_CACHE_HOME=str(state / "helm" / "cache"),
        HELM_CONFIG_HOME=str(state / "helm" / "config"),
        HELM_DATA_HOME=str(state / "helm" / "data"),
    )
    policy = state / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(rbac.audit_policy()))
    audit_log = state / "logs" / "audit.log"
    (kubelet_port,) = pick_free_ports(1)
    up = _cli(
        "local", "up", "--dir", str(state), "--no-operator", "--no-metrics-server",
        "--node-name", net["name"], "--pod-cidr", net["cidr"], "--bridge", net["bridge"],
        "--kubelet-port", str(kubelet_port),
        "--audit-policy-file", str(policy), "--audit-log-path", str(audit_log),
        env=env,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        rbac.watch_audit_log(audit_log)
        yield Local(state, env)
    finally:
        rbac.collect_audit_log(audit_log)
        down = _cli("local", "down", "--dir", str(state), env=env)
        shutil.rmtree(state, ignore_errors=True)
    assert down.returncode == 0, down.stderr


# --- what the test looks at ------------------------------------------------------------------------------
def operator_pods(loc: Local) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = loc.get("pods", "-n", NS, "-l", "app.kubernetes.io/name=rayop")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def ready_replicas(loc: Local, n: int, arg: str = "") -> list[dict[str, Any]] | None:
    """The operator Pods when there are exactly `n`, all Ready, all started with `arg`; else None."""
    pods = operator_pods(loc)
    if len(pods) != n or not all(is_running_and_ready(p) for p in pods):
        return None
    if arg and not all(arg in p["spec"]["containers"][0]["args"] for p in pods):
        return None
    return pods


def leader_pod(loc: Local) -> str:
    """The Pod named by the Lease's holder (`<pod>_<uuid>`), or ""."""
    lease = loc.get("lease", "ray-operator-leader", "-n", NS)
    return str(lease["spec"].get("holderIdentity") or "").split("_", 1)[0]


def cluster_state(loc: Local) -> str:
    return str(loc.get("raycluster", "charted", "-n", USERS).get("status", {}).get("state") or "")


def job_status(loc: Local) -> str:
    return str(loc.get("rayjob", "charted-job", "-n", USERS).get("status", {}).get("jobStatus") or "")


def rejection(loc: Local) -> str:
    out = loc.kubectl(
        "create", "--dry-run=server", "-n", USERS, "-f", "-", input=json.dumps(INVALID), check=False
    )
    # Until the operator wrote the caBundle the API server cannot verify the webhook (a TLS error, and
    # failurePolicy Fail refuses the object for that reason): only the rule's own message counts.
    return out if REJECTION in out else ""


def gone(loc: Local, *args: str) -> bool:
    return "NotFound" in loc.kubectl("get", *args, check=False)


# --- the test ----------------------------------------------------------------------------------------------
def test_chart_install_upgrade_uninstall_on_the_local_plane(local: Local) -> None:
    loc = local
    started = time.monotonic()

    # Install with two replicas and the self-managed webhook certificates (the defaults).
    loc.helm("install", "rayop", str(CHART), "-n", NS, "--create-namespace", "--set", "replicas=2")
    pods = wait_for(lambda: ready_replicas(loc, 2), SLOW, 1.0, "two Ready operator Pods")
    names = {p["metadata"]["name"] for p in pods}
    assert len({p["status"]["podIP"] for p in pods}) == 2, "each Pod has its own network namespace and IP"
    for p in pods:
        assert p["spec"]["serviceAccountName"] == "rayop"
        mounts = {m["mountPath"] for m in p["spec"]["containers"][0]["volumeMounts"]}
        # Put there by the API server's ServiceAccount admission (a projected token, ca.crt, namespace).
        assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts

    # Two replicas, one leader: the Lease names one of them, and only that one's log says it leads.
    leader = wait_for(lambda: leader_pod(loc), 60, 1.0, "a Lease holder")
    assert leader in names, f"the Lease is held by {leader}, not by one of {names}"
    led = {n for n in names if '"became leader"' in loc.kubectl("logs", "-n", NS, n)}
    assert led == {leader}

    # In-cluster configuration: the operator's requests reach the API server as its ServiceAccount
    # (token from the projected volume), and the chart's RBAC allowed each of them.
    audit_log = loc.state / "logs" / "audit.log"
    wait_for(
        lambda: (
            {"leases", "rayclusters", "pods"} <= {r for _, r, _ in rbac.read_audit(audit_log, [SA_USER]).used}
        ),
        60,
        1.0,
        "the ServiceAccount's requests in the audit log",
    )

    # The webhook, reached through its Service; the caBundle is the CA in the Secret the replicas share.
    vwc = loc.get("validatingwebhookconfiguration", "rayop-validating-webhook")
    for hook in vwc["webhooks"]:
        assert hook["clientConfig"].get("service", {}).get("name") == "rayop-webhook"
        assert "url" not in hook["clientConfig"]
    loc.kubectl("create", "namespace", USERS)
    wait_for(lambda: rejection(loc), 60, 1.0, "the webhook's rejection of an invalid RayCluster")
    secret = loc.get("secret", "rayop-webhook-cert", "-n", NS)
    vwc = loc.get("validatingwebhookconfiguration", "rayop-validating-webhook")
    assert {h["clientConfig"]["caBundle"] for h in vwc["webhooks"]} == {secret["data"]["ca.crt"]}

    # Real Ray under the charted operator: a RayCluster becomes ready, a RayJob on it succeeds.
    loc.apply(CLUSTER, USERS)
    wait_for(lambda: cluster_state(loc) == "ready", SLOW, 1.0, "RayCluster charted ready")
    loc.apply(JOB, USERS)
    wait_for(lambda: job_status(loc) in ("SUCCEEDED", "FAILED"), SLOW, 1.0, "RayJob charted-job finished")
    assert job_status(loc) == "SUCCEEDED", loc.get("rayjob", "charted-job", "-n", USERS)["status"]

    # Upgrade one value: both Pods are replaced by Pods with the new flag, and one of them leads.
    loc.helm("upgrade", "rayop", str(CHART), "-n", NS, "--reuse-values", "--set", "reconcileConcurrency=8")
    new = wait_for(
        lambda: ready_replicas(loc, 2, "--reconcile-concurrency=8"),
        SLOW,
        1.0,
        "two Ready Pods of the upgrade",
    )
    new_names = {p["metadata"]["name"] for p in new}
    assert not new_names & names, "every operator Pod was replaced"
    new_leader = wait_for(
        lambda: leader_pod(loc) in new_names and leader_pod(loc), 60, 1.0, "a new Pod leading"
    )
    assert '"reconcileConcurrency": 8' in loc.kubectl("logs", "-n", NS, new_leader)
    assert cluster_state(loc) == "ready", "the roll left the Ray cluster alone"

    # Uninstall: the operator and its webhook go; the CRDs, the Ray objects and their Pods stay.
    ray_pods = {p["metadata"]["name"] for p in loc.get("pods", "-n", USERS, "-l", RAY_PODS)["items"]}
    assert len(ray_pods) == 2, ray_pods
    # Everything the operator did under the chart's roles so far (install, Ray, upgrade) was allowed, and
    # counts towards the least-privilege check up to here: Helm deletes the roles and the Deployment
    # together, so the last calls of the stopping Pods may be refused, which says nothing about the roles.
    usage = rbac.read_audit(audit_log)
    assert usage.used and not usage.denied, f"the chart's RBAC refused the operator: {usage.denied}"
    rbac.collect_audit_log(audit_log)
    loc.helm("uninstall", "rayop", "-n", NS)
    wait_for(lambda: not operator_pods(loc), SLOW, 1.0, "the operator Pods gone")
    assert "rayop-validating-webhook" not in loc.kubectl(
        "get", "validatingwebhookconfigurations", "-o", "name"
    )
    crds = loc.kubectl("get", "crd", "-o", "name")
    for crd in ("rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io"):
        assert crd in crds
    assert cluster_state(loc) == "ready" and job_status(loc) == "SUCCEEDED"
    still = loc.get("pods", "-n", USERS, "-l", RAY_PODS)["items"]
    assert {p["metadata"]["name"] for p in still} == ray_pods
    assert all(p["status"]["phase"] == "Running" for p in still)

    # Finalizers without an operator: nobody removes the RayJob's, so it stays Terminating until a
    # user removes it; the RayCluster has none, so it goes at once and the garbage collector takes its Pods.
    loc.kubectl("delete", "rayjob", "charted-job", "-n", USERS, "--wait=false")
    job = loc.get("rayjob", "charted-job", "-n", USERS)
    assert job["metadata"].get("deletionTimestamp")
    assert job["metadata"]["finalizers"] == ["ray.io/rayjob-finalizer"]
    loc.kubectl(
        "patch", "rayjob", "charted-job", "-n", USERS, "--type=json",
        "-p", '[{"op":"remove","path":"/metadata/finalizers"}]',
    )  # fmt: skip
    wait_for(lambda: gone(loc, "rayjob", "charted-job", "-n", USERS), 30, 0.5, "the RayJob gone")
    loc.kubectl("delete", "raycluster", "charted", "-n", USERS, "--wait=false")
    wait_for(lambda: gone(loc, "raycluster", "charted", "-n", USERS), 30, 0.5, "the RayCluster gone")
    wait_for(
        lambda: not loc.get("pods", "-n", USERS, "-l", RAY_PODS)["items"],
        SLOW,
        1.0,
        "the Ray Pods collected",
    )
    print(f"chart install, upgrade and uninstall took {time.monotonic() - started:.0f} s")
    print(f"refused while uninstalling: {sorted(rbac.read_audit(audit_log).denied)}")
