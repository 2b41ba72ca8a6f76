"""Pod volumes on the node's disk, written the way the kubelet writes them (an atomically swapped
`..data` link), so a ConfigMap or token refresh is seen whole by a process reading the files."""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayop.base.types import Obj
from rayop.node import podspec
from rayop.runtime.client import CONFIGMAPS, SECRETS, ApiClient, ApiError


class VolumeError(Exception):
    pass


@dataclass
class Volume:
    name: str
    path: Path
    # tmpfs mounted at `path` inside the pod's sandbox (emptyDir medium Memory); None: a plain directory.
    tmpfs_options: str | None = None


def write_atomic(directory: Path, files: Mapping[str, tuple[bytes, int]]) -> bool:
    """Make `directory` hold exactly `files` (relative path -> (content, mode)). Returns True if changed."""
    directory.mkdir(parents=True, exist_ok=True)
    data_link = directory / "..data"
    if data_link.is_symlink():
        current = directory / os.readlink(data_link)
        same = True
        for rel, (content, mode) in files.items():
            f = current / rel
            try:
                if f.read_bytes() != content or (f.stat().st_mode & 0o7777) != mode:
                    same = False
                    break
            except OSError:
                same = False
                break
        existing = {str(p.relative_to(current)) for p in current.rglob("*") if p.is_file()}
        if same and existing == set(files):
            return False
    ts = directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.time_ns() % 10**9}"
    ts.mkdir()
    for rel, (content, mode) in files.items():
        f = ts / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(content)
        f.chmod(mode)
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tmp = directory / "..data_tmp"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(ts.name)
    os.replace(tmp, data_link)
    tops = {rel.split("/", 1)[0] for rel in files}
    for top in tops:
        link = directory / top
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            link.symlink_to(f"..data/{top}")
    for entry in directory.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.is_symlink() and entry.name not in tops:
            entry.unlink()
    if old and old != ts.name:
        shutil.rmtree(directory / old, ignore_errors=True)
    return True


@dataclass
class RefCache:
    """ConfigMaps and Secrets read once per pod sync."""

    client: ApiClient
    namespace: str
    configmaps: dict[str, dict[str, bytes] | None] = field(default_factory=dict)
    secrets: dict[str, dict[str, bytes] | None] = field(default_factory=dict)

    async def configmap(self, name: str) -> dict[str, bytes] | None:
        if name not in self.configmaps:
            try:
                cm = await self.client.get(CONFIGMAPS, name, self.namespace)
            except ApiError as e:
                if not e.not_found:
                    raise
                self.configmaps[name] = None
            else:
                data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
                data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
                self.configmaps[name] = data
        return self.configmaps[name]

    async def secret(self, name: str) -> dict[str, bytes] | None:
        if name not in self.secrets:
            try:
                s = await self.client.get(SECRETS, name, self.namespace)
            except ApiError as e:
                if not e.not_found:
                    raise
                self.secrets[name] = None
            else:
                data = {k: base64.b64decode(v) for k, v in (s.get("data") or {}).items()}
                data.update({k: v.encode() for k, v in (s.get("stringData") or {}).items()})
                self.secrets[name] = data
        return self.secrets[name]

    async def text_maps(
        self, pod: Obj
    ) -> tuple[dict[str, dict[str, str] | None], dict[str, dict[str, str] | None]]:
        """Decoded data of every ConfigMap/Secret the pod's env refers to."""
        cms: dict[str, dict[str, str] | None] = {}
        secs: dict[str, dict[str, str] | None] = {}
        spec = pod.get("spec") or {}
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            refs: list[tuple[str, str]] = []
            for ef in c.get("envFrom") or []:
                if "configMapRef" in ef:
                    refs.append(("cm", ef["configMapRef"].get("name", "")))
                if "secretRef" in ef:
                    refs.append(("secret", ef["secretRef"].get("name", "")))
            for e in c.get("env") or []:
                vf = e.get("valueFrom") or {}
                if "configMapKeyRef" in vf:
                    refs.append(("cm", vf["configMapKeyRef"].get("name", "")))
                if "secretKeyRef" in vf:
                    refs.append(("secret", vf["secretKeyRef"].get("name", "")))
            for kind, name in refs:
                if kind == "cm" and name not in cms:
                    d = await self.configmap(name)
                    cms[name] = None if d is None else {k: v.decode(errors="replace") for k, v in d.items()}
                elif kind == "secret" and name not in secs:
                    d = await self.secret(name)
                    secs[name] = None if d is None else {k: v.decode(errors="replace") for k, v in d.items()}
        return cms, secs


def _items(
    data: Mapping[str, bytes], items: list[Obj] | None, default_mode: int, what: str
) -> dict[str, tuple[bytes, int]]:
    out: dict[str, tuple[bytes, int]] = {}
    if items:
        for it in items:
            if it["key"] not in data:
                raise VolumeError(f"couldn't find key {it['key']} in {what}")
            out[it["path"]] = (data[it["key"]], int(it.get("mode", default_mode)))
    else:
        for k, v in data.items():
            out[k] = (v, default_mode)
    return out


@dataclass
class TokenCache:
    token: str = ""
    refresh_at: float = 0.0


