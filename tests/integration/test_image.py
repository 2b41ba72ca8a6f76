"""The image recipe without a container engine: the one script the Dockerfile's build stage runs,
run here into a clean folder with a clean environment, then the installed operator's command line.
(tests/unit/test_chart_files.py checks the Dockerfile's stages, USER and ENTRYPOINT.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_image_install_script_gives_a_working_operator(tmp_path: Path) -> None:
    prefix = tmp_path / "opt" / "rayop"
    # Only what a fresh build container has: no venv on PATH, no PYTHONPATH to the checkout.
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    for key in ("PIP_INDEX_URL", "PIP_CACHE_DIR"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    build = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-rayop.sh"), str(prefix)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert not (REPO / "build").exists(), "the install must not write build/ into the checkout"

    run_env = {
        "PATH": f"{prefix / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    helped = subprocess.run(
        [str(prefix / "bin" / "rayop"), "operator", "--help"],
        env=run_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0, helped.stderr
    for flag in ("--enable-leader-election", "--webhook-inject-ca-into", "--reconcile-concurrency"):
        assert flag in helped.stdout
    # The runtime environment carries rayop's runtime dependencies only, not the dev tools.
    dev = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", "import pytest"],
        env=run_env,
        cwd=tmp_path,
        capture_output=True,
    )
    assert dev.returncode != 0
    # Installed, not linked to this checkout.
    where = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", "import rayop; print(rayop.__file__)"],
        env=run_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(prefix)), where.stdout
