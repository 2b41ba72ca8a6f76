"""The campaign: episodes of (workload step, random pause, one fault, settle, invariants), seeded.

An episode draws everything it does from its own seed (derived from the campaign's seed and its number):
the workload actions, the pause before the fault (the random point the fault lands at), the fault's
parameters. The campaign prints its seed; `bench/chaos.py --seed S` replays the same sequence of
actions and faults (timing on a shared machine differs from run to run, so a replay lands near, not
exactly at, the same point).

Recovery time is measured from the end of the fault (the killed part started again, the proxy back to
passing everything, the webhook back) to the first of two checks in a row, a second apart, that find the
operator Ready and every invariant holding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayop.api.kinds import RAYCLUSTERS
from rayop.local.pki import issue_serving_cert
from rayop.local.plane import ControlPlane, PlaneOptions, pick_free_ports
from rayop.runtime.client import NAMESPACES, VALIDATING_WEBHOOKS, ApiClient, ApiError, load_kubeconfig
from rayop.webhook.registration import build_webhook_configuration
from tests import rbac
from tests.chaos.fuzz import Fuzzer
from tests.chaos.invariants import Checker, Violation
from tests.chaos.kubelet import FakeKubelet
from tests.chaos.procs import Operators, OperatorSpec, Proc
from tests.chaos.proxy import FaultProxy
from tests.chaos.workload import Workload, raycluster
from tests.fake_dashboard import FakeFleet

WEBHOOK_LABEL = "rayop-chaos/webhook"


def say(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class FaultRecord:
    index: int
    kind: str
    seed: int
    step: str
    fault: str
    recovery: float | None  # seconds; None when the deadline passed
    violations: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return self.__dict__


@dataclass
class Check:
    """A check a segment makes once, after its faults (the real-Ray segment: deleting the GCS FT cluster
    empties its Redis storage). A failed one fails the campaign like a violation."""

    segment: str  # "fake" or "ray"
    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return self.detail if self.ok else f"VIOLATION {self.name}: {self.detail}"


@dataclass
class Fault:
    """One kind of fault: `inject` runs it (returns a description) and returns when it is over."""

    inject: Callable[[Any, random.Random], Awaitable[str]]
    settle: float  # seconds the system gets to be consistent again
    mode: str = "single"  # which operator deployment it needs: "single", "pair", or "ray" (real Ray)


@dataclass
class Results:
    seed: int
    records: list[FaultRecord] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float = 0.0
    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    fuzz: dict[str, Any] = field(default_factory=dict)

    @property
    def violations(self) -> list[FaultRecord]:
        return [r for r in self.records if r.violations]

    @property
    def failed(self) -> bool:
        """A fault's invariants were violated, or a closing check failed."""
        return bool(self.violations) or any(not c.ok for c in self.checks)

    def by_kind(self) -> dict[str, list[FaultRecord]]:
        out: dict[str, list[FaultRecord]] = {}
        for r in self.records:
            out.setdefault(r.kind, []).append(r)
        return out

    def summary(self) -> list[tuple[str, int, float, float, int]]:
        """Per kind: (kind, faults, median recovery s, max recovery s, violations)."""
        rows = []
        for kind, recs in self.by_kind().items():
            times = [r.recovery for r in recs if r.recovery is not None]
            rows.append(
                (
                    kind,
                    len(recs),
                    statistics.median(times) if times else float("nan"),
                    max(times) if times else float("nan"),
                    sum(1 for r in recs if r.violations),
                )
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "duration_s": (self.finished or time.monotonic()) - self.started,
            "records": [r.to_json() for r in self.records],
            "notes": self.notes,
            "checks": [c.__dict__ for c in self.checks],
            "fuzz": self.fuzz,
        }


