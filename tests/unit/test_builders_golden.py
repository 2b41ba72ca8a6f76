"""Golden tests: each tests/golden/<case>/raycluster.yaml is built and compared field by field with the
hand-derived expectations next to it (tests/golden/README.md explains how they were written)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from rayop.builders import ingress, pod, rbac, redis_cleanup, secrets, service, status, storage
from rayop.builders.options import BuildOptions

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "raycluster.yaml").exists())
INPUTS = {"raycluster.yaml", "options.yaml", "status-input.yaml"}

Obj = dict[str, Any]


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def independent_hash(spec: Obj) -> str:
    """The head pod's recreate hash, recomputed here from its definition (docs/compatibility.md#pods,
    step 2) rather than through rayop's helper."""
    s = copy.deepcopy(spec)
    s.pop("upgradeStrategy", None)
    groups = [s.get("headGroupSpec") or {}, *(s.get("workerGroupSpecs") or [])]
    for i, g in enumerate(groups):
        pod_spec = (g.get("template") or {}).get("spec") or {}
        pod_spec.pop("tolerations", None)
        pod_spec.pop("schedulingGates", None)
        if i:
            for key in ("replicas", "minReplicas", "maxReplicas"):
                g.pop(key, None)
            (g.get("scaleStrategy") or {}).pop("workersToDelete", None)
    blob = json.dumps(s, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.b32hexencode(hashlib.sha1(blob, usedforsecurity=False).digest()).decode()


def diff(expected: Any, actual: Any, path: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual), key=str):
            p = f"{path}.{key}"
            if key not in actual:
                out.append(f"{p}: missing (expected {expected[key]!r})")
            elif key not in expected:
                out.append(f"{p}: unexpected {actual[key]!r}")
            else:
                out += diff(expected[key], actual[key], p)
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        out = (
            [f"{path}: length {len(actual)} != expected {len(expected)}"]
            if len(expected) != len(actual)
            else []
        )
        for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
            out += diff(e, a, f"{path}[{i}]")
        return out
    return [] if expected == actual else [f"{path}: {actual!r} != expected {expected!r}"]


def builders(case: Path, cluster: Obj, opts: BuildOptions, options: Obj) -> dict[str, Callable[[], Any]]:
    groups = (cluster.get("spec") or {}).get("workerGroupSpecs") or []
    worker_kwargs = {"replica_index": 0, **(options.get("worker") or {})}

    def status_of() -> Any:
        inp = load(case / "status-input.yaml")
        return status.calculate_status(
            cluster,
            inp.get("pods") or [],
            inp.get("headService"),
            reconcile_error=inp.get("reconcileError"),
            now=inp["now"],
            gates=opts.feature_gates,
        )

    return {
        "head-pod": lambda: pod.build_head_pod(cluster, opts),
        "worker-pod": lambda: pod.build_worker_pod(cluster, groups[0], opts, **worker_kwargs),
        "head-service": lambda: service.build_head_service(cluster, opts),
        "serve-service": lambda: service.build_serve_service(cluster, opts),
        "headless-service": lambda: service.build_headless_worker_service(cluster, opts),
        "service-account": lambda: rbac.build_service_account(cluster),
        "role": lambda: rbac.build_role(cluster),
        "role-binding": lambda: rbac.build_role_binding(cluster),
        "ingress": lambda: ingress.build_ingress(cluster),
        "gcs-pvc": lambda: storage.build_gcs_pvc(cluster),
        "auth-secret": lambda: secrets.build_auth_secret(cluster, str(options["auth_token"])),
        "redis-cleanup-job": lambda: redis_cleanup.build_redis_cleanup_job(
            cluster, pod.build_head_pod(cluster, opts)
        ),
        "status": status_of,
    }


def expected_files(case: Path) -> list[Path]:
    return sorted(p for p in case.glob("*.yaml") if p.name not in INPUTS)


def test_enough_cases() -> None:
    assert len(CASES) >= 20
    assert all(expected_files(GOLDEN / c) for c in CASES)


@pytest.mark.parametrize("case_name", CASES)
def test_golden(case_name: str) -> None:
    case = GOLDEN / case_name
    cluster = load(case / "raycluster.yaml")
    options = load(case / "options.yaml") if (case / "options.yaml").exists() else {}
    opts = BuildOptions(**(options.get("build_options") or {}))
    table = builders(case, cluster, opts, options)
    before = copy.deepcopy(cluster)
    problems: list[str] = []
    for path in expected_files(case):
        kind = path.stem
        assert kind in table, f"{path.name}: no builder for this expectation"
        text = path.read_text().replace("<UPGRADE_HASH>", independent_hash(cluster["spec"]))
        expected = yaml.safe_load(text)
        actual = table[kind]()
        problems += [f"{path.name}{p}" for p in diff(expected, actual)]
    assert cluster == before, "builders must not mutate their input"
    assert not problems, "\n".join(problems)
