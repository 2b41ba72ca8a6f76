"""A short chaos campaign (`bench/chaos.py` runs the long one): a few faults at seeded random points into a
live workload of RayClusters, RayJobs and a RayService, every invariant of `tests/chaos/invariants.py`
holding again within its settle deadline after each.

The seed is printed (and taken from RAYOP_CHAOS_SEED when set), so a failure replays with
`RAYOP_CHAOS_SEED=<seed> pytest tests/integration/test_chaos_smoke.py` or `bench/chaos.py --seed <seed>`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from tests.chaos import campaign as cmp

SMOKE = {"operator-kill": 2, "leader-kill": 1, "apiserver-kill": 1, "watch-cut": 1}


async def test_faults_at_random_points_lose_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("RAYOP_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"chaos smoke seed {seed} (replay: RAYOP_CHAOS_SEED={seed})")
    results = cmp.Results(seed=seed)
    await cmp.fake_campaign(tmp_path, results, dict(SMOKE), fuzz=True, small=True)
    assert not results.notes or not any("never settled" in n for n in results.notes), results.notes
    assert sorted(r.kind for r in results.records) == sorted(k for k, n in SMOKE.items() for _ in range(n))
    bad = [f"#{r.index} {r.kind} (seed {r.seed}): {r.fault}: {r.violations[:5]}" for r in results.violations]
    assert not bad, f"campaign seed {seed}:\n" + "\n".join(bad)
    unsettled = [r for r in results.records if r.recovery is None]
    assert not unsettled, f"campaign seed {seed}: not settled: {unsettled}"
    # The fuzzers reached the live operator and it never exited on its own (an exit is a violation above).
    assert results.fuzz.get("sent", 0) > 0
