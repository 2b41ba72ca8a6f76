"""Find a pod's container on the local node (its log files, its running init) from the API objects:
the Node records where its agent keeps state (annotation), the pod's UID names its directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rayop.base.procs import pid_alive
from rayop.runtime.client import NODES, PODS, ApiClient

ANN_STATE_DIR = "node.rayop.io/state-dir"
ANN_DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"


class LocateError(Exception):
    pass


@dataclass
class ContainerLocation:
    pod: dict[str, Any]
    pod_dir: Path
    container: str
    attempt: int
    pid: int

    def run_dir(self, attempt: int | None = None) -> Path:
        a = self.attempt if attempt is None else attempt
        return self.pod_dir / "containers" / self.container / str(a)

    @property
    def log_path(self) -> Path:
        return self.run_dir() / "log"

    @property
    def spec_path(self) -> Path:
        return self.run_dir() / "spec.json"

    def refresh(self) -> None:
        """Re-read the agent's record (after a restart the log moves to a new attempt)."""
        st = read_state(self.pod_dir)
        run = (st.get("containers") or {}).get(self.container) or {}
        self.attempt = int(run.get("attempt", self.attempt))
        self.pid = int(run.get("pid") or 0)

    @property
    def running(self) -> bool:
        return self.pid != 0 and pid_alive(self.pid)


def read_state(pod_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((pod_dir / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise LocateError(f"no node-agent state for this pod in {pod_dir} ({e})") from e
    return data


async def locate(client: ApiClient, namespace: str, name: str, container: str | None) -> ContainerLocation:
    pod = await client.get_or_none(PODS, name, namespace)
    if pod is None:
        raise LocateError(f'pod "{name}" not found in namespace "{namespace}"')
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise LocateError(f'pod "{name}" is not scheduled to a node yet')
    node = await client.get_or_none(NODES, node_name)
    state_dir = ((node or {}).get("metadata", {}).get("annotations") or {}).get(ANN_STATE_DIR)
    if not state_dir:
        raise LocateError(f'node "{node_name}" is not run by a rayop node agent')
    names = [c["name"] for c in pod["spec"].get("containers") or []]
    init_names = [c["name"] for c in pod["spec"].get("initContainers") or []]
    if container is None:
        container = (pod["metadata"].get("annotations") or {}).get(ANN_DEFAULT_CONTAINER) or names[0]
    if container not in names + init_names:
        raise LocateError(f'container "{container}" is not valid for pod "{name}": choose one of {names}')
    pod_dir = Path(state_dir) / "pods" / pod["metadata"]["uid"]
    loc = ContainerLocation(pod, pod_dir, container, 0, 0)
    st = read_state(pod_dir)
    if container not in (st.get("containers") or {}):
        raise LocateError(f'container "{container}" in pod "{name}" has not started yet')
    loc.refresh()
    return loc
