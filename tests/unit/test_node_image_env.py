"""The node agent's image-to-environment mapping (`rayop node --image-env`): there are no images, so a
container of a mapped image runs with that environment's bin/ leading PATH."""

from __future__ import annotations

from pathlib import Path

from rayop.node.agent import NodeConfig, image_env

RAY = Path("/opt/ray-env")
RAYOP = Path("/opt/rayop-env")


def test_a_repository_key_matches_every_tag_and_digest() -> None:
    c = NodeConfig(python_env=RAY, image_envs={"rayop": RAYOP, "reg.example.com:5000/team/rayop": RAYOP})
    assert image_env(c, "rayop") == RAYOP
    assert image_env(c, "rayop:0.1.0") == RAYOP
    assert image_env(c, "rayop@sha256:abc") == RAYOP
    assert image_env(c, "reg.example.com:5000/team/rayop:0.1.0") == RAYOP
    assert image_env(c, "reg.example.com:5000/team/other:0.1.0") == RAY


def test_an_exact_key_wins_and_the_rest_runs_with_the_ray_environment() -> None:
    pinned = Path("/opt/rayop-0.2")
    c = NodeConfig(python_env=RAY, image_envs={"rayop": RAYOP, "rayop:0.2.0": pinned})
    assert image_env(c, "rayop:0.2.0") == pinned
    assert image_env(c, "rayop:0.1.0") == RAYOP
    assert image_env(c, "rayproject/ray:2.60.0") == RAY
    assert image_env(NodeConfig(python_env=RAY), "") == RAY
