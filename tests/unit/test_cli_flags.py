"""Go-style boolean flags: KubeRay manifests pass them bare (`--enable-leader-election`)."""

from __future__ import annotations

import pytest

from rayop.cli.main import normalize_go_bools


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["operator", "--use-kubernetes-proxy"], ["operator", "--use-kubernetes-proxy=true"]),
        (
            ["operator", "--enable-leader-election", "--qps", "5"],
            ["operator", "--enable-leader-election=true", "--qps", "5"],
        ),
        (["operator", "--enable-metrics=false"], ["operator", "--enable-metrics=false"]),
        (["operator", "--enable-webhook", "false"], ["operator", "--enable-webhook", "false"]),
        (["operator", "--watch-namespace", "a,b"], ["operator", "--watch-namespace", "a,b"]),
    ],
)
def test_bare_go_bools_mean_true(argv: list[str], want: list[str]) -> None:
    assert normalize_go_bools(argv) == want
