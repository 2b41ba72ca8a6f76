"""The `rayop` command without a cluster: every help text reads cleanly, dry runs print manifests,
completion answers, and failures are one line with a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from rayop.cli.main import app

runner = CliRunner()


def commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        path = (*prefix, name)
        yield path
        if hasattr(cmd, "list_commands"):  # a group (typer bundles its own click)
            yield from commands(cmd, path)


def all_commands() -> list[tuple[str, ...]]:
    return [(), *commands(typer.main.get_command(app))]


def test_every_command_is_listed() -> None:
    names = {" ".join(c) for c in all_commands()}
    for want in ("get clusters", "get jobs", "get services", "get workergroups", "get nodes", "create cluster",
                 "scale cluster", "job submit", "logs", "session", "delete cluster", "delete job", "delete service"):  # fmt: skip
        assert want in names


@pytest.mark.parametrize("command", all_commands(), ids=lambda c: " ".join(c) or "rayop")
def test_help_has_no_placeholder_types_on_flags(command: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "Show this message and exit." in result.output


def test_dry_run_prints_the_manifest() -> None:
    result = runner.invoke(
        app, ["create", "cluster", "demo", "-n", "team", "--worker-replicas", "3", "--dry-run", "-o", "json"]
    )
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)
    assert obj["metadata"] == {"name": "demo", "namespace": "team"}
    assert obj["spec"]["workerGroupSpecs"][0]["replicas"] == 3
    result = runner.invoke(
        app, ["job", "submit", "--name", "j", "-n", "team", "--dry-run", "--", "python", "-c", "print(1)"]
    )
    assert result.exit_code == 0, result.output
    job = yaml.safe_load(result.stdout)
    assert (
        job["spec"]["entrypoint"] == "python -c 'print(1)'" and job["spec"]["submissionMode"] == "K8sJobMode"
    )


def test_bad_flags_exit_2_naming_them(tmp_path: Path) -> None:
    result = runner.invoke(app, ["create", "cluster", "x", "--head-cpu", "lots", "--dry-run"])
    assert result.exit_code == 2 and "--head-cpu 'lots' is not a Kubernetes quantity" in result.stderr
    result = runner.invoke(
        app, ["job", "submit", "--name", "j", "--cluster", "c", "--worker-cpu", "4", "--", "x"]
    )
    assert result.exit_code == 2 and "--worker-cpu would be ignored" in result.stderr
    result = runner.invoke(
        app, ["job", "submit", "--name", "j", "--working-dir", str(tmp_path / "nope"), "--", "x"]
    )
    assert result.exit_code == 2 and "no such directory" in result.stderr


def run_rayop(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full.pop("RAYOP_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "rayop.cli.main", *args], capture_output=True, text=True, env=full, timeout=60
    )


def test_no_kubeconfig_is_one_line(tmp_path: Path) -> None:
    r = run_rayop("get", "clusters", env={"KUBECONFIG": str(tmp_path / "missing"), "HOME": str(tmp_path)})
    assert r.returncode == 1
    assert r.stderr.startswith("error: no kubeconfig found") and "Traceback" not in r.stderr


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    cfg = {
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    (tmp_path / "config").write_text(yaml.safe_dump(cfg))
    r = run_rayop("get", "nodes", "--kubeconfig", str(tmp_path / "config"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(
        f"error: cannot reach the API server at https://127.0.0.1:{port} (context 'x')"
    )


def test_shell_completion_of_commands() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "rayop.cli.main"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "_RAYOP_COMPLETE": "complete_bash",
            "COMP_WORDS": "rayop get work",
            "COMP_CWORD": "2",
        },
        timeout=60,
    )
    assert r.stdout.split() == ["workergroups"], r
