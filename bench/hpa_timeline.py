"""Timelines of Ray's autoscaler and the Kubernetes HPA working on the local plane, with real Ray.

Runs the two scenarios of tests/e2e/hpa_scenarios.py (the ones tests/e2e/test_hpa_ray.py asserts) on a
private control plane with the node agent, metrics-server and `rayop operator`:

- the HPA sizing a worker group (examples/hpa-rayworkergroup.yaml, no Ray autoscaler) under a CPU-burning
  Ray workload, and after it;
- the HPA sizing a Serve deployment (examples/hpa-serve.yaml) under request load through the serve
  Service, while Ray's autoscaler adds and removes the worker Pods its replicas need.

Every 2 s it notes what each part saw: the HPA's CPU utilisation and desired replicas, the scale target's
spec (what the HPA wrote) and status, the worker Pods, Ray's alive worker nodes; and the HPA's rescale
events. It writes the timelines as a Markdown section (bench/results/hpa.md), a plot
(bench/results/hpa-timeline.png) and the raw samples (bench/results/hpa.json).

    .venv/bin/python bench/hpa_timeline.py                 # both runs, about 8 minutes
    .venv/bin/python bench/hpa_timeline.py --from a.json b.json   # from timelines the e2e test saved

Needs root, iproute2 and metrics-server (`make deps`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.run import machine  # noqa: E402
from tests.e2e import hpa_scenarios as H  # noqa: E402

RESULTS = BENCH / "results"
SECTION = RESULTS / "hpa.md"
PLOT = RESULTS / "hpa-timeline.png"
RAW = RESULTS / "hpa.json"
TARGET_UTILIZATION = 60
# Sample columns whose change makes a row of the condensed table.
CHANGES = ("desired", "spec", "replicas", "ready", "pods", "ready_pods", "ray_nodes")


def timeline_from_json(d: dict[str, Any]) -> H.Timeline:
    tl = H.Timeline(str(d["name"]))
    tl.samples = [H.Sample(**s) for s in d.get("samples") or []]
    tl.marks = {str(k): float(v) for k, v in (d.get("marks") or {}).items()}
    tl.decisions = [(float(t), str(m)) for t, m in d.get("decisions") or []]
    tl.notes = [(float(t), str(r), str(m)) for t, r, m in d.get("notes") or []]
    tl.load = str(d.get("load") or "")
    tl.failed_requests = d.get("failed_requests")
    return tl


async def run_both() -> list[H.Timeline]:
    async with H.world("hpab") as (kube, ns):
        first = await H.worker_group_run(kube, ns)
        second = await H.serve_run(kube, ns)
    return [first, second]


# The plot ----------------------------------------------------------------------------------------------------


def plot(timelines: list[H.Timeline], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(timelines), 1, figsize=(10, 4.2 * len(timelines)), squeeze=False)
    for ax, tl in zip((a[0] for a in axes), timelines, strict=True):
        t = [s.t for s in tl.samples]

        def series(attr: str, shift: float = 0.0, tl: H.Timeline = tl) -> list[float]:
            """Counts are shifted a little apart so that equal lines stay visible."""
            return [
                float("nan") if getattr(s, attr) is None else float(getattr(s, attr)) + shift
                for s in tl.samples
            ]

        ax.step(t, series("spec", 0.06), where="post", label="replicas the HPA wrote (spec.replicas)", lw=2)
        ax.step(t, series("replicas", 0.02), where="post", label="scale target's status.replicas", ls="--")
        ax.step(t, series("pods", -0.02), where="post", label="worker Pods", lw=1.5)
        ax.step(t, series("ray_nodes", -0.06), where="post", label="Ray worker nodes (alive)", ls=":", lw=2)
        ax.set_ylabel("replicas / Pods / nodes")
        ax.set_ylim(0, max(tl.max_of(a) for a in ("spec", "replicas", "pods", "ray_nodes")) + 1)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("seconds since the cluster was applied")
        ax.set_title(tl.name)
        on, off = tl.marks.get("load on"), tl.marks.get("load off")
        if on is not None:
            ax.axvspan(on, off if off is not None else t[-1], color="orange", alpha=0.12, label="load")
        for when, _ in tl.decisions:
            ax.axvline(when, color="grey", lw=0.6, alpha=0.6)
        cpu = ax.twinx()
        cpu.plot(t, series("utilization"), color="tab:red", alpha=0.7, label="HPA's CPU utilisation (%)")
        cpu.axhline(TARGET_UTILIZATION, color="tab:red", ls="--", lw=0.8, alpha=0.6)
        cpu.set_ylabel("CPU, % of requests (HPA)")
        cpu.set_ylim(0, max(150, tl.max_of("utilization") + 20))
        handles = ax.get_legend_handles_labels()
        more = cpu.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper right", fontsize=7)
    fig.text(0.01, 0.005, "grey lines: the HPA's rescale decisions; dashed red: its 60 % target", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# The section -------------------------------------------------------------------------------------------------


def _v(x: object) -> str:
    return "-" if x is None else str(x)


def condensed(tl: H.Timeline) -> list[H.Sample]:
    """The samples where a count changed (plus the first and last)."""
    out: list[H.Sample] = []
    prev: tuple[object, ...] | None = None
    for s in tl.samples:
        key = tuple(getattr(s, a) for a in CHANGES)
        if key != prev:
            out.append(s)
            prev = key
    if tl.samples and out[-1] is not tl.samples[-1]:
        out.append(tl.samples[-1])
    return out


def section(timelines: list[H.Timeline], command: str) -> str:
    date = dt.date.today().isoformat()
    lines = [
        "## Ray autoscaler and HPA: timelines (`bench/hpa_timeline.py`)",
        "",
        f"`{command}` ({date}; {machine()}). The local plane with the real HPA controller "
        f"(kube-controller-manager, evaluating every {H.HPA_SYNC}), metrics-server behind `metrics.k8s.io`, "
        "real Ray 2.60 Pods on the node agent and `rayop operator`. The examples, sized for 2 cores: "
        f"worker CPU requests {H.WORKER_CPU_REQUEST} (worker group) and {H.SERVE_CPU_REQUEST} (Serve), "
        f"scale-down stabilisation {H.STABILIZATION_SECONDS} s, Ray's idle timeout {H.IDLE_SECONDS} s. "
        "Sampled every 2 s; times in seconds since the cluster was applied. "
        "Regenerate: `.venv/bin/python bench/run.py hpa_timeline` (needs root).",
        "",
        f"![HPA and Ray autoscaler timelines]({PLOT.relative_to(REPO).as_posix()})",
        "",
    ]
    for tl in timelines:
        lines += [f"### {tl.name}", ""]
        lines += ["| phase | reached at (s) |", "|---|---|"]
        lines += [f"| {k} | {v:.0f} |" for k, v in tl.marks.items()]
        lines += [""]
        if tl.decisions:
            lines += ["HPA decisions (its `SuccessfulRescale` events):", ""]
            lines += [f"- {t:.0f} s: {m}" for t, m in tl.decisions]
            lines += [""]
        lines += [
            "| t (s) | phase | CPU % (HPA) | desired | spec.replicas | status.replicas | ready | Pods (ready) "
            "| Ray nodes |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for s in condensed(tl):
            lines.append(
                f"| {s.t:.0f} | {s.phase} | {_v(s.utilization)} | {_v(s.desired)} | {_v(s.spec)} | "
                f"{_v(s.replicas)} | {_v(s.ready)} | {s.pods} ({s.ready_pods}) | {_v(s.ray_nodes)} |"
            )
        lines += [""]
        util = [s.utilization for s in tl.samples if s.utilization is not None]
        facts = [f"peak CPU {max(util)} % of requests" if util else "no CPU metric seen"]
        if tl.failed_requests is not None:
            facts.append(f"failed requests: {tl.failed_requests}")
        if tl.load:
            facts.append(f"load: {tl.load}")
        lines += ["; ".join(facts) + ".", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="sources", nargs="*", type=Path, help="timeline JSON files to use")
    args = ap.parse_args()
    if args.sources:
        timelines = [timeline_from_json(json.loads(p.read_text())) for p in args.sources]
        command = (
            "bash scripts/pytest-tier.sh e2e -k hpa -s` (tests/e2e/test_hpa_ray.py), then "
            "`.venv/bin/python bench/hpa_timeline.py --from <the two timeline files it printed>"
        )
    else:
        timelines = asyncio.run(run_both())
        command = ".venv/bin/python bench/hpa_timeline.py"
    RESULTS.mkdir(exist_ok=True)
    H.dump(timelines, RAW)
    plot(timelines, PLOT)
    SECTION.write_text(section(timelines, command) + "\n")
    print(SECTION.read_text())


if __name__ == "__main__":
    main()
