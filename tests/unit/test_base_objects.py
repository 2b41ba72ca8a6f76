"""clone(): a deep copy that is fast for JSON-shaped objects and still right for anything else."""

from __future__ import annotations

from decimal import Decimal

from rayop.base.objects import clone


def test_clone_is_deep_and_equal() -> None:
    pod = {
        "metadata": {"labels": {"a": "1"}},
        "spec": {"containers": [{"name": "c", "args": ["x"]}]},
        "n": 1.5,
    }
    out = clone(pod)
    assert out == pod
    out["spec"]["containers"][0]["args"].append("y")
    out["metadata"]["labels"]["b"] = "2"
    assert pod["spec"]["containers"][0]["args"] == ["x"]
    assert pod["metadata"]["labels"] == {"a": "1"}


def test_clone_falls_back_for_what_json_cannot_hold() -> None:
    odd = {1: "int key", "big": 2**70, "d": Decimal("1.5")}
    out = clone(odd)
    assert out == odd and out is not odd
    assert clone((1, 2)) == (1, 2)  # a top-level tuple stays a tuple
