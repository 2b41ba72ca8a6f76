"""`rayop local up` with the operator: the local plane enforces rayop's admission webhook and the
operator reconciles what is admitted; `local down` stops everything it started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rayop.local.plane import default_bin_dir, running_plane

REPO = Path(__file__).resolve().parents[2]

INVALID = """
apiVersion: ray.io/v1
kind: RayCluster
metadata: {name: bad-cluster}
spec:
  headGroupSpec:
    template:
      spec:
        containers: [{name: ray-head, image: rayproject/ray:2.60.0}]
  workerGroupSpecs:
    - groupName: small
      minReplicas: 5
      maxReplicas: 3
      template:
        spec:
          containers: [{name: ray-worker, image: rayproject/ray:2.60.0}]
"""


def _run(
    *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=300, cwd=REPO, env=env, input=input
    )


def test_local_up_enforces_the_webhook_and_reconciles(tmp_path: Path) -> None:
    state = tmp_path / "local"
    env = dict(os.environ)
    env.pop("ENABLE_WEBHOOKS", None)  # local up turns the webhook on explicitly; make sure nothing leaks
    up = _run(
        sys.executable, "-m", "rayop.cli.main", "local", "up", "--dir", str(state), "--no-node", env=env
    )
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        st = running_plane(state)
        assert st is not None and "operator" in st.pids
        kubectl = [str(default_bin_dir() / "kubectl"), f"--kubeconfig={state / 'kubeconfig'}"]

        bad = _run(*kubectl, "apply", "-f", "-", input=INVALID)
        assert bad.returncode != 0
        # The rule min <= max is not in the CRD schema: only rayop's webhook can have said this.
        assert (
            'The RayCluster "bad-cluster" is invalid: spec.workerGroupSpecs[0].minReplicas: '
            "Invalid value: 5: must be less than or equal to maxReplicas (3)"
        ) in bad.stderr

        good = _run(*kubectl, "apply", "--server-side", "-f", str(REPO / "examples" / "raycluster.yaml"))
        assert good.returncode == 0, good.stderr
        deadline = time.monotonic() + 90
        pods: list[object] = []
        while time.monotonic() < deadline:
            out = _run(*kubectl, "get", "pods", "-l", "ray.io/cluster=raycluster-mini", "-o", "json")
            pods = json.loads(out.stdout or "{}").get("items", [])
            if len(pods) == 3:
                break
            time.sleep(0.5)
        assert len(pods) == 3, "the operator created the head and both workers"

        # The web view runs in the operator on loopback, and `local up` printed where.
        url = next(line.split(": ", 1)[1] for line in up.stdout.splitlines() if line.startswith("web view: "))
        assert url.startswith("http://127.0.0.1:"), up.stdout
        deadline = time.monotonic() + 30
        page = ""
        while time.monotonic() < deadline and "raycluster-mini" not in page:
            with urllib.request.urlopen(url, timeout=5) as r:
                page = r.read().decode()
            time.sleep(0.2)
        assert 'href="/clusters/default/raycluster-mini"' in page, page[-2000:]
    finally:
        down = _run(sys.executable, "-m", "rayop.cli.main", "local", "down", "--dir", str(state))
    assert down.returncode == 0
    assert running_plane(state) is None