async def settle(
    ready: Callable[[], Awaitable[bool]], check: Callable[[], Awaitable[list[Violation]]], deadline: float
) -> tuple[float | None, list[str]]:
    """Poll until the operator is Ready and no invariant is violated, twice in a row a second apart.
    Returns (seconds it took, []) or (None, what was still wrong at the deadline)."""
    t0 = time.monotonic()
    last: list[str] = []
    first_ok: float | None = None
    while time.monotonic() - t0 < deadline:
        try:
            problems = (
                [] if await ready() else ["operator-ready: the operator is not Ready (or no replica leads)"]
            )
            if not problems:
                problems = [str(v) for v in await check()]
        except Exception as e:  # the API server may still be coming back
            problems = [f"(could not read: {type(e).__name__}: {e})"]
        if problems:
            last, first_ok = problems, None
        elif first_ok is None:
            first_ok = time.monotonic()
        elif time.monotonic() - first_ok >= 1.0:
            return first_ok - t0, []
        await asyncio.sleep(0.5)
    return None, last


class FakeSegment:
    """The plane with fake Ray: operator and API-server faults (see RELIABILITY.md)."""

    def __init__(self, workdir: Path, seed: int, *, fuzz: bool = True, small: bool = False) -> None:
        self.dir = workdir
        self.seed = seed
        self.fuzz_on = fuzz
        self.small = small
        self.plane: ControlPlane | None = None
        self.kube: ApiClient | None = None
        self.fleet = FakeFleet(deploy_seconds=1.0, job_seconds=3.0)
        self.proxy: FaultProxy | None = None
        self.webhook: Proc | None = None
        self.operators: Operators | None = None
        self.spec: OperatorSpec | None = None
        self.ns = "chaos-work"
        self.fuzz_ns = "chaos-fuzz"
        self.workload: Workload | None = None
        self.checker: Checker | None = None
        self.fuzzer: Fuzzer | None = None
        self._stack = contextlib.AsyncExitStack()
        self.webhook_port = 0
        self.mode = ""

    # Set-up ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        say(f"fake-Ray segment: plane in {self.dir}")
        plane = ControlPlane(PlaneOptions(state_dir=self.dir / "plane"))
        await asyncio.to_thread(plane.start)
        self.plane = plane
        assert plane.pki is not None
        rbac.enable(plane)
        self.kube = ApiClient(load_kubeconfig(plane.kubeconfig))
        for ns, lbl in ((self.ns, {WEBHOOK_LABEL: "on"}), (self.fuzz_ns, {})):
            await self.kube.create(
                NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": lbl}}
            )
        rbac.grant_in_namespace(plane, self.ns)
        await self.fleet.start()
        # The proxy: TLS from the plane's serving CA, upstream as the operator's own user.
        crt, key = issue_serving_cert(plane.pki, "chaos-proxy", ["127.0.0.1", "localhost"])
        self.proxy = FaultProxy(
            plane.server,
            ca_file=plane.pki.serving_ca,
            client_cert=plane.pki.client_cert(rbac.OPERATOR_USER),
            serving_cert=(crt, key),
            seed=self.seed,
        )
        await self.proxy.start()
        kubeconfig = plane.write_kubeconfig(
            self.dir / "operator-via-proxy.kubeconfig", user=rbac.OPERATOR_USER, server=self.proxy.url
        )
        await self._start_webhook()
        self.spec = OperatorSpec(
            kubeconfig=kubeconfig,
            namespaces=[self.ns, self.fuzz_ns],
            log_dir=self.dir / "logs",
            fleet_url=self.fleet.url,
            lease_namespace=self.ns,
        )
        await self._stack.enter_async_context(FakeKubelet(self.kube, [self.ns], self.fleet))
        await self.use_mode("single")
        rng = random.Random(self.seed)
        small = self.small
        self.workload = Workload(self.kube, self.ns, clusters=2 if small else 4, jobs=2 if small else 3)
        await self.workload.setup(rng)
        self.checker = Checker(self.kube, [self.ns], self.serve_apps, self.ray_jobs)
        if self.fuzz_on:
            self.fuzzer = await self._stack.enter_async_context(Fuzzer(self.kube, self.fuzz_ns, self.seed))

    async def serve_apps(self, ns: str, cluster: str) -> dict[str, str] | None:
        del ns
        serve = self.fleet.clusters.get(cluster)
        if serve is None:
            return {}
        return {n: str(a.get("status")) for n, a in serve.details()["applications"].items()}

    async def ray_jobs(self, ns: str, cluster: str) -> dict[str, str] | None:
        del ns
        out = {}
        for sid in self.fleet.submitted(cluster):
            job = self.fleet.job(cluster, sid)
            if job is not None:
                out[sid] = job.status
        return out

    async def _start_webhook(self) -> None:
        assert self.plane is not None and self.plane.pki is not None and self.kube is not None
        certs = self.dir / "webhook-certs"
        certs.mkdir(parents=True, exist_ok=True)
        crt, key = issue_serving_cert(self.plane.pki, "chaos-webhook", ["127.0.0.1", "localhost"])
        shutil.copy(crt, certs / "tls.crt")
        shutil.copy(key, certs / "tls.key")
        (self.webhook_port,) = pick_free_ports(1)
        import sys

        self.webhook = Proc(
            "webhook",
            [
                sys.executable,
                "-m",
                "rayop.cli.main",
                "webhook",
                "--host=127.0.0.1",
                f"--port={self.webhook_port}",
                f"--cert-dir={certs}",
                f"--kubeconfig={self.plane.kubeconfig}",
                "--no-register",
            ],
            self.dir / "logs",
        )
        self.webhook.start()
        await self.wait_webhook_up()
        config = build_webhook_configuration(
            f"https://127.0.0.1:{self.webhook_port}",
            self.plane.pki.serving_ca.read_bytes(),
            name="rayop-chaos",
            namespace_selector={"matchLabels": {WEBHOOK_LABEL: "on"}},
        )
        await self.kube.create(VALIDATING_WEBHOOKS, config)
        # The API server learns of the configuration through its own informer: probe until it judges.
        await self.wait_enforced()

    async def wait_webhook_up(self, timeout: float = 60) -> None:
        import ssl
        import urllib.request

        assert self.plane is not None and self.plane.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.plane.pki.serving_ca))

        def up() -> bool:
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{self.webhook_port}/healthz", timeout=1, context=ctx
                ):
                    return True
            except OSError as e:
                return "HTTP Error" in str(e)

        t0 = time.monotonic()
        while not await asyncio.to_thread(up):
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"webhook not up:\n{self.webhook.tail() if self.webhook else ''}")
            await asyncio.sleep(0.2)

    async def probe_write(self, name: str) -> ApiError | None:
        """A server-side dry-run create of an invalid RayCluster: refused by the webhook when it judges,
        refused with a webhook error when it cannot be called; None when it was admitted."""
        assert self.kube is not None
        bad = raycluster(name, self.ns, random.Random(0))
        bad["spec"]["workerGroupSpecs"][0]["minReplicas"] = 9  # above maxReplicas: the webhook refuses
        try:
            await self.kube.create(RAYCLUSTERS, bad, self.ns, dryRun="All")
        except ApiError as e:
            return e
        return None

    async def wait_enforced(self, timeout: float = 60) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            e = await self.probe_write("probe")
            if e is not None and e.status == 422 and "minReplicas" in e.message:
                return time.monotonic() - t0
            await asyncio.sleep(0.2)
        raise TimeoutError("the webhook does not judge RayClusters")

    async def use_mode(self, mode: str) -> None:
        """One replica without leader election ("single"), or two with it ("pair")."""
        if mode == self.mode:
            return
        assert self.spec is not None
        if self.operators is not None:
            self.operators.stop()
        from dataclasses import replace

        spec = replace(self.spec, leader_election=mode == "pair")
        self.operators = Operators(spec, 2 if mode == "pair" else 1)
        self.operators.start()
        self.mode = mode
        t0 = time.monotonic()
        while not await asyncio.to_thread(self.operators.ready):
            if time.monotonic() - t0 > 90:
                raise TimeoutError(
                    "operator not ready:\n" + "\n".join(r.tail() for r in self.operators.replicas)
                )
            await asyncio.sleep(0.2)
        say(f"operator mode {mode}: ready after {time.monotonic() - t0:.1f} s")

    async def ready(self) -> bool:
        assert self.operators is not None
        return await asyncio.to_thread(self.operators.ready)

    async def check(self) -> list[Violation]:
        assert self.checker is not None and self.operators is not None
        out = [Violation("operator-crash", "operator", e) for e in self.operators.unexpected_exits()]
        if out:
            self.operators.revive()
        return out + await self.checker.check()

    async def after_fault(self) -> str:
        """What to add to a settled fault's description: nothing here (the real-Ray segment counts the
        worker restarts a head kill caused)."""
        return ""

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._stack.aclose()
        if self.operators is not None:
            self.operators.stop()
        if self.webhook is not None:
            self.webhook.stop()
        if self.proxy is not None:
            await self.proxy.stop()
        await self.fleet.stop()
        if self.kube is not None:
            await self.kube.close()
        if self.plane is not None:
            rbac.collect(self.plane)
            await asyncio.to_thread(self.plane.stop)


