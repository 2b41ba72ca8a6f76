"""Pure helpers the node agent uses to read a Pod like a kubelet does: quantities, resource fit,
environment ($(VAR) expansion, fieldRef, resourceFieldRef), /etc/hosts content and pod phase.
No I/O here, so all of it is unit-tested.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

_BIN = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DEC = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QTY = re.compile(r"^([+-]?[0-9.]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$")


def parse_quantity(q: str | int | float) -> Decimal:
    """A Kubernetes resource.Quantity as a Decimal ("500m" -> 0.5, "1Gi" -> 1073741824)."""
    if isinstance(q, (int, float)):
        return Decimal(str(q))
    m = _QTY.match(q.strip())
    if not m:
        raise ValueError(f"invalid quantity {q!r}")
    try:
        num = Decimal(m.group(1))
    except InvalidOperation as e:
        raise ValueError(f"invalid quantity {q!r}") from e
    if m.group(2):
        return num * (Decimal(10) ** int(m.group(2)[1:]))
    suffix = m.group(3) or ""
    if suffix in _BIN:
        return num * _BIN[suffix]
    return num * _DEC[suffix]


def cpu_millis(q: str | int | float) -> int:
    return math.ceil(parse_quantity(q) * 1000)


def mem_bytes(q: str | int | float) -> int:
    return math.ceil(parse_quantity(q))


def container_requests(c: Mapping[str, Any]) -> dict[str, int]:
    """cpu in millicores, memory in bytes. Requests default to limits, as the API server does."""
    res = c.get("resources") or {}
    req = dict(res.get("limits") or {})
    req.update(res.get("requests") or {})
    return {
        "cpu": cpu_millis(req["cpu"]) if "cpu" in req else 0,
        "memory": mem_bytes(req["memory"]) if "memory" in req else 0,
    }


def pod_requests(pod: Mapping[str, Any]) -> dict[str, int]:
    """What the scheduler charges for a pod: max(any init container, sum of containers) + overhead."""
    spec = pod.get("spec") or {}
    total = {"cpu": 0, "memory": 0}
    for c in spec.get("containers") or []:
        r = container_requests(c)
        for k in total:
            total[k] += r[k]
    sidecars = {"cpu": 0, "memory": 0}
    for c in spec.get("initContainers") or []:
        r = container_requests(c)
        if c.get("restartPolicy") == "Always":
            for k in total:
                sidecars[k] += r[k]
            continue
        for k in total:
            total[k] = max(total[k], r[k] + sidecars[k])
    for k in total:
        total[k] = max(total[k], 0)
    for k, v in (spec.get("overhead") or {}).items():
        if k == "cpu":
            total["cpu"] += cpu_millis(v)
        elif k == "memory":
            total["memory"] += mem_bytes(v)
    return total


def unschedulable_reason(
    pod: Mapping[str, Any],
    node: Mapping[str, Any],
    used: Mapping[str, int],
    pods_on_node: int,
) -> str | None:
    """None if the pod fits this node; else a scheduler-like message."""
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    alloc = (node.get("status") or {}).get("allocatable") or {}
    need = pod_requests(pod)
    short: list[str] = []
    if need["cpu"] and need["cpu"] + used.get("cpu", 0) > cpu_millis(alloc.get("cpu", "0")):
        short.append("Insufficient cpu")
    if need["memory"] and need["memory"] + used.get("memory", 0) > mem_bytes(alloc.get("memory", "0")):
        short.append("Insufficient memory")
    if pods_on_node + 1 > int(alloc.get("pods", "110")):
        short.append("Too many pods")
    for t in node.get("spec", {}).get("taints") or []:
        if t.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(
            spec.get("tolerations") or [], t
        ):
            short.append(f"node(s) had untolerated taint {{{t.get('key')}: {t.get('value', '')}}}")
    if short:
        return "0/1 nodes are available: " + ", ".join(f"1 {s}" for s in short) + "."
    return None


def _tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if not t.get("key") and t.get("operator") == "Exists":
            return True
        if t.get("key") != taint.get("key"):
            continue
        if t.get("operator") == "Exists" or t.get("value", "") == taint.get("value", ""):
            return True
    return False


# --- environment -----------------------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(s: str, env: Mapping[str, str]) -> str:
    """Kubernetes $(VAR) expansion: $$ escapes, unknown references stay as written."""

    def rep(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR.sub(rep, s)


_BRACKET = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


def field_ref(pod: Mapping[str, Any], path: str) -> str:
    md = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    m = _BRACKET.match(path)
    if m:
        return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": md.get("name", ""),
        "metadata.namespace": md.get("namespace", ""),
        "metadata.uid": md.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIPs": ",".join(i.get("ip", "") for i in status.get("hostIPs") or []),
        "status.podIPs": ",".join(i.get("ip", "") for i in status.get("podIPs") or []),
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        d = md.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(d.items()))
    raise ValueError(f"unsupported fieldPath {path!r}")


def resource_field_ref(
    container: Mapping[str, Any], resource: str, divisor: str | None, node_alloc: Mapping[str, Any]
) -> str:
    """Like the kubelet: limits default to the node's allocatable; values round up in divisor units."""
    res = container.get("resources") or {}
    kind, _, name = resource.partition(".")
    src = res.get(kind) or {}
    if name in src:
        value = parse_quantity(src[name])
    elif kind == "limits" and name in node_alloc:
        value = parse_quantity(node_alloc[name])
    elif kind == "requests" and name in (res.get("limits") or {}):
        value = parse_quantity(res["limits"][name])
    else:
        value = Decimal(0)
    div = parse_quantity(divisor) if divisor else Decimal(1)
    if div == 0:
        div = Decimal(1)
    return str(math.ceil(value / div))


