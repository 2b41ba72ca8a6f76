"""The chaos campaign: faults injected at random points into a running workload, invariants checked after
each (`bench/chaos.py` runs it; `tests/integration/test_chaos_smoke.py` runs a short one in `make test`).
What it does and what it found is in RELIABILITY.md."""