# The faults of the fake-Ray segment ---------------------------------------------------------------------


async def operator_kill(seg: FakeSegment, rng: random.Random) -> str:
    assert seg.operators is not None
    r = seg.operators.replicas[0]
    r.kill()
    down = rng.uniform(0, 2)
    await asyncio.sleep(down)
    r.start()
    return f"SIGKILL operator, restarted after {down:.1f} s"


async def leader_kill(seg: FakeSegment, rng: random.Random) -> str:
    assert seg.operators is not None
    leader = seg.operators.leader()
    if leader is None:
        return "no single leader to kill"
    leader.kill()
    down = rng.uniform(0, 3)
    await asyncio.sleep(down)
    leader.start()  # comes back as the standby
    return f"SIGKILL the leader {leader.name}, restarted after {down:.1f} s as standby"


async def plane_kill(seg: FakeSegment, rng: random.Random, part: str) -> str:
    assert seg.plane is not None
    seg.plane.kill(part)
    down = rng.uniform(0, 4)
    await asyncio.sleep(down)
    await asyncio.to_thread(seg.plane.restart, part)
    return f"SIGKILL {part}, restarted after {down:.1f} s"


async def apiserver_kill(seg: FakeSegment, rng: random.Random) -> str:
    return await plane_kill(seg, rng, "kube-apiserver")


