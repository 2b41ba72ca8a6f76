"""The incremental upgrade's step computation (rayop/controllers/rayservice_steps.py), pure.

Each of KubeRay's test profiles (stepSizePercent / intervalSeconds / maxSurgePercent 100/1/100, 25/5/50,
5/10/25, from `ray-operator/test/e2eincrementalupgrade/`) is run to the end on a simulated clock, one
call per 2 s reconcile, forwards (an upgrade) and backwards from every point (a rollback): the sequence of
capacities and traffic is the one KubeRay's tests expect, each only moves one way, traffic never exceeds
the capacity it goes to, the total capacity never exceeds 100 + maxSurgePercent, and traffic steps are at
least intervalSeconds apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from rayop.controllers import rayservice_steps as S

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
PROFILES = [(100, 1, 100), (25, 5, 50), (5, 10, 25)]
PASS = timedelta(seconds=2)


@dataclass
class Run:
    moves: list[tuple[datetime, S.Move]]
    final: S.Split
    done_at: datetime


def run(split: S.Split, opts: S.Options, start: datetime = T0, limit: int = 2000) -> Run:
    now = start
    moves: list[tuple[datetime, S.Move]] = []
    for _ in range(limit):
        m = S.next_move(split, opts, now, to_ready=True, routes_ready=True)
        if m.kind == S.DONE:
            return Run(moves, split, now)
        if m.kind != S.WAIT:
            moves.append((now, m))
            split = m.split
        now += PASS
    raise AssertionError(f"not done after {limit} passes: {split}")


def kuberay_sequence(step: int, surge: int) -> list[tuple[str, int]]:
    """What KubeRay's e2e test waits for, in order (generateUpgradeSteps in
    ray-operator/test/e2eincrementalupgrade/support.go): pending capacity up, pending traffic up by steps,
    active capacity down; the last active capacity (0) is reached before the promotion."""
    out: list[tuple[str, int]] = []
    p_cap, p_traffic, a_cap = 0, 0, 100
    while p_traffic < 100:
        if p_traffic == p_cap:
            nxt = min(p_cap + surge, 100)
            if nxt > p_cap:
                out.append(("to_capacity", nxt))
                p_cap = nxt
        while p_traffic < p_cap:
            p_traffic = min(p_traffic + step, 100)
            out.append(("to_traffic", p_traffic))
        nxt = max(a_cap - surge, 0)
        if nxt < a_cap:
            out.append(("from_capacity", nxt))
            a_cap = nxt
    return out


def observed(moves: list[tuple[datetime, S.Move]]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for _, m in moves:
        if m.kind == S.RAISE_TO:
            out.append(("to_capacity", m.split.to_capacity))
        elif m.kind == S.SHIFT:
            out.append(("to_traffic", m.split.to_traffic))
        elif m.kind == S.LOWER_FROM:
            out.append(("from_capacity", m.split.from_capacity))
    return out


def check_invariants(start: S.Split, r: Run, opts: S.Options) -> None:
    prev = start
    last_shift = start.last_moved
    for at, m in r.moves:
        s = m.split
        # One thing per call, each one way only.
        changed = [
            s.to_capacity != prev.to_capacity,
            s.from_capacity != prev.from_capacity,
            s.to_traffic != prev.to_traffic,
        ]
        assert sum(changed) == 1, (prev, m)
        assert s.to_capacity >= prev.to_capacity
        assert s.from_capacity <= prev.from_capacity
        assert s.to_traffic >= prev.to_traffic
        assert 0 <= s.from_capacity <= s.to_capacity + s.from_capacity <= 100 + opts.max_surge_percent
        assert s.to_traffic <= s.to_capacity <= 100
        if m.kind == S.SHIFT:
            assert s.to_traffic - prev.to_traffic <= opts.step_percent
            if last_shift is not None:
                assert (at - last_shift).total_seconds() >= opts.interval_seconds, (at, last_shift)
            assert s.last_moved == at
            last_shift = at
        prev = s
    assert r.final.to_traffic == 100 and r.final.from_capacity == 0 and r.final.to_capacity == 100


@pytest.mark.parametrize(("step", "interval", "surge"), PROFILES)
def test_upgrade_follows_kuberay_profile(step: int, interval: int, surge: int) -> None:
    opts = S.Options(step, interval, surge)
    # The HTTPRoute gained the new cluster's backend (weight 0) at T0.
    start = S.Split(to_capacity=0, from_capacity=100, to_traffic=0, last_moved=T0)
    r = run(start, opts)
    assert observed(r.moves) == kuberay_sequence(step, surge)
    check_invariants(start, r, opts)
    shifts = [at for at, m in r.moves if m.kind == S.SHIFT]
    assert len(shifts) == -(-100 // step)  # each profile's surge is a multiple of its step
    # The first step waits a full interval after the backend appeared, like every later one.
    assert (shifts[0] - T0).total_seconds() >= interval


def test_profile_durations_are_bounded_by_the_interval() -> None:
    """25/5/50 needs 4 traffic steps 5 s apart: done within 4 intervals plus a pass per capacity change."""
    r = run(S.Split(0, 100, 0, T0), S.Options(25, 5, 50))
    assert timedelta(seconds=20) <= r.done_at - T0 <= timedelta(seconds=20) + 6 * PASS


@pytest.mark.parametrize(("step", "interval", "surge"), PROFILES)
def test_rollback_from_every_point_of_an_upgrade(step: int, interval: int, surge: int) -> None:
    """A rollback is the same loop with the roles swapped (traffic moves back to the active cluster);
    from any state an upgrade passes through it ends with the active cluster at full capacity and traffic
    and the new cluster at 0."""
    opts = S.Options(step, interval, surge)
    forward = run(S.Split(0, 100, 0, T0), opts)
    states = [S.Split(0, 100, 0, T0)] + [m.split for _, m in forward.moves]
    for state in states:
        if state.from_capacity == 0 and state.to_traffic == 100:
            continue  # that state promotes: there is nothing left to roll back
        back = S.Split(
            to_capacity=state.from_capacity,
            from_capacity=state.to_capacity,
            to_traffic=100 - state.to_traffic,
            last_moved=state.last_moved,
        )
        at = (state.last_moved or T0) + timedelta(seconds=1)
        r = run(back, opts, start=at)
        check_invariants(back, r, opts)


def test_waits_for_the_gateway_and_the_route() -> None:
    m = S.next_move(S.Split(0, 100, 0, None), S.Options(25, 5, 50), T0, to_ready=True, routes_ready=False)
    assert m.kind == S.WAIT and "Gateway" in m.why


def test_traffic_waits_for_the_cluster_it_moves_to() -> None:
    split = S.Split(50, 100, 0, None)
    m = S.next_move(split, S.Options(25, 5, 50), T0, to_ready=False, routes_ready=True)
    assert m.kind == S.WAIT
    # Capacity still rises for a cluster that is not ready: it needs the replicas to become ready.
    m = S.next_move(S.Split(0, 100, 0, None), S.Options(25, 5, 50), T0, to_ready=False, routes_ready=True)
    assert m.kind == S.RAISE_TO and m.split.to_capacity == 50


def test_interval_is_counted_from_the_last_change() -> None:
    opts = S.Options(25, 5, 50)
    split = S.Split(50, 100, 25, T0)
    m = S.next_move(split, opts, T0 + timedelta(seconds=3), to_ready=True, routes_ready=True)
    assert m.kind == S.WAIT and m.wait_seconds == pytest.approx(2.0)
    m = S.next_move(split, opts, T0 + timedelta(seconds=5), to_ready=True, routes_ready=True)
    assert m.kind == S.SHIFT and m.split.to_traffic == 50 and m.split.last_moved == T0 + timedelta(seconds=5)


def test_traffic_is_capped_by_the_capacity_and_never_moves_back() -> None:
    opts = S.Options(40, 1, 50)
    m = S.next_move(S.Split(50, 100, 25, None), opts, T0, to_ready=True, routes_ready=True)
    assert m.kind == S.SHIFT and m.split.to_traffic == 50
    # A weight above the capacity (a hand edit): capacity catches up, traffic stays.
    m = S.next_move(S.Split(50, 100, 75, None), opts, T0, to_ready=True, routes_ready=True)
    assert m.kind == S.LOWER_FROM and m.split.to_traffic == 75


def test_zero_step_or_surge_waits_and_says_why() -> None:
    m = S.next_move(S.Split(0, 100, 0, None), S.Options(0, 1, 0), T0, to_ready=True, routes_ready=True)
    assert m.kind == S.WAIT and "maxSurgePercent" in m.why
    m = S.next_move(S.Split(50, 100, 0, None), S.Options(0, 1, 50), T0, to_ready=True, routes_ready=True)
    assert m.kind == S.WAIT and "stepSizePercent" in m.why


def test_done_even_when_the_gateway_is_not_ready() -> None:
    m = S.next_move(S.Split(100, 0, 100, None), S.Options(5, 10, 25), T0, to_ready=False, routes_ready=False)
    assert m.kind == S.DONE
