"""What the campaign keeps doing while it injects faults: Ray objects created, changed and deleted the way
platform engineers, Ray's autoscaler and CI systems change them.

- RayClusters: created (some with GCS fault tolerance on Redis), scaled up and down with autoscaler-style
  patches (`replicas` and `scaleStrategy.workersToDelete` in one JSON patch), suspended and resumed,
  deleted (a GCS FT cluster's deletion runs the Redis cleanup Job behind a finalizer).
- RayJobs: one of each submission mode (K8sJobMode, HTTPMode, SidecarMode) in turn, entrypoints that
  succeed or fail, `backoffLimit` retries on new clusters, `shutdownAfterJobFinishes` with a TTL or not;
  finished ones are deleted, now and then a running one too.
- RayServices: Serve config changed in place, cluster spec changed (a new cluster, then the switch).

Every action reads what exists from the API server (never from memory), so it works after any fault, and
every write may be refused (a fault may be on): `step` returns what it did and what was refused.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any

from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS, RAYJOBS, RAYSERVICES
from rayop.runtime.client import PODS, ApiClient, ApiError
from tests.integration.rayclusters import IMAGE

Obj = dict[str, Any]

MODES = ("K8sJobMode", "HTTPMode", "SidecarMode")
SERVE_APP = """\
applications:
  - name: hello
    route_prefix: /
    import_path: hello:build
    args:
      greeting: {greeting}
