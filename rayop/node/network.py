"""Pod networking: one bridge per agent on a private /24, one named network namespace and veth pair
per pod, a default route via the bridge so Ray detects the pod IP by itself, as in a real pod
(KubeRay passes no --node-ip-address). The host keeps ip_forward as it is: pods reach the host and
each other, nothing beyond.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("rayop.node.network")

NETNS_DIR = Path("/run/netns")


class NetworkError(Exception):
    pass


async def run_ip(*args: str, stdin: str | None = None, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        "ip",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {err.decode().strip()}")
    return out.decode()


@dataclass(frozen=True)
class PodNet:
    netns: str
    veth: str
    ip: str


class Network:
    """The agent's bridge and the pods' namespaces. Names carry a per-agent prefix so the agent can
    find (and clean up) exactly what it created, and nothing of another agent on the same machine."""

    def __init__(self, bridge: str, cidr: str, prefix: str) -> None:
        self.bridge = bridge
        self.net = ipaddress.ip_network(cidr, strict=False)
        if self.net.prefixlen > 28:
            raise ValueError(f"pod CIDR {cidr} is too small")
        hosts = list(self.net.hosts())
        self.gateway = str(hosts[0])
        self._pool = [str(h) for h in hosts[1:]]
        self.prefix = prefix
        # IP -> pod UID: a finished pod gives its IP back while its status still shows it, so a release
        # must only free an IP its pod still owns.
        self._used: dict[str, str] = {}

    @property
    def cidr(self) -> str:
        return str(self.net)

    async def ensure_bridge(self) -> None:
        out = await run_ip("-br", "link", "show", "dev", self.bridge, check=False)
        if not out.strip():
            await run_ip("link", "add", self.bridge, "type", "bridge")
        addrs = await run_ip("-br", "addr", "show", "dev", self.bridge)
        if f"{self.gateway}/" not in addrs:
            await run_ip("addr", "add", f"{self.gateway}/{self.net.prefixlen}", "dev", self.bridge)
        await run_ip("link", "set", self.bridge, "up")

    async def delete_bridge(self) -> None:
        await run_ip("link", "del", self.bridge, check=False)

    def names_for(self, uid: str) -> tuple[str, str]:
        h = hashlib.sha1(f"{self.prefix}/{uid}".encode()).hexdigest()
        # Interface names are limited to 15 characters.
        return f"{self.prefix}-{uid}", f"rv{h[:11]}"

    def reserve(self, ip: str, uid: str) -> None:
        self._used.setdefault(ip, uid)

    def release(self, ip: str, uid: str) -> None:
        if self._used.get(ip) == uid:
            del self._used[ip]

    def allocate(self, uid: str) -> str:
        for ip in self._pool:
            if ip not in self._used:
                self._used[ip] = uid
                return ip
        raise NetworkError(f"no free pod IP left in {self.cidr}")

    async def create_pod_net(self, uid: str, ip: str) -> PodNet:
        netns, veth = self.names_for(uid)
        await self.delete_pod_net(PodNet(netns, veth, ip))
        await run_ip("netns", "add", netns)
        try:
            await run_ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            await run_ip("link", "set", veth, "master", self.bridge, "up")
            await run_ip(
                "-n",
                netns,
                "-batch",
                "-",
                stdin=(
                    "link set lo up\n"
                    f"addr add {ip}/{self.net.prefixlen} dev eth0\n"
                    "link set eth0 up\n"
                    f"route add default via {self.gateway}\n"
                ),
            )
        except NetworkError:
            await self.delete_pod_net(PodNet(netns, veth, ip))
            raise
        return PodNet(netns, veth, ip)

    async def delete_pod_net(self, pn: PodNet) -> None:
        await run_ip("link", "del", pn.veth, check=False)
        if (NETNS_DIR / pn.netns).exists():
            await run_ip("netns", "del", pn.netns, check=False)

    def own_netns(self) -> list[str]:
        if not NETNS_DIR.is_dir():
            return []
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{self.prefix}-"))
