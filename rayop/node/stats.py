"""Resource usage of the node and its containers, and the kubelet's `/metrics/resource` text made from it.

metrics-server scrapes `/metrics/resource` of every node (sigs.k8s.io/metrics-server
pkg/scraper/client/resource/decode.go reads it) and serves `kubectl top` and the HPA from it. The names, help
texts, labels and the millisecond timestamp on each sample are the kubelet's
(pkg/kubelet/metrics/collectors/resource_metrics.go). The node's figures are the machine's, from /proc.
A container's come from its cgroups (cgroups.py) or, without them, from /proc: the CPU time of the processes
in its PID namespace plus what its init collected from the children it reaped, and their resident memory.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
CONTAINER_LABELS = ["container", "pod", "namespace"]


@dataclass(frozen=True)
class NodeUsage:
    cpu_seconds: float
    memory_working_set: int
    time: float


@dataclass(frozen=True)
class ContainerUsage:
    namespace: str
    pod: str
    container: str
    cpu_seconds: float
    memory_working_set: int
    start_time: float
    time: float


# --- reading ---------------------------------------------------------------------------------------


def node_usage(proc: str = "/proc") -> NodeUsage:
    """CPU time the machine spent on anything but idling and waiting for I/O, and its memory working set
    (what is in use less the page cache the kernel may reclaim at once)."""
    with open(f"{proc}/stat") as f:
        fields = f.readline().split()[1:]
    # user nice system idle iowait irq softirq steal (guest time is already in user and nice)
    busy = sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4))
    mem: dict[str, int] = {}
    with open(f"{proc}/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            mem[key] = int(rest.split()[0]) * 1024
    used = mem.get("MemTotal", 0) - mem.get("MemFree", 0)
    working = max(0, used - mem.get("Inactive(file)", 0))
    return NodeUsage(busy / CLK_TCK, working, time.time())


def _stat_fields(pid: int, proc: str) -> list[str]:
    with open(f"{proc}/{pid}/stat") as f:
        # The command name is in parentheses and may hold spaces: split after its closing one.
        return f.read().rsplit(")", 1)[1].split()


def pid_namespace_usage(inits: Mapping[str, int], proc: str = "/proc") -> dict[str, tuple[float, int]]:
    """(CPU seconds, resident bytes) per key, for the processes in the PID namespace of each init PID.

    The init reaps every orphan of its namespace, so what exited processes used is in its cutime/cstime;
    live processes add their own utime/stime. One pass over /proc for all containers."""
    ns_of: dict[str, str] = {}
    for key, pid in inits.items():
        with contextlib.suppress(OSError):
            ns_of[os.readlink(f"{proc}/{pid}/ns/pid")] = key
    out = {key: (0.0, 0) for key in ns_of.values()}
    if not ns_of:
        return out
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            found = ns_of.get(os.readlink(f"{proc}/{entry}/ns/pid"))
            if found is None:
                continue
            key = found
            f = _stat_fields(int(entry), proc)
        except OSError:
            continue
        # Fields after the name: state(0) ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21)
        ticks = int(f[11]) + int(f[12])
        if int(entry) == inits[key]:
            ticks += int(f[13]) + int(f[14])
        cpu, rss = out[key]
        out[key] = (cpu + ticks / CLK_TCK, rss + int(f[21]) * PAGE_SIZE)
    return out


# --- the kubelet's text ----------------------------------------------------------------------------


def _families(node: NodeUsage | None, containers: Iterable[ContainerUsage]) -> Iterator[Metric]:
    # Help texts carry the stability level in brackets, as Kubernetes components print them.
    ncpu = CounterMetricFamily(
        "node_cpu_usage_seconds_total", "[STABLE] Cumulative cpu time consumed by the node in core-seconds"
    )
    nmem = GaugeMetricFamily(
        "node_memory_working_set_bytes", "[STABLE] Current working set of the node in bytes"
    )
    if node is not None:
        ncpu.add_metric([], node.cpu_seconds, timestamp=node.time)
        nmem.add_metric([], float(node.memory_working_set), timestamp=node.time)
    ccpu = CounterMetricFamily(
        "container_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
        labels=CONTAINER_LABELS,
    )
    cmem = GaugeMetricFamily(
        "container_memory_working_set_bytes",
        "[STABLE] Current working set of the container in bytes",
        labels=CONTAINER_LABELS,
    )
    cstart = GaugeMetricFamily(
        "container_start_time_seconds",
        "[STABLE] Start time of the container since unix epoch in seconds",
        labels=CONTAINER_LABELS,
    )
    pcpu = CounterMetricFamily(
        "pod_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
        labels=["pod", "namespace"],
    )
    pmem = GaugeMetricFamily(
        "pod_memory_working_set_bytes",
        "[STABLE] Current working set of the pod in bytes",
        labels=["pod", "namespace"],
    )
    pods: dict[tuple[str, str], tuple[float, int, float]] = {}
    for c in containers:
        labels = [c.container, c.pod, c.namespace]
        ccpu.add_metric(labels, c.cpu_seconds, timestamp=c.time)
        cmem.add_metric(labels, float(c.memory_working_set), timestamp=c.time)
        cstart.add_metric(labels, c.start_time, timestamp=c.time)
        cpu, mem, t = pods.get((c.pod, c.namespace), (0.0, 0, 0.0))
        pods[(c.pod, c.namespace)] = (cpu + c.cpu_seconds, mem + c.memory_working_set, max(t, c.time))
    for (pod, ns), (cpu, mem, t) in sorted(pods.items()):
        pcpu.add_metric([pod, ns], cpu, timestamp=t)
        pmem.add_metric([pod, ns], float(mem), timestamp=t)
    scrape = GaugeMetricFamily(
        "resource_scrape_error",
        "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
    )
    scrape.add_metric([], 0.0 if node is not None else 1.0)
    yield from (ncpu, nmem, ccpu, cmem, cstart, pcpu, pmem, scrape)


class _Snapshot:
    def __init__(self, node: NodeUsage | None, containers: list[ContainerUsage]) -> None:
        self.node, self.containers = node, containers

    def collect(self) -> Iterator[Metric]:
        return _families(self.node, self.containers)


def render_resource_metrics(node: NodeUsage | None, containers: Iterable[ContainerUsage]) -> bytes:
    """The body of the kubelet's `/metrics/resource` (Prometheus text format 0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(node, list(containers)))
    return generate_latest(registry)