"""
CAMPAIGN_LABEL = "rayop-chaos/workload"


def container(name: str, cpu: str = "1", memory: str = "1Gi") -> Obj:
    return {"name": name, "image": IMAGE, "resources": {"limits": {"cpu": cpu, "memory": memory}}}


def group(name: str, replicas: int) -> Obj:
    return {
        "groupName": name,
        "replicas": replicas,
        "minReplicas": 0,
        "maxReplicas": 8,
        "rayStartParams": {},
        "template": {"spec": {"containers": [container("ray-worker")]}},
    }


def cluster_spec(groups: list[Obj]) -> Obj:
    return {
        "rayVersion": "2.60.0",
        "headGroupSpec": {
            "rayStartParams": {},
            "template": {"spec": {"containers": [container("ray-head", memory="2Gi")]}},
        },
        "workerGroupSpecs": groups,
    }


def raycluster(name: str, ns: str, rng: random.Random, *, gcs_ft: bool = False) -> Obj:
    groups = [group("small", rng.randint(0, 3))]
    if rng.random() < 0.5:
        groups.append(group("large", rng.randint(0, 2)))
    spec = cluster_spec(groups)
    if gcs_ft:
        spec["gcsFaultToleranceOptions"] = {"redisAddress": "redis:6379"}
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND_RAYCLUSTER,
        "metadata": {"name": name, "namespace": ns, "labels": {CAMPAIGN_LABEL: "cluster"}},
        "spec": spec,
    }


def rayjob(name: str, ns: str, rng: random.Random, mode: str) -> Obj:
    seconds = rng.choice([2, 3, 5, 8])
    fails = rng.random() < 0.3
    spec: Obj = {
        "entrypoint": f"sleep {seconds}" + ("; exit 1" if fails else ""),
        "submissionMode": mode,
        "backoffLimit": rng.choice([0, 1, 2]) if fails else rng.choice([0, 1]),
        "shutdownAfterJobFinishes": rng.random() < 0.6,
        "rayClusterSpec": cluster_spec([group("workers", 1)]),
    }
    if spec["shutdownAfterJobFinishes"]:
        spec["ttlSecondsAfterFinished"] = rng.choice([0, 2, 5])
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND_RAYJOB,
        "metadata": {"name": name, "namespace": ns, "labels": {CAMPAIGN_LABEL: "job"}},
        "spec": spec,
    }


def rayservice(name: str, ns: str, *, head_ports: bool = True) -> Obj:
    spec = cluster_spec([group("workers", 1)])
    if head_ports:
        spec["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"] = [
            {"name": "gcs-server", "containerPort": 6379},
            {"name": "dashboard", "containerPort": 8265},
            {"name": "client", "containerPort": 10001},
            {"name": "serve", "containerPort": 8000},
        ]
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND_RAYSERVICE,
        "metadata": {"name": name, "namespace": ns, "labels": {CAMPAIGN_LABEL: "service"}},
        "spec": {
            "serveConfigV2": SERVE_APP.format(greeting="hello 0"),
            "rayClusterConfig": spec,
            "rayClusterDeletionDelaySeconds": 2,
        },
    }


def revised(cluster_config: Obj, value: str) -> Obj:
    """The cluster config with an env var changed in every Ray container: a change that needs new Pods."""
    cfg = copy.deepcopy(cluster_config)
    for g in (cfg["headGroupSpec"], *(cfg.get("workerGroupSpecs") or [])):
        c = g["template"]["spec"]["containers"][0]
        env = [e for e in c.get("env") or [] if e["name"] != "RAYOP_CHAOS_REVISION"]
        c["env"] = [*env, {"name": "RAYOP_CHAOS_REVISION", "value": value}]
    return cfg


def live(items: list[Obj]) -> list[Obj]:
    return [o for o in items if not o["metadata"].get("deletionTimestamp")]


def standalone(clusters: list[Obj]) -> list[Obj]:
    """RayClusters the workload made itself (not those of a RayJob or RayService)."""
    return [c for c in clusters if (c["metadata"].get("labels") or {}).get(CAMPAIGN_LABEL) == "cluster"]


@dataclass
class StepLog:
    done: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        out = "; ".join(self.done) or "nothing"
        if self.refused:
            out += f" (refused: {'; '.join(self.refused)})"
        return out


@dataclass
class Workload:
    """The fake-Ray segment's workload in one namespace (see the module docstring)."""

    kube: ApiClient
    ns: str
    clusters: int = 4
    jobs: int = 3
    services: int = 1
    serial: int = 0
    revision: int = 0

    def _name(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    async def setup(self, rng: random.Random) -> None:
        for i in range(self.clusters):
            await self.kube.create(RAYCLUSTERS, raycluster(self._name("rc"), self.ns, rng, gcs_ft=i == 0))
        for i in range(self.jobs):
            await self.kube.create(RAYJOBS, rayjob(self._name("rj"), self.ns, rng, MODES[i % len(MODES)]))
        for _ in range(self.services):
            await self.kube.create(RAYSERVICES, rayservice(self._name("rs"), self.ns))

    # One step: a few random actions --------------------------------------------------------------

    ACTIONS = {
        "scale": 5,
        "suspend": 1,
        "recreate": 1,
        "job": 3,
        "serve_update": 1,
        "serve_upgrade": 1,
    }

    async def step(self, rng: random.Random, n: int | None = None) -> StepLog:
        log = StepLog()
        names = list(self.ACTIONS)
        weights = [self.ACTIONS[a] for a in names]
        for action in rng.choices(names, weights, k=n or rng.randint(1, 3)):
            try:
                what = await getattr(self, action)(rng)
                if what:
                    log.done.append(what)
            except ApiError as e:
                log.refused.append(f"{action}: {e.status} {e.message[:200]}")
            except Exception as e:  # the API server is down: the action did not happen
                log.refused.append(f"{action}: {type(e).__name__}: {e}"[:200])
        return log

    async def _clusters(self) -> list[Obj]:
        return live(standalone((await self.kube.list(RAYCLUSTERS, self.ns))["items"]))

    async def scale(self, rng: random.Random) -> str:
        running = [c for c in await self._clusters() if not c["spec"].get("suspend")]
        if not running:
            return ""
        rc = rng.choice(running)
        name = rc["metadata"]["name"]
        groups = rc["spec"].get("workerGroupSpecs") or []
        i = rng.randrange(len(groups))
        g = groups[i]
        cur, want = int(g.get("replicas") or 0), rng.randint(0, 5)
        patch: list[Obj] = [{"op": "replace", "path": f"/spec/workerGroupSpecs/{i}/replicas", "value": want}]
        named: list[str] = []
        if want < cur and rng.random() < 0.7:
            sel = f"{C.LABEL_CLUSTER}={name},{C.LABEL_GROUP}={g['groupName']},{C.LABEL_NODE_TYPE}=worker"
            pods = live((await self.kube.list(PODS, self.ns, label_selector=sel))["items"])
            named = [p["metadata"]["name"] for p in rng.sample(pods, min(len(pods), cur - want))]
            patch.append(
                {
                    "op": "add",
                    "path": f"/spec/workerGroupSpecs/{i}/scaleStrategy",
                    "value": {"workersToDelete": named},
                }
            )
        # Ray's autoscaler writes with the resourceVersion it read: a stale view is refused, not applied.
        patch.insert(
            0, {"op": "test", "path": "/metadata/resourceVersion", "value": rc["metadata"]["resourceVersion"]}
        )
        await self.kube.patch(RAYCLUSTERS, name, patch, self.ns, patch_type="json")
        return f"scale {name}/{g['groupName']} {cur}->{want}" + (f" deleting {len(named)}" if named else "")

    async def suspend(self, rng: random.Random) -> str:
        clusters = await self._clusters()
        if not clusters:
            return ""
        rc = rng.choice(clusters)
        name, now = rc["metadata"]["name"], bool(rc["spec"].get("suspend"))
        await self.kube.patch(RAYCLUSTERS, name, {"spec": {"suspend": not now}}, self.ns)
        return f"{'resume' if now else 'suspend'} {name}"

    async def recreate(self, rng: random.Random) -> str:
        clusters = await self._clusters()
        out = []
        if clusters and len(clusters) >= self.clusters:
            old = rng.choice(clusters)
            await self.kube.delete(RAYCLUSTERS, old["metadata"]["name"], self.ns)
            ft = " (GCS FT)" if old["spec"].get("gcsFaultToleranceOptions") else ""
            out.append(f"delete {old['metadata']['name']}{ft}")
        name = self._name("rc")
        ft = rng.random() < 0.4
        await self.kube.create(RAYCLUSTERS, raycluster(name, self.ns, rng, gcs_ft=ft))
        out.append(f"create {name}" + (" (GCS FT)" if ft else ""))
        return ", ".join(out)

    async def job(self, rng: random.Random) -> str:
        jobs = live((await self.kube.list(RAYJOBS, self.ns))["items"])
        finished = [
            j for j in jobs if (j.get("status") or {}).get("jobDeploymentStatus") in ("Complete", "Failed")
        ]
        out = []
        if finished and (len(jobs) >= self.jobs or rng.random() < 0.5):
            j = rng.choice(finished)
            await self.kube.delete(RAYJOBS, j["metadata"]["name"], self.ns)
            out.append(f"delete finished {j['metadata']['name']}")
        elif jobs and len(jobs) >= self.jobs and rng.random() < 0.3:
            j = rng.choice(jobs)
            await self.kube.delete(RAYJOBS, j["metadata"]["name"], self.ns)
            out.append(
                f"delete {(j.get('status') or {}).get('jobDeploymentStatus', 'new')} {j['metadata']['name']}"
            )
        if len(jobs) - len(out) < self.jobs:
            name = self._name("rj")
            mode = MODES[self.serial % len(MODES)]
            await self.kube.create(RAYJOBS, rayjob(name, self.ns, rng, mode))
            out.append(f"create {name} ({mode})")
        return ", ".join(out)

    async def _service(self, rng: random.Random) -> Obj | None:
        services = live((await self.kube.list(RAYSERVICES, self.ns))["items"])
        return rng.choice(services) if services else None

    async def serve_update(self, rng: random.Random) -> str:
        rs = await self._service(rng)
        if rs is None:
            return ""
        self.revision += 1
        config = SERVE_APP.format(greeting=f"hello {self.revision}")
        await self.kube.patch(
            RAYSERVICES, rs["metadata"]["name"], {"spec": {"serveConfigV2": config}}, self.ns
        )
        return f"serve config of {rs['metadata']['name']} in place (rev {self.revision})"

    async def serve_upgrade(self, rng: random.Random) -> str:
        rs = await self._service(rng)
        if rs is None:
            return ""
        self.revision += 1
        cfg = revised(rs["spec"]["rayClusterConfig"], str(self.revision))
        await self.kube.patch(
            RAYSERVICES, rs["metadata"]["name"], {"spec": {"rayClusterConfig": cfg}}, self.ns
        )
        return f"cluster upgrade of {rs['metadata']['name']} (rev {self.revision})"