async def etcd_kill(seg: FakeSegment, rng: random.Random) -> str:
    return await plane_kill(seg, rng, "etcd")


class FaultFailed(Exception):
    """The fault itself showed a violation (e.g. a write admitted while the webhook was down)."""


async def webhook_down(seg: FakeSegment, rng: random.Random) -> str:
    assert seg.webhook is not None and seg.kube is not None and seg.workload is not None
    seg.webhook.kill()
    window = rng.uniform(4, 10)
    t0 = time.monotonic()
    refused, problems = 0, []
    n = 0
    while time.monotonic() - t0 < window:
        n += 1
        name = f"during-outage-{rng.randrange(10**9)}"
        good = raycluster(name, seg.ns, rng)
        try:
            await seg.kube.create(RAYCLUSTERS, good, seg.ns)
            problems.append(f"RayCluster {name} admitted while the webhook was down")
        except ApiError as e:
            if e.status >= 500 and 'failed calling webhook "validate.rayclusters.ray.io"' in e.message:
                refused += 1
            else:
                problems.append(f"unclear refusal: {e.status} {e.message[:200]}")
        if await seg.kube.get_or_none(RAYCLUSTERS, name, seg.ns) is not None:
            problems.append(f"half-done: refused RayCluster {name} exists")
        await asyncio.sleep(0.5)
    seg.webhook.start()
    await seg.wait_webhook_up()
    took = await seg.wait_enforced()
    if problems:
        raise FaultFailed("; ".join(problems[:5]))
    return f"webhook down {window:.1f} s: {refused}/{n} writes refused with the webhook named; judging again {took:.1f} s after restart"


