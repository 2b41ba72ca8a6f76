"""Bad input under load: the validation fuzzers' manifests sent to the live operator while the campaign runs.

The same edits as `tests/unit/manifest_fuzz.py` (type-correct edits of every field, which mostly pass the
CRD schema, and random values anywhere, which the schema mostly refuses), created in a namespace the
webhook does not judge, so whatever the schema lets through reaches the operator's controllers. The
operator must not crash (the campaign counts every exit it did not cause) and the workload's objects in
the other namespace must keep reconciling (the invariants). Replica counts are capped at a few Pods, so the
fuzzer tests the operator's handling of bad fields, not the API server's capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from typing import Any

from rayop.api.kinds import RAYCLUSTERS, RAYJOBS, RAYSERVICES
from rayop.runtime.client import ApiClient, ApiError
from tests.unit.manifest_fuzz import PATHS, random_value, set_at, typed_leaves, typed_value
from tests.unit.validation_cases import BASES

RESOURCES = {"RayCluster": RAYCLUSTERS, "RayJob": RAYJOBS, "RayService": RAYSERVICES}
NOT_EDITED = (["metadata", "name"], ["metadata", "namespace"], ["metadata", "generateName"])


def _leaves() -> dict[str, list[tuple[list[Any], str]]]:
    from rayop.validation import _shape as S

    out: dict[str, list[tuple[list[Any], str]]] = {}
    for kind, schema in (
        ("RayCluster", S.RAYCLUSTER_SPEC),
        ("RayJob", S.RAYJOB_SPEC),
        ("RayService", S.RAYSERVICE_SPEC),
    ):
        got: list[tuple[list[Any], str]] = []
        typed_leaves(schema, ["spec"], got)
        typed_leaves(S.METADATA, ["metadata"], got)
        out[kind] = [(p, k) for p, k in got if p[:2] not in NOT_EDITED and "resourceVersion" not in p]
    return out


LEAVES = _leaves()


def cap(obj: dict[str, Any], most: int = 2) -> None:
    """Keep a fuzzed object small: at most `most` replicas per group, one host each."""

    def groups(spec: Any) -> list[Any]:
        return (
            spec.get("workerGroupSpecs")
            if isinstance(spec, dict) and isinstance(spec.get("workerGroupSpecs"), list)
            else []
        )

    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    for cspec in (spec, spec.get("rayClusterSpec"), spec.get("rayClusterConfig")):
        for g in groups(cspec):
            if not isinstance(g, dict):
                continue
            for key in ("replicas", "minReplicas", "maxReplicas"):
                if isinstance(g.get(key), int) and g[key] > most:
                    g[key] = most
            if isinstance(g.get("numOfHosts"), int) and g["numOfHosts"] > 1:
                g["numOfHosts"] = 1


def fuzzed(rng: random.Random, name: str) -> tuple[str, dict[str, Any]]:
    kind = rng.choice(list(BASES))
    obj = BASES[kind]()
    obj["metadata"]["name"] = name
    obj["metadata"].pop("namespace", None)
    if rng.random() < 0.7:
        for _ in range(rng.randint(1, 4)):
            path, leaf = rng.choice(LEAVES[kind])
            set_at(obj, path, typed_value(rng, leaf), rng.random() < 0.1)
    else:
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(PATHS[kind])
            if path[:2] in NOT_EDITED or len(path) < 2:
                continue
            set_at(obj, path, random_value(rng), rng.random() < 0.2)
    obj["metadata"]["name"] = name
    cap(obj)
    return kind, obj


@dataclass
class FuzzStats:
    sent: int = 0
    admitted: dict[str, int] = field(default_factory=dict)
    refused: dict[int, int] = field(default_factory=dict)  # by HTTP status
    server_errors: list[str] = field(default_factory=list)


class Fuzzer:
    """Creates a few fuzzed objects every `interval` seconds, keeping at most `keep` of them."""

    def __init__(self, kube: ApiClient, ns: str, seed: int, interval: float = 2.0, keep: int = 12) -> None:
        self.kube = kube
        self.ns = ns
        self.rng = random.Random(seed)
        self.interval = interval
        self.keep = keep
        self.stats = FuzzStats()
        self._made: list[tuple[str, str]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Fuzzer:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def one(self) -> None:
        self.stats.sent += 1
        kind, obj = fuzzed(self.rng, f"fz-{self.stats.sent}")
        try:
            await self.kube.create(RESOURCES[kind], obj, self.ns)
        except ApiError as e:
            self.stats.refused[e.status] = self.stats.refused.get(e.status, 0) + 1
            if e.status >= 500 and "failed calling webhook" not in e.message:
                self.stats.server_errors.append(
                    f"{kind} {obj['metadata']['name']}: {e.status} {e.message[:200]}"
                )
            return
        self.stats.admitted[kind] = self.stats.admitted.get(kind, 0) + 1
        self._made.append((kind, obj["metadata"]["name"]))

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # the API server may be down: try again later
                for _ in range(3):
                    await self.one()
                while len(self._made) > self.keep:
                    kind, name = self._made.pop(0)
                    await self.kube.delete(RESOURCES[kind], name, self.ns, ignore_not_found=True)
            await asyncio.sleep(self.interval)