class VolumeManager:
    """Materialises one pod's volumes under its state directory."""

    def __init__(
        self, client: ApiClient, pod_dir: Path, pvc_dir: Path, node_alloc: Mapping[str, Any]
    ) -> None:
        self.client = client
        self.pod_dir = pod_dir
        self.pvc_dir = pvc_dir
        self.node_alloc = node_alloc
        self.tokens: dict[str, TokenCache] = {}

    def layout(self, pod: Obj) -> dict[str, Volume]:
        """Where each volume lives; no API calls (the sandbox needs the tmpfs list first)."""
        out: dict[str, Volume] = {}
        ns = pod["metadata"]["namespace"]
        for v in (pod.get("spec") or {}).get("volumes") or []:
            name = v["name"]
            path = self.pod_dir / "volumes" / name
            if "hostPath" in v:
                out[name] = Volume(name, Path(v["hostPath"]["path"]))
            elif "persistentVolumeClaim" in v:
                # No storage provisioner on a local node: a claim is a directory that outlives pods.
                out[name] = Volume(name, self.pvc_dir / ns / v["persistentVolumeClaim"]["claimName"])
            elif "emptyDir" in v and (v["emptyDir"] or {}).get("medium") == "Memory":
                opts = "mode=1777"
                if v["emptyDir"].get("sizeLimit"):
                    opts += f",size={podspec.mem_bytes(v['emptyDir']['sizeLimit'])}"
                out[name] = Volume(name, path, tmpfs_options=opts)
            else:
                out[name] = Volume(name, path)
        return out

    async def sync(self, pod: Obj, refs: RefCache) -> dict[str, Volume]:
        vols = self.layout(pod)
        for v in (pod.get("spec") or {}).get("volumes") or []:
            vol = vols[v["name"]]
            if "hostPath" in v:
                if (v["hostPath"].get("type") or "") in ("DirectoryOrCreate", ""):
                    vol.path.mkdir(parents=True, exist_ok=True)
                continue
            if "emptyDir" in v or "persistentVolumeClaim" in v:
                vol.path.mkdir(parents=True, exist_ok=True)
                if "emptyDir" in v and vol.tmpfs_options is None:
                    vol.path.chmod(0o777)
                continue
            files = await self._files(pod, v, refs)
            if files is None:
                raise VolumeError(f"volume {v['name']!r}: unsupported volume type")
            write_atomic(vol.path, files)
        return vols

    async def _files(self, pod: Obj, v: Obj, refs: RefCache) -> dict[str, tuple[bytes, int]] | None:
        if "configMap" in v:
            src = v["configMap"]
            data = await refs.configmap(src.get("name", ""))
            if data is None:
                if src.get("optional"):
                    return {}
                raise VolumeError(f'configmap "{src.get("name", "")}" not found')
            return _items(data, src.get("items"), int(src.get("defaultMode", 0o644)), "configmap")
        if "secret" in v:
            src = v["secret"]
            data = await refs.secret(src.get("secretName", ""))
            if data is None:
                if src.get("optional"):
                    return {}
                raise VolumeError(f'secret "{src.get("secretName", "")}" not found')
            return _items(data, src.get("items"), int(src.get("defaultMode", 0o644)), "secret")
        if "downwardAPI" in v:
            src = v["downwardAPI"]
            return self._downward(pod, src.get("items") or [], int(src.get("defaultMode", 0o644)))
        if "projected" in v:
            src = v["projected"]
            mode = int(src.get("defaultMode", 0o644))
            out: dict[str, tuple[bytes, int]] = {}
            for s in src.get("sources") or []:
                if "serviceAccountToken" in s:
                    t = s["serviceAccountToken"]
                    tok = await self._token(pod, v["name"], t)
                    out[t["path"]] = (tok.encode(), mode)
                elif "configMap" in s:
                    c = s["configMap"]
                    data = await refs.configmap(c.get("name", ""))
                    if data is None:
                        if c.get("optional"):
                            continue
                        raise VolumeError(f'configmap "{c.get("name", "")}" not found')
                    out.update(_items(data, c.get("items"), mode, "configmap"))
                elif "secret" in s:
                    c = s["secret"]
                    data = await refs.secret(c.get("name", ""))
                    if data is None:
                        if c.get("optional"):
                            continue
                        raise VolumeError(f'secret "{c.get("name", "")}" not found')
                    out.update(_items(data, c.get("items"), mode, "secret"))
                elif "downwardAPI" in s:
                    out.update(self._downward(pod, s["downwardAPI"].get("items") or [], mode))
            return out
        return None

    def _downward(self, pod: Obj, items: list[Obj], mode: int) -> dict[str, tuple[bytes, int]]:
        out: dict[str, tuple[bytes, int]] = {}
        for it in items:
            if "fieldRef" in it:
                val = podspec.field_ref(pod, it["fieldRef"]["fieldPath"])
            else:
                r = it["resourceFieldRef"]
                target: Obj = {}
                for c in pod["spec"].get("containers") or []:
                    if c["name"] == r.get("containerName"):
                        target = c
                val = podspec.resource_field_ref(target, r["resource"], r.get("divisor"), self.node_alloc)
            out[it["path"]] = (val.encode(), int(it.get("mode", mode)))
        return out

    async def _token(self, pod: Obj, volume: str, src: Obj) -> str:
        key = f"{volume}/{src['path']}"
        cache = self.tokens.setdefault(key, TokenCache())
        if cache.token and time.time() < cache.refresh_at:
            return cache.token
        md = pod["metadata"]
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        ttl = int(src.get("expirationSeconds", 3607))
        spec: Obj = {
            "expirationSeconds": ttl,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": md["name"], "uid": md["uid"]},
        }
        if src.get("audience"):
            spec["audiences"] = [src["audience"]]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            resp = await self.client.request(
                "POST", f"/api/v1/namespaces/{md['namespace']}/serviceaccounts/{sa}/token", body=body
            )
        except ApiError as e:
            raise VolumeError(f"failed to fetch token for service account {sa}: {e.message}") from e
        cache.token = str(resp["status"]["token"])
        # Like the kubelet: refresh at 80% of the token's lifetime.
        cache.refresh_at = time.time() + 0.8 * ttl
        return cache.token