async def api_status(seg: FakeSegment, rng: random.Random, code: int) -> str:
    assert seg.proxy is not None
    fraction = rng.uniform(0.3, 0.8) if code == 429 else rng.uniform(0.2, 0.5)
    window = rng.uniform(5, 12)
    before = seg.proxy.stats.failed.get(code, 0)
    seg.proxy.fail(code, fraction, retry_after=1 if code == 429 else None)
    await asyncio.sleep(window)
    seg.proxy.clear()
    n = seg.proxy.stats.failed.get(code, 0) - before
    return f"{n} answers {code} ({fraction:.0%} of requests) for {window:.1f} s"


async def api_429(seg: FakeSegment, rng: random.Random) -> str:
    return await api_status(seg, rng, 429)


async def api_500(seg: FakeSegment, rng: random.Random) -> str:
    return await api_status(seg, rng, 500)


async def watch_slow(seg: FakeSegment, rng: random.Random) -> str:
    assert seg.proxy is not None
    delay, window = rng.uniform(1, 5), rng.uniform(8, 15)
    seg.proxy.slow_watches(delay)
    assert seg.workload is not None
    log = await seg.workload.step(rng)  # changes made while the operator's view lags
    await asyncio.sleep(window)
    seg.proxy.clear()
    return f"watch events {delay:.1f} s late for {window:.1f} s (meanwhile: {log})"


async def watch_cut(seg: FakeSegment, rng: random.Random) -> str:
    assert seg.proxy is not None
    cuts, gone = 0, 0
    for _ in range(rng.randint(1, 3)):
        g = rng.randint(1, 8)
        cuts += seg.proxy.cut_watches(gone=g)
        gone += g
        await asyncio.sleep(rng.uniform(0.2, 2))
    await asyncio.sleep(2)
    seg.proxy.clear()
    return f"{cuts} watch connections cut, {seg.proxy.stats.gone} answered 410 Gone so far"


FAKE_FAULTS: dict[str, Fault] = {
    "operator-kill": Fault(operator_kill, 60),
    "leader-kill": Fault(leader_kill, 75, mode="pair"),
    "apiserver-kill": Fault(apiserver_kill, 90),
    "etcd-kill": Fault(etcd_kill, 90),
    "webhook-down": Fault(webhook_down, 60),
    "api-429": Fault(api_429, 60),
    "api-500": Fault(api_500, 60),
    "watch-slow": Fault(watch_slow, 90),
    "watch-cut": Fault(watch_cut, 60),
}


def episode_seed(seed: int, index: int) -> int:
    return random.Random(f"{seed}/{index}").randrange(2**31)


def plan(counts: dict[str, int], faults: dict[str, Fault], rng: random.Random) -> list[str]:
    """The order of faults: shuffled, those needing another operator deployment kept together."""
    by_mode: dict[str, list[str]] = {}
    for kind, n in counts.items():
        by_mode.setdefault(faults[kind].mode, []).extend([kind] * n)
    blocks = []
    for kinds in by_mode.values():
        rng.shuffle(kinds)
        blocks.append(kinds)
    rng.shuffle(blocks)
    return [k for b in blocks for k in b]


