"""The chaos campaign: faults injected at random points into a running workload, invariants after each.

    .venv/bin/python bench/chaos.py                 # the full campaign (`make chaos`, about an hour)
    .venv/bin/python bench/chaos.py --quick         # one fault of each kind (`make chaos CHAOS_QUICK=1`)
    .venv/bin/python bench/chaos.py --seed 1234     # replay a campaign's sequence of actions and faults
    .venv/bin/python bench/chaos.py --only operator-kill,api-429 --count 3

The campaign prints its seed first and every fault with its own seed. Writes bench/results/chaos.json
(every fault) and, for a full or quick run, the figures section of RELIABILITY.md. What runs, what is
checked and why: RELIABILITY.md. The real-Ray segment needs root and iproute2 (the node agent).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from tests.chaos import campaign as cmp  # noqa: E402

RESULTS = BENCH / "results"
RELIABILITY = REPO / "RELIABILITY.md"
MARKERS = "<!-- chaos-figures:start -->", "<!-- chaos-figures:end -->"
RAY_MARKERS = "<!-- chaos-ray-figures:start -->", "<!-- chaos-ray-figures:end -->"


def figures(results: cmp.Results, command: str, segment: str, duration: float) -> str:
    """The figures section of RELIABILITY.md for one segment ("fake" or "ray") of a campaign."""
    from bench.run import machine

    faults = cmp.ray_faults() if segment == "ray" else cmp.FAKE_FAULTS
    rows = [row for row in results.summary() if row[0] in faults]
    lines = [
        f"Campaign of {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}: `{command}`, seed "
        f"{results.seed}, {sum(row[1] for row in rows)} faults in {duration / 60:.1f} minutes on {machine()}.",
        "",
        "| fault | injected | recovery median (s) | recovery max (s) | settle deadline (s) | violations |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, n, med, mx, bad in rows:
        lines.append(f"| {kind} | {n} | {med:.1f} | {mx:.1f} | {faults[kind].settle:.0f} | {bad} |")
    if segment == "ray":
        lines += [""] + [f"- {c}" for c in results.checks if c.segment == "ray"]
    if results.fuzz and segment == "fake":
        f = results.fuzz
        lines += [
            "",
            f"Fuzzed objects sent to the live operator meanwhile: {f.get('sent', 0)} "
            f"(admitted by the API server: {sum(f.get('admitted', {}).values())}); "
            f"unexpected server errors: {len(f.get('server_errors', []))}.",
        ]
    return "\n".join(lines)


def write_figures(section: str, markers: tuple[str, str] = MARKERS) -> None:
    start, end = markers
    text = RELIABILITY.read_text()
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    RELIABILITY.write_text(f"{head}{start}\n{section}\n{end}{tail}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="one fault of each kind")
    ap.add_argument("--only", default="", help="comma-separated fault kinds")
    ap.add_argument("--count", type=int, default=0, help="faults per kind (default: 5, or 1 with --quick)")
    ap.add_argument("--operator-kills", type=int, default=0, help="operator-kill faults in the fake segment")
    ap.add_argument("--no-fuzz", action="store_true")
    ap.add_argument(
        "--segments",
        default="fake,ray",
        help="fake: the plane with a fake Ray fleet; ray: real Ray through the node agent (root)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs of every process)")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    results = cmp.Results(seed=seed)
    cmp.say(f"seed {seed} (replay: bench/chaos.py --seed {seed}{' --quick' if args.quick else ''})")
    per = args.count or (1 if args.quick else 5)
    kills = args.operator_kills or (1 if args.quick else 50)
    only = [k for k in args.only.split(",") if k]
    workdir = cmp.default_workdir()
    cmp.say(f"work directory {workdir}")
    took: dict[str, float] = {}  # segment -> seconds
    try:
        if "fake" in args.segments:
            kinds = [k for k in cmp.FAKE_FAULTS if not only or k in only]
            if kinds:
                counts = cmp.counts_for(kinds, per, kills)
                t0 = time.monotonic()
                asyncio.run(cmp.fake_campaign(workdir / "fake", results, counts, fuzz=not args.no_fuzz))
                took["fake"] = time.monotonic() - t0
        if "ray" in args.segments:
            kinds = [k for k in cmp.RAY_FAULT_KINDS if not only or k in only]
            if kinds and (os.geteuid() != 0 or not shutil.which("ip")):
                cmp.say("real-Ray segment skipped: it needs root and iproute2")
                results.notes.append("real-Ray segment skipped (not root or no iproute2)")
            elif kinds:
                t0 = time.monotonic()
                asyncio.run(cmp.ray_campaign(workdir / "ray", results, {k: per for k in kinds}))
                took["ray"] = time.monotonic() - t0
    finally:
        results.finished = time.monotonic()
        RESULTS.mkdir(exist_ok=True)
        name = "chaos-ray.json" if args.segments == "ray" else "chaos.json"
        (RESULTS / name).write_text(json.dumps(results.to_json(), indent=1))
        for kind, n, med, mx, bad in results.summary():
            cmp.say(
                f"{kind:16} {n:3} faults  recovery median {med:5.1f} s  max {mx:5.1f} s  violations {bad}"
            )
        cmp.say(
            f"{len(results.records)} faults in {results.finished - results.started:.0f} s, "
            f"{len(results.violations)} with violations; seed {seed}"
        )
        complete = not only and not args.count and not args.operator_kills and results.records
        if args.segments == "fake,ray":
            command = "make chaos CHAOS_QUICK=1" if args.quick else "make chaos"
        else:
            command = f"bench/chaos.py --segments {args.segments}" + (" --quick" if args.quick else "")
        if complete and "fake" in took and not args.no_fuzz:
            write_figures(figures(results, command, "fake", took["fake"]))
            cmp.say(f"fake-Ray figures written to {RELIABILITY.name}")
        if complete and "ray" in took and any(r.kind in cmp.RAY_FAULT_KINDS for r in results.records):
            write_figures(figures(results, command, "ray", took["ray"]), RAY_MARKERS)
            cmp.say(f"real-Ray figures written to {RELIABILITY.name}")
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if results.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
