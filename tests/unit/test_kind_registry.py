"""Every kind registered in rayop.api.kinds reaches each consumer: the CRD generator (with its declared
subresources), validation, and the webhook's paths and registration."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rayop.api import crdgen
from rayop.api import kinds as K
from rayop.validation import RULES, validate, warnings_for
from rayop.webhook.admission import PATHS
from rayop.webhook.registration import build_webhook_configuration
from tests.unit.test_crdgen import stub_documents


@pytest.mark.parametrize("spec", K.KINDS, ids=lambda k: k.kind)
def test_registered_kind_reaches_the_crd_generator(spec: K.KindSpec) -> None:
    crd = crdgen.build_crds(stub_documents())[spec.crd_file]
    assert crd["metadata"]["name"] == spec.crd_name
    assert crd["spec"]["group"] == spec.group
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (spec.kind, spec.plural, spec.singular)
    assert names["categories"] == list(spec.categories)
    assert names.get("shortNames", []) == list(spec.short_names)
    assert [v["name"] for v in crd["spec"]["versions"]] == list(spec.versions)
    for v in crd["spec"]["versions"]:
        assert "status" in v["subresources"]
        assert ("scale" in v["subresources"]) == (spec.scale is not None)
        assert v["additionalPrinterColumns"] == list(spec.printer_columns)


@pytest.mark.parametrize("spec", list(K.admitted()), ids=lambda k: k.kind)
def test_registered_kind_reaches_validation_and_the_webhook(spec: K.KindSpec) -> None:
    assert spec.kind in RULES
    assert PATHS[spec.kind] == spec.webhook_path
    # The rules really run: an object that is not a map is refused, naming the problem.
    assert validate(spec.kind, "not an object")
    assert isinstance(warnings_for(spec.kind, {}), list)
    hooks = build_webhook_configuration("https://127.0.0.1:9443", b"")["webhooks"]
    hook = next(h for h in hooks if h["clientConfig"]["url"].endswith(spec.webhook_path))
    assert hook["rules"][0]["resources"] == [spec.plural]
    assert hook["rules"][0]["apiGroups"] == [spec.group]
    assert hook["rules"][0]["apiVersions"] == list(spec.versions)


def test_a_declared_scale_subresource_is_rendered_with_its_paths() -> None:
    scaled = replace(
        K.RAYCLUSTER,
        kind="Scaled",
        plural="scaleds",
        group="example.rayop.io",
        short_names=("sc",),
        scale=K.ScaleSubresource(),
    )
    crd = crdgen.build_crds(stub_documents(), [scaled])["example.rayop.io_scaleds.yaml"]
    assert crd["spec"]["names"]["shortNames"] == ["sc"]
    for v in crd["spec"]["versions"]:
        assert v["subresources"]["scale"] == {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }


def test_kubray_names_of_the_registered_ray_kinds() -> None:
    assert K.RAYCLUSTER.webhook_path == "/validate-ray-io-v1-raycluster"
    assert K.RAYCLUSTERS.path("ns", "c", "status") == "/apis/ray.io/v1/namespaces/ns/rayclusters/c/status"
    assert K.by_kind("RayService").crd_file == "ray.io_rayservices.yaml"
    with pytest.raises(KeyError):
        K.by_kind("Nope")