class MissingRef(Exception):
    """A referenced ConfigMap/Secret or key is missing (CreateContainerConfigError)."""


def build_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    base: Mapping[str, str],
    configmaps: Mapping[str, Mapping[str, str] | None],
    secrets: Mapping[str, Mapping[str, str] | None],
    node_alloc: Mapping[str, Any],
) -> dict[str, str]:
    """The container's environment. configmaps/secrets map name -> data (decoded), None if absent."""
    env: dict[str, str] = dict(base)

    def source(kind: str, name: str) -> Mapping[str, str] | None:
        return (configmaps if kind == "configMap" else secrets).get(name)

    for ef in container.get("envFrom") or []:
        prefix = ef.get("prefix", "")
        for kind in ("configMap", "secret"):
            ref = ef.get(f"{kind}Ref")
            if ref is None:
                continue
            data = source(kind, ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                raise MissingRef(f'{kind} "{ref.get("name", "")}" not found')
            for k, v in data.items():
                env[prefix + k] = v
    for e in container.get("env") or []:
        name = e["name"]
        if "valueFrom" not in e:
            env[name] = expand(str(e.get("value", "")), env)
            continue
        vf = e["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_ref(pod, vf["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in vf:
            r = vf["resourceFieldRef"]
            target = container
            if r.get("containerName"):
                for c in (pod.get("spec") or {}).get("containers") or []:
                    if c.get("name") == r["containerName"]:
                        target = c
            env[name] = resource_field_ref(target, r["resource"], r.get("divisor"), node_alloc)
        else:
            for kind in ("configMap", "secret"):
                ref = vf.get(f"{kind}KeyRef")
                if ref is None:
                    continue
                data = source(kind, ref.get("name", ""))
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        break
                    what = f'{kind} "{ref.get("name", "")}"'
                    raise MissingRef(
                        f"{what} not found" if data is None else f"couldn't find key {ref['key']} in {what}"
                    )
                env[name] = data[ref["key"]]
    return env


def command_line(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """command + args with $(VAR) expanded. There is no image, so no image entrypoint to fall back on."""
    cmd = [expand(str(a), env) for a in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    return cmd + args


# --- DNS -------------------------------------------------------------------------------------------


def service_names(name: str, namespace: str, domain: str) -> list[str]:
    return [f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.{domain}"]


# A pod's /etc/profile. Containers run on the host's filesystem (there are no images), so a login shell
# (`bash -l`, as KubeRay's Redis cleanup Job and ENABLE_LOGIN_SHELL run their commands) would read the
# host's /etc/profile, and Debian's sets PATH: the pod's environment (its bin/ leads PATH) would be lost
# and `python` or `ray` not found. An image's login shell keeps the PATH the image set (the Ubuntu base of
# rayproject/ray sets none in /etc/profile), so this one sets none either and otherwise does what the
# usual one does: bash's rc for interactive shells, then the profile.d snippets.
LOGIN_PROFILE = """\
# /etc/profile of a pod run by rayop's node agent: like an image's, it keeps the container's PATH.
if [ "${PS1-}" ] && [ "${BASH-}" ] && [ "$BASH" != "/bin/sh" ] && [ -f /etc/bash.bashrc ]; then
  . /etc/bash.bashrc
fi
if [ -d /etc/profile.d ]; then
  for i in /etc/profile.d/*.sh; do
    if [ -r "$i" ]; then . "$i"; fi
  done
  unset i
fi
"""


def render_hosts(
    pod_ip: str,
    hostname: str,
    pod_namespace: str,
    subdomain: str | None,
    records: Mapping[tuple[str, str], list[str]],
    domain: str,
    extra: Mapping[str, list[str]] | None = None,
) -> str:
    """/etc/hosts for one pod. records: (namespace, service) -> IPs; short names only for the pod's
    own namespace, like the search path of a pod's resolv.conf. glibc answers with the first line
    for a name, so each IP gets its own line, in the given order."""
    lines = [
        "# Kubernetes-managed hosts file (rayop node agent).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    own = [hostname]
    if subdomain:
        own.insert(0, f"{hostname}.{subdomain}.{pod_namespace}.svc.{domain}")
    if pod_ip:
        lines.append(f"{pod_ip}\t{' '.join(own)}")
    for ip, names in sorted((extra or {}).items()):
        lines.append(f"{ip}\t{' '.join(names)}")
    for (ns, svc), ips in sorted(records.items()):
        names = service_names(svc, ns, domain)
        if ns == pod_namespace:
            names.insert(0, svc)
        for ip in ips:
            lines.append(f"{ip}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def service_records(
    services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]]
) -> dict[tuple[str, str], list[str]]:
    """(namespace, name) -> endpoint IPs (ready ones, or all of them with publishNotReadyAddresses),
    plus per-endpoint hostnames of headless services ("<hostname>.<svc>")."""
    by_svc: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for s in slices:
        md = s.get("metadata") or {}
        svc = (md.get("labels") or {}).get("kubernetes.io/service-name")
        if svc:
            by_svc.setdefault((md.get("namespace", ""), svc), []).append(s)
    out: dict[tuple[str, str], list[str]] = {}
    for svc in services:
        md = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        key = (md.get("namespace", ""), md.get("name", ""))
        if spec.get("type") == "ExternalName":
            continue
        all_ready = bool(spec.get("publishNotReadyAddresses"))
        ips: list[str] = []
        for sl in by_svc.get(key, []):
            for ep in sl.get("endpoints") or []:
                cond = ep.get("conditions") or {}
                if not (all_ready or cond.get("ready", True)):
                    continue
                for a in ep.get("addresses") or []:
                    if a not in ips:
                        ips.append(a)
                    if ep.get("hostname") and spec.get("clusterIP") == "None":
                        out.setdefault((key[0], f"{ep['hostname']}.{key[1]}"), []).append(a)
        if ips:
            out[key] = sorted(ips)
    return out


# --- status ----------------------------------------------------------------------------------------


def pod_phase(
    restart_policy: str,
    init_ok: bool,
    init_failed: bool,
    states: Iterable[Mapping[str, Any]],
) -> str:
    """Phase from container statuses (kubelet's getPhase, for the cases a local node meets)."""
    if init_failed and restart_policy == "Never":
        return "Failed"
    if not init_ok:
        return "Pending"
    running = waiting = succeeded = failed = 0
    restarted = False
    for st in states:
        state = st.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            if state["terminated"].get("exitCode", 0) == 0:
                succeeded += 1
            else:
                failed += 1
        else:
            waiting += 1
            if st.get("restartCount", 0) > 0 or st.get("lastState", {}).get("terminated"):
                restarted = True
    if waiting and not (running or restarted):
        return "Pending"
    if running or waiting:
        return "Running"
    if restart_policy == "Always":
        return "Running"
    if failed and restart_policy == "Never":
        return "Failed"
    if failed:  # OnFailure: the failed ones restart
        return "Running"
    return "Succeeded"


def claimed_host_paths(spec: Mapping[str, Any]) -> set[str]:
    """The host paths a pod's containers use: mount targets and working directories (the shims create
    them when missing, and the node removes them when no pod claims them any longer)."""
    out: set[str] = set()
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        out.update(m["mountPath"].rstrip("/") for m in c.get("volumeMounts") or [])
        if c.get("workingDir"):
            out.add(str(c["workingDir"]).rstrip("/"))
    return out
