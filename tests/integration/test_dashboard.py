"""The Grafana dashboard (config/grafana/rayop-operator.json) against the metrics a running operator
really serves: every metric a panel queries exists, and every kuberay_*, controller-runtime, workqueue
and client metric the operator serves has a panel."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from rayop.local.plane import ControlPlane, pick_free_ports
from rayop.runtime.client import ApiClient
from tests import rbac
from tests.helpers import eventually
from tests.integration.rayclusters import RAYCLUSTERS, raycluster
from tests.integration.rayjobs import RAYJOBS, rayjob

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "config" / "grafana" / "rayop-operator.json"
# Families the dashboard must cover; process_*, python_* and rayop_* are optional.
COVERED = ("kuberay_", "controller_runtime_", "workqueue_", "rest_client_", "leader_election_")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count", "_created")


def dashboard_metrics() -> set[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in doc["templating"]["list"] if v.get("type") == "query"]
    names = set()
    for expr in exprs:
        for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
            if token.startswith((*COVERED, "process_", "python_", "rayop_")):
                for suffix in HISTOGRAM_SUFFIXES:
                    if token.endswith(suffix):
                        token = token[: -len(suffix)]
                names.add(token)
    return names


def served_families(text: str) -> set[str]:
    """Metric families, without prometheus_client's companion `*_created` timestamps (not metrics one
    graphs; controller-runtime has none)."""
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    return {n for n in names if not n.endswith("_created")}


def start_operator(plane: ControlPlane, namespace: str, metrics: int, log: Any) -> subprocess.Popen[bytes]:
    probe, webhook = pick_free_ports(2, avoid=[metrics])
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rayop.cli.main",
            "operator",
            f"--kubeconfig={rbac.operator_kubeconfig(plane)}",
            f"--watch-namespace={namespace}",
            f"--metrics-addr=127.0.0.1:{metrics}",
            f"--health-probe-bind-address=127.0.0.1:{probe}",
            "--enable-leader-election=true",
            f"--leader-election-namespace={namespace}",
            "--enable-metrics=true",
            # Served, not registered: its metrics exist on every replica.
            "--enable-webhook=true",
            "--webhook-host=127.0.0.1",
            f"--webhook-port={webhook}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def test_dashboard_queries_the_metrics_the_operator_serves(
    plane: ControlPlane, kube: ApiClient, namespace: str, tmp_path: Path
) -> None:
    metrics = pick_free_ports(1)[0]
    log = (tmp_path / "operator.log").open("wb")
    proc = start_operator(plane, namespace, metrics, log)
    rbac.grant_in_namespace(plane, namespace)
    try:
        await kube.create(RAYCLUSTERS, raycluster("metrics", namespace), namespace)
        await kube.create(RAYJOBS, rayjob("metrics-job", namespace), namespace)

        def scrape() -> str:
            assert proc.poll() is None, (tmp_path / "operator.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=2) as r:
                    text: str = r.read().decode()
            except OSError:
                return ""
            # Wait until both kinds have been seen and reconciled at least once.
            ready = (
                'kuberay_cluster_info{name="metrics"' in text
                and 'kuberay_job_info{name="metrics-job"' in text
            )
            return text if ready and "controller_runtime_reconcile_total{" in text else ""

        text = await eventually(scrape, 60, interval=0.5, what="metrics of both kinds")
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    served = served_families(text)
    queried = dashboard_metrics()
    assert not queried - served, (
        f"the dashboard queries metrics the operator does not serve: {sorted(queried - served)}"
    )
    uncovered = {m for m in served if m.startswith(COVERED)} - queried
    assert not uncovered, f"served metrics without a panel: {sorted(uncovered)}"
