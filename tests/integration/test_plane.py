"""The embedded control plane itself: parallel planes, port clashes, start-up failures, the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rayop.local import plane as plane_mod
from rayop.local.plane import ControlPlane, PlaneError, PlaneOptions, running_plane

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rayop.cli.main", *args], capture_output=True, text=True, timeout=180, cwd=REPO
    )


def test_two_planes_run_side_by_side(tmp_path: Path) -> None:
    a = ControlPlane(PlaneOptions(state_dir=tmp_path / "a", install_crds=False, controller_manager=False))
    b = ControlPlane(PlaneOptions(state_dir=tmp_path / "b", install_crds=False, controller_manager=False))
    with a, b:
        assert a.ports["apiserver"] != b.ports["apiserver"]
        a.kubectl("create", "configmap", "only-in-a", "--from-literal=k=v")
        assert "only-in-a" in a.kubectl("get", "configmap", "only-in-a", "-o", "name")
        out = b.kubectl("get", "configmap", "only-in-a", check=False)
        assert "NotFound" in out or "not found" in out
    assert running_plane(tmp_path / "a") is None


def test_busy_port_is_avoided(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = holder.getsockname()[1]
    try:
        assert not plane_mod.port_is_free(busy)
        real = plane_mod.pick_free_ports
        calls = {"n": 0}

        def first_busy(n: int, host: str = "127.0.0.1", avoid: tuple[int, ...] = ()) -> list[int]:
            calls["n"] += 1
            ports = real(n, host, avoid)
            if calls["n"] == 1:
                ports[2] = busy  # the API server's port is taken on the first try
            return ports

        monkeypatch.setattr(plane_mod, "pick_free_ports", first_busy)
        with ControlPlane(
            PlaneOptions(state_dir=tmp_path, install_crds=False, controller_manager=False)
        ) as cp:
            assert cp.ports["apiserver"] != busy
            assert calls["n"] == 2
            assert cp.is_ready()
    finally:
        holder.close()


def test_apiserver_dying_at_startup_is_reported_with_its_log(tmp_path: Path) -> None:
    cp = ControlPlane(
        PlaneOptions(
            state_dir=tmp_path,
            install_crds=False,
            controller_manager=False,
            extra_apiserver_args=["--no-such-flag"],
        )
    )
    with pytest.raises(PlaneError) as err:
        cp.start()
    cp.stop()
    msg = str(err.value)
    assert "kube-apiserver exited with code" in msg
    assert "no-such-flag" in msg  # the tail of its own log says what was wrong


def test_local_up_twice_starts_one_plane(tmp_path: Path) -> None:
    state = tmp_path / "local"
    first = _cli("local", "up", "--dir", str(state), "--no-controller-manager", "--no-operator", "--no-node")
    try:
        assert first.returncode == 0, first.stderr
        assert "export KUBECONFIG=" in first.stdout
        pids = running_plane(state)
        assert pids is not None
        second = _cli(
            "local", "up", "--dir", str(state), "--no-controller-manager", "--no-operator", "--no-node"
        )
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stdout
        again = running_plane(state)
        assert again is not None and again.pids == pids.pids
        st = _cli("local", "status", "--dir", str(state))
        assert st.returncode == 0 and "running" in st.stdout
    finally:
        down = _cli("local", "down", "--dir", str(state))
    assert down.returncode == 0
    assert running_plane(state) is None
    assert _cli("local", "status", "--dir", str(state)).returncode == 1


def test_failed_go_build_prints_compiler_error(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        RAYOP_CACHE_DIR=str(tmp_path / "cache"),
        # A flag the Go compiler rejects: the build must fail, show the compiler's words, exit non-zero.
        RAYOP_GO_BUILD_FLAGS="-gcflags=all=-no-such-compiler-flag",
    )
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-k8s.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "no-such-compiler-flag" in out
    assert "building kube-apiserver" in out and "failed" in out
    assert not list((tmp_path / "cache").glob("k8s/*/kube-apiserver"))


def test_killed_parts_restart_on_their_ports_with_their_data(tmp_path: Path) -> None:
    """SIGKILL the API server and etcd, restart them: same address, same kubeconfig, nothing lost."""
    with ControlPlane(PlaneOptions(state_dir=tmp_path, install_crds=False, controller_manager=False)) as cp:
        server = cp.server
        cp.kubectl("create", "configmap", "before", "--from-literal=k=v")
        old = cp.kill("kube-apiserver")
        assert not cp.is_ready()
        cp.restart("kube-apiserver")
        assert cp.server == server and cp.procs["kube-apiserver"].pid != old
        assert "before" in cp.kubectl("get", "configmap", "before", "-o", "name")
        cp.kill("etcd")
        cp.restart("etcd")
        cp.kubectl("create", "configmap", "after", "--from-literal=k=v", timeout=60)
        names = cp.kubectl("get", "configmaps", "-o", "name")
        assert "configmap/before" in names and "configmap/after" in names
        with pytest.raises(PlaneError, match="still running"):
            cp.restart("etcd")
        assert "kube-apiserver.log" in {p.name for p in cp.log_dir.iterdir()}