async def run_segment(
    seg: Any, faults: dict[str, Fault], order: list[str], results: Results, first_index: int = 0
) -> None:
    for i, kind in enumerate(order, start=first_index):
        fault = faults[kind]
        seed = episode_seed(results.seed, i)
        rng = random.Random(seed)
        await seg.use_mode(fault.mode)
        step = await seg.workload.step(rng)
        pause = rng.uniform(0, 2.5)
        await asyncio.sleep(pause)
        problems: list[str] = []
        try:
            what = await fault.inject(seg, rng)
        except FaultFailed as e:
            what, problems = f"{kind}: {e}", [f"{kind}: {e}"]
        recovery, left = await settle(seg.ready, seg.check, fault.settle)
        if recovery is not None:
            more = await seg.after_fault()
            what += f"; {more}" if more else ""
        rec = FaultRecord(i, kind, seed, str(step), what, recovery, problems + left)
        results.records.append(rec)
        state = f"settled in {recovery:.1f} s" if recovery is not None else "NOT SETTLED"
        say(f"#{i} {kind} (seed {seed}) after {pause:.1f} s [{step}]: {what}; {state}")
        for v in rec.violations[:10]:
            say(f"    VIOLATION {v}")
        if rec.violations:
            # Give it one more long look, so one stuck episode does not poison the next ones.
            await settle(seg.ready, seg.check, 120)


def counts_for(kinds: list[str], n: int, operator_kills: int) -> dict[str, int]:
    return {k: (operator_kills if k == "operator-kill" else n) for k in kinds}


async def fake_campaign(
    workdir: Path, results: Results, counts: dict[str, int], *, fuzz: bool = True, small: bool = False
) -> None:
    seg = FakeSegment(workdir, results.seed, fuzz=fuzz, small=small)
    try:
        await seg.start()
        recovery, left = await settle(seg.ready, seg.check, 120)
        if recovery is None:
            results.notes.append("fake segment never settled before the first fault: " + "; ".join(left[:5]))
            say("initial state did not settle: " + "; ".join(left[:5]))
        order = plan(counts, FAKE_FAULTS, random.Random(results.seed))
        say(f"fake segment: {len(order)} faults")
        await run_segment(seg, FAKE_FAULTS, order, results, first_index=len(results.records))
        if seg.fuzzer is not None:
            st = seg.fuzzer.stats
            results.fuzz = {
                "sent": st.sent,
                "admitted": st.admitted,
                "refused": {str(k): v for k, v in st.refused.items()},
                "server_errors": st.server_errors[:10],
            }
        if seg.proxy is not None:
            results.notes.append(f"proxy: {json.dumps(seg.proxy.stats.__dict__)}")
    finally:
        await seg.stop()


RAY_FAULT_KINDS = ("node-agent-kill", "pod-process-kill", "head-kill", "head-kill-gcs-ft")


def ray_faults() -> dict[str, Fault]:
    from tests.chaos.ray_segment import faults

    return faults()


async def ray_campaign(workdir: Path, results: Results, counts: dict[str, int]) -> None:
    """The real-Ray segment (tests/chaos/ray_segment.py): node faults on Ray processes."""
    from tests.chaos.ray_segment import RaySegment

    faults = ray_faults()
    seg = RaySegment(workdir, results.seed)
    try:
        say(f"real-Ray segment: plane in {workdir}")
        await seg.start()
        recovery, left = await settle(seg.ready, seg.check, 600)
        if recovery is None:
            results.notes.append("ray segment never settled before the first fault: " + "; ".join(left[:5]))
            say("initial state did not settle: " + "; ".join(left[:5]))
            return
        await seg.submit_canary()
        say(
            f"real-Ray segment settled, canary job SUCCEEDED on the GCS FT cluster; {sum(counts.values())} faults"
        )
        order = plan(counts, faults, random.Random(results.seed + 1))
        await run_segment(seg, faults, order, results, first_index=len(results.records))
        try:
            check = Check("ray", "gcs-ft-delete", True, await seg.delete_ft_cluster())
        except FaultFailed as e:
            check = Check("ray", "gcs-ft-delete", False, str(e))
        results.checks.append(check)
        say(str(check))
    finally:
        await seg.stop()


def default_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="rayop-chaos-"))
