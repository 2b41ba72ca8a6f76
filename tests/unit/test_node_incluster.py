"""In-cluster configuration of a Pod the node agent runs (the chart's operator on the local plane).

The API server's ServiceAccount admission adds a projected volume (`kube-api-access-*`: a bound
ServiceAccount token, the cluster CA from the `kube-root-ca.crt` ConfigMap, the namespace) mounted at
/var/run/secrets/kubernetes.io/serviceaccount. The node agent writes it as the kubelet does (TokenRequest
bound to the Pod, refreshed at 80% of its lifetime, files swapped atomically), and the shim bind-mounts it
at that path in the container's own mount namespace, so rayop's in-cluster loader reads it unchanged.
Here the volume is written by the node agent's VolumeManager against a fake API, then read by
`in_cluster_config` from where it was written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from rayop.node import volumes
from rayop.node.volumes import RefCache, VolumeManager
from rayop.runtime import kubeconfig
from rayop.runtime.client import ApiClient, Resource
from rayop.runtime.kubeconfig import in_cluster_config, load_config

CA = b"-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n"

POD = {
    "metadata": {"name": "rayop-abc", "namespace": "rayop-system", "uid": "u-1"},
    "spec": {
        "serviceAccountName": "rayop",
        "containers": [{"name": "operator", "image": "rayop:0.1.0"}],
        # As the ServiceAccount admission plugin writes it.
        "volumes": [
            {
                "name": "kube-api-access-x1",
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ],
                },
            }
        ],
    },
}


class FakeApi:
    """The two calls the volume needs: TokenRequest and the kube-root-ca.crt ConfigMap."""

    def __init__(self) -> None:
        self.token_requests: list[tuple[str, dict[str, Any]]] = []

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        assert method == "POST" and body is not None
        self.token_requests.append((path, body))
        return {"status": {"token": f"token-{len(self.token_requests)}"}}

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        assert (res.plural, name, namespace) == ("configmaps", "kube-root-ca.crt", "rayop-system")
        return {"data": {"ca.crt": CA.decode()}}


def manager(tmp_path: Path, api: FakeApi) -> VolumeManager:
    return VolumeManager(
        cast(ApiClient, api), tmp_path / "pod", tmp_path / "pvc", {"cpu": "2", "memory": "4Gi"}
    )


async def sync(vm: VolumeManager, api: FakeApi) -> Path:
    vols = await vm.sync(POD, RefCache(cast(ApiClient, api), "rayop-system"))
    return vols["kube-api-access-x1"].path


async def test_the_service_account_volume_is_what_in_cluster_config_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = FakeApi()
    sa_dir = await sync(manager(tmp_path, api), api)
    assert (sa_dir / "token").read_text() == "token-1"
    assert (sa_dir / "ca.crt").read_bytes() == CA
    assert (sa_dir / "namespace").read_text() == "rayop-system"
    assert oct((sa_dir / "token").stat().st_mode & 0o777) == oct(0o644)

    # A token bound to the Pod, for its ServiceAccount, with the lifetime the volume asks for.
    path, body = api.token_requests[0]
    assert path == "/api/v1/namespaces/rayop-system/serviceaccounts/rayop/token"
    assert body["spec"]["expirationSeconds"] == 3607
    assert body["spec"]["boundObjectRef"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "rayop-abc",
        "uid": "u-1",
    }

    # What the container sees at /var/run/secrets/kubernetes.io/serviceaccount (the shim bind-mounts it
    # there), plus the variables the node agent sets: the operator configures itself from them.
    monkeypatch.setattr(kubeconfig, "SA_DIR", sa_dir)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.213.7.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    cfg = in_cluster_config()
    assert cfg.server == "https://10.213.7.1:6443"
    assert cfg.ca_data == CA
    assert cfg.namespace == "rayop-system"
    assert cfg.bearer() == "token-1"


async def test_the_token_is_refreshed_at_80_percent_and_the_client_reads_each_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = FakeApi()
    vm = manager(tmp_path, api)
    clock = [1000.0]
    monkeypatch.setattr(volumes.time, "time", lambda: clock[0])
    sa_dir = await sync(vm, api)
    monkeypatch.setattr(kubeconfig, "SA_DIR", sa_dir)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.213.7.1")
    cfg = in_cluster_config()
    assert cfg.server == "https://10.213.7.1:443"

    clock[0] += 0.79 * 3607  # the pod worker syncs volumes again and again: the token is kept
    await sync(vm, api)
    assert len(api.token_requests) == 1 and cfg.bearer() == "token-1"

    clock[0] += 0.02 * 3607  # past 80% of its lifetime: a new one, swapped in whole
    await sync(vm, api)
    assert len(api.token_requests) == 2
    assert cfg.bearer() == "token-2", "a long-running operator picks up the rotated token"
    assert (sa_dir / "..data").is_symlink() and (sa_dir / "token").is_symlink()


def test_an_ipv6_service_host_is_bracketed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ca.crt").write_bytes(CA)
    (tmp_path / "token").write_text("t\n")
    monkeypatch.setattr(kubeconfig, "SA_DIR", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cfg = in_cluster_config()
    assert cfg.server == "https://[fd00::1]:443"
    assert cfg.bearer() == "t"
    assert cfg.namespace == "default"  # no namespace file


def test_a_pod_without_a_kubeconfig_uses_in_cluster_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ca.crt").write_bytes(CA)
    (tmp_path / "token").write_text("t")
    (tmp_path / "namespace").write_text("rayop-system")
    monkeypatch.setattr(kubeconfig, "SA_DIR", tmp_path)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    # The node agent gives each container a HOME of its own, with no ~/.kube/config in it.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.213.7.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    assert load_config().namespace == "rayop-system"

    # A kubeconfig, when there is one, wins (as client-go's loader decides).
    kc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://elsewhere:6443"}}],
        "users": [{"name": "u", "user": {"token": "k"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    (tmp_path / "kc").write_text(json.dumps(kc))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kc"))
    assert load_config().server == "https://elsewhere:6443"
