"""The one copy of the RayCluster spec switches (rayop.api.spec), with KubeRay's rules where the
copies it replaced disagreed."""

from __future__ import annotations

from typing import Any

import pytest

from rayop.api import spec as S
from rayop.builders import cluster as cl
from rayop.builders import pod as podb
from rayop.builders.options import BuildOptions
from rayop.validation import validate_raycluster


def test_gcs_ft_is_on_whenever_the_options_are_present_even_empty() -> None:
    # utils.IsGCSFaultToleranceEnabled tests the pointer for nil: `gcsFaultToleranceOptions: {}` is on.
    assert S.gcs_ft_enabled({"gcsFaultToleranceOptions": {}}, {})
    assert not S.gcs_ft_enabled({"gcsFaultToleranceOptions": None}, {})
    assert not S.gcs_ft_enabled({}, {})
    assert S.gcs_ft_enabled({}, {"ray.io/ft-enabled": "TRUE"})
    assert not S.gcs_ft_enabled({}, {"ray.io/ft-enabled": "yes"})


@pytest.mark.parametrize(
    ("options", "backend"),
    [
        ({}, "redis"),
        ({"backend": "rocksdb"}, "rocksdb"),
        ({"backend": "redis"}, "redis"),
        # Compared as written, as KubeRay compares the enum: a spelling the CRD would refuse is not
        # taken for RocksDB (the builders' copy used to lower-case it).
        ({"backend": "RocksDB"}, "RocksDB"),
    ],
)
def test_gcs_ft_backend(options: dict[str, Any], backend: str) -> None:
    assert S.gcs_ft_backend({"gcsFaultToleranceOptions": options}, {}) == backend
    assert S.gcs_ft_backend({}, {}) is None


def _cluster(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "c", "namespace": "ns", "uid": "u"},
        "spec": {
            "headGroupSpec": {
                "rayStartParams": {},
                "template": {
                    "spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.60.0"}]}
                },
            },
            **spec,
        },
    }


def test_builders_and_validation_read_the_same_switch() -> None:
    # Present but empty options: GCS FT with Redis for the builders, and the same for validation, which
    # then refuses RAY_REDIS_ADDRESS in the head's env as a second way of saying it.
    rc = _cluster(gcsFaultToleranceOptions={})
    assert cl.gcs_ft_enabled(rc) and cl.gcs_ft_backend(rc) == "redis"
    head = podb.build_head_pod(rc, BuildOptions())
    env = {e["name"] for e in head["spec"]["containers"][0].get("env", [])}
    assert "RAY_REDIS_ADDRESS" in env
    rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "RAY_REDIS_ADDRESS", "value": "redis:6379"}
    ]
    errors = [str(e) for e in validate_raycluster(rc)]
    assert any("must not be set when gcsFaultToleranceOptions is set" in e for e in errors), errors


def test_switches_are_total_on_malformed_input() -> None:
    bad: dict[str, Any] = {
        "autoscalerOptions": "x",
        "authOptions": ["token"],
        "enableInTreeAutoscaling": "true",
    }
    assert S.autoscaler_version(bad) is None
    assert not S.auth_enabled(bad) and not S.k8s_auth_enabled(bad)
    assert not S.autoscaling_enabled(bad)
