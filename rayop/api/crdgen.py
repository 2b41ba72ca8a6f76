"""CRD generator: compose the Ray-level schemas of `rayop.api.schema` with the Kubernetes types taken from a
real kube-apiserver's OpenAPI v3 documents, and render the three ray.io CRDs.

Pure functions only: the documents come in as dicts (fetched by `rayop.local.openapi` or read from files by
the CLI); YAML text comes out.

The API server only accepts a *structural* schema. Each rule below was found by applying to a real
kube-apiserver (docs/compatibility.md#crd-generation):

1. `$ref` is forbidden: inline every reference (the PodTemplateSpec closure has no cycles; we still guard).
2. A field of object type is `{description, default, allOf: [{$ref}]}`: replace the one-element `allOf` by the
   referenced schema and lay the wrapper's keys over it.
3. `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`, `x-kubernetes-unions`, `readOnly` and
   `x-kubernetes-group-version-kind` are unknown to CRD schemas: drop them.
4. IntOrString and Quantity are `oneOf`s, which a structural schema cannot have: use
   `x-kubernetes-int-or-string` with `anyOf [integer, string]` (plus the quantity pattern).
5. Defaults are applied before validation and are themselves validated, so a zero-value default on a
   required property defeats `required` (a container without a name would be stored with `name: ""`), and
   `default: {}` materialises whole objects: drop both, and the zero-value defaults of list elements and
   map values; keep the other defaults, because list-map keys such as `ports[].protocol` must have one.
6. ObjectMeta is reduced to annotations, finalizers, labels, name and namespace, as in KubeRay's CRDs.

Inside embedded Kubernetes types descriptions are stripped: with them the RayJob CRD (six pod templates
over two served versions) exceeds etcd's 1.5 MiB request limit. Enums of core
types are dropped too, as in KubeRay's CRDs, so values added by newer Kubernetes releases are not refused.
Descriptions of Ray fields are kept, so `kubectl explain` documents them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import yaml

from rayop.api import schema as s
from rayop.api.kinds import KINDS, KindSpec

Schema = dict[str, Any]

# Which OpenAPI v3 documents (paths under /openapi/v3) hold the types KubeRay embeds.
REQUIRED_DOCUMENTS: Final = ("api/v1", "apis/networking.k8s.io/v1")

ANN_KUBERNETES_VERSION: Final = "rayop.io/kubernetes-version"
ANN_GENERATOR: Final = "rayop.io/generator"
GENERATOR: Final = "rayop dev gen-crds"

INT_OR_STRING: Final = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
OBJECT_META: Final = s.META + "ObjectMeta"
OBJECT_META_KEEP: Final = ("annotations", "finalizers", "labels", "name", "namespace")
QUANTITY_PATTERN: Final = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"

_INT_OR_STRING_SCHEMA: Final[Schema] = {
    "x-kubernetes-int-or-string": True,
    "anyOf": [{"type": "integer"}, {"type": "string"}],
}
_SPECIAL: Final[dict[str, Schema]] = {
    INT_OR_STRING: _INT_OR_STRING_SCHEMA,
    s.QUANTITY: {**_INT_OR_STRING_SCHEMA, "pattern": QUANTITY_PATTERN},
}

_DROP: Final = frozenset(
    {
        "x-kubernetes-patch-strategy",
        "x-kubernetes-patch-merge-key",
        "x-kubernetes-unions",
        "x-kubernetes-group-version-kind",
        "readOnly",
    }
)
_DROP_IN_CORE: Final = frozenset({"description", "enum"})
# JSONSchemaProps fields a CRD schema may carry (apiextensions.k8s.io/v1); anything else is an error, so a
# new OpenAPI extension in a later Kubernetes release shows up here instead of as a rejected CRD.
_ALLOWED: Final = frozenset(
    {
        "description",
        "type",
        "format",
        "title",
        "default",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "multipleOf",
        "enum",
        "maxProperties",
        "minProperties",
        "required",
        "items",
        "properties",
        "additionalProperties",
        "anyOf",
        "nullable",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-list-type",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",
    }
)


class SchemaError(ValueError):
    """The OpenAPI input cannot be turned into a structural CRD schema."""


# OpenAPI documents ---------------------------------------------------------------------------------


def components(documents: Iterable[Mapping[str, Any]]) -> dict[str, Schema]:
    """All component schemas of the documents. Group documents repeat shared types (ObjectMeta, ...); the
    first occurrence wins, and documents are taken in the order given, so the result is deterministic."""
    merged: dict[str, Schema] = {}
    for doc in documents:
        for name, sch in (doc.get("components") or {}).get("schemas", {}).items():
            merged.setdefault(name, sch)
    return merged


def kubernetes_version(documents: Iterable[Mapping[str, Any]]) -> str:
    """The Kubernetes minor release the documents describe (their `info.version`, e.g. `1.36`)."""
    versions = {str((doc.get("info") or {}).get("version", "")) for doc in documents}
    versions.discard("")
    if len(versions) != 1:
        raise SchemaError(
            f"expected one Kubernetes version across the OpenAPI documents, got {sorted(versions)}"
        )
    return versions.pop()


# Inlining ------------------------------------------------------------------------------------------


def _ref_name(ref: str) -> str:
    if not ref.startswith(s.REF_PREFIX):
        raise SchemaError(f"unsupported $ref {ref!r}")
    return ref[len(s.REF_PREFIX) :]


class _Inliner:
    def __init__(self, comps: Mapping[str, Schema]) -> None:
        self.comps = comps
        self.cache: dict[str, Schema] = {}
        self.stack: list[str] = []

    def component(self, name: str) -> Schema:
        if name in _SPECIAL:
            return copy.deepcopy(_SPECIAL[name])
        if name in self.stack:
            raise SchemaError(f"reference cycle: {' -> '.join([*self.stack, name])}")
        if name not in self.cache:
            if name not in self.comps:
                raise SchemaError(f"component {name} is not in the OpenAPI documents")
            self.stack.append(name)
            try:
                converted = self.convert(self.comps[name], core=True, path=name)
            finally:
                self.stack.pop()
            if name == OBJECT_META:
                props = converted.get("properties", {})
                converted = {
                    "type": "object",
                    "properties": {k: props[k] for k in OBJECT_META_KEEP if k in props},
                }
            self.cache[name] = converted
        return copy.deepcopy(self.cache[name])

    def convert(self, node: Mapping[str, Any], *, core: bool, path: str) -> Schema:
        rest = dict(node)
        target: str | None = None
        if "$ref" in rest:
            target = _ref_name(rest.pop("$ref"))
        elif "allOf" in rest:
            all_of = rest.pop("allOf")
            if len(all_of) != 1 or set(all_of[0]) != {"$ref"}:
                raise SchemaError(f"{path}: only a one-element allOf with a $ref is supported")
            target = _ref_name(all_of[0]["$ref"])
        out: Schema = self.component(target) if target else {}
        for key, value in rest.items():
            if key in _DROP or (core and key in _DROP_IN_CORE):
                continue
            if key == "format" and value == "int-or-string":
                continue
            if key == "oneOf":
                raise SchemaError(f"{path}: oneOf outside IntOrString/Quantity is not structural")
            if key not in _ALLOWED:
                raise SchemaError(f"{path}: unsupported schema key {key!r}")
            if key == "properties":
                out[key] = {k: self.convert(v, core=core, path=f"{path}.{k}") for k, v in value.items()}
            elif key == "items" or (key == "additionalProperties" and isinstance(value, Mapping)):
                out[key] = self.convert(value, core=core, path=f"{path}[]")
                if core:
                    # openapi-gen gives list elements and map values a zero-value default; a null element
                    # would silently become "" instead of being refused, and KubeRay's CRDs have none.
                    out[key].pop("default", None)
            else:
                out[key] = copy.deepcopy(value)
        if core:
            _prune_defaults(out)
        return out


def _prune_defaults(node: Schema) -> None:
    if node.get("default") == {}:
        del node["default"]
    props = node.get("properties")
    if props:
        for name in node.get("required", ()):
            if name in props:
                props[name].pop("default", None)


def inline(root: Mapping[str, Any], comps: Mapping[str, Schema]) -> Schema:
    """Resolve every `$ref` of a Ray-level schema against the components, converting embedded Kubernetes
    types as the API server requires. The Ray-level parts keep their descriptions."""
    return _Inliner(comps).convert(root, core=False, path="")


# CRDs ----------------------------------------------------------------------------------------------


def build_crd(spec: KindSpec, comps: Mapping[str, Schema], k8s_version: str) -> dict[str, Any]:
    """One CustomResourceDefinition from a registered kind: its stored version, and each deprecated
    version served with the same schema (KubeRay still serves v1alpha1 for old manifests; identical
    schemas need no conversion webhook)."""
    open_api = inline(spec.schema(), comps)
    subresources: dict[str, Any] = {"status": {}}
    if spec.scale is not None:
        subresources["scale"] = spec.scale.to_crd()

    def version(name: str, storage: bool) -> dict[str, Any]:
        v: dict[str, Any] = {
            "name": name,
            "served": True,
            "storage": storage,
            "schema": {"openAPIV3Schema": copy.deepcopy(open_api)},
            "subresources": copy.deepcopy(subresources),
            "additionalPrinterColumns": copy.deepcopy(list(spec.printer_columns)),
        }
        if not storage:
            v["deprecated"] = True
        return v

    names: dict[str, Any] = {
        "kind": spec.kind,
        "listKind": f"{spec.kind}List",
        "plural": spec.plural,
        "singular": spec.singular,
        "categories": list(spec.categories),
    }
    if spec.short_names:
        names["shortNames"] = list(spec.short_names)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": spec.crd_name,
            "annotations": {ANN_GENERATOR: GENERATOR, ANN_KUBERNETES_VERSION: k8s_version},
        },
        "spec": {
            "group": spec.group,
            "names": names,
            "scope": "Namespaced" if spec.namespaced else "Cluster",
            "conversion": {"strategy": "None"},
            "versions": [version(spec.version, True), *(version(v, False) for v in spec.deprecated_versions)],
        },
    }


def build_crds(
    documents: Sequence[Mapping[str, Any]], kinds: Iterable[KindSpec] = KINDS
) -> dict[str, dict[str, Any]]:
    """The CRD of every registered kind by file name, from the OpenAPI documents in REQUIRED_DOCUMENTS."""
    comps = components(documents)
    version = kubernetes_version(documents)
    return {k.crd_file: build_crd(k, comps, version) for k in kinds}


_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[misc]
    # The same converted component appears many times; anchors/aliases would make the files unreadable
    # and are not what `kubectl` users expect.
    def ignore_aliases(self, data: Any) -> bool:
        return True


HEADER: Final = "# Generated by `rayop dev gen-crds` from the Kubernetes OpenAPI document. Do not edit.\n"


def to_yaml(crd: Mapping[str, Any]) -> str:
    """Deterministic YAML: sorted keys, no line wrapping, no aliases."""
    body = yaml.dump(
        crd, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=1 << 20, allow_unicode=True
    )
    return HEADER + "---\n" + body


def render(documents: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """File name -> YAML text of the CRD of every registered kind."""
    return {name: to_yaml(crd) for name, crd in build_crds(documents).items()}


def json_size(crd: Mapping[str, Any]) -> int:
    """Size of the compact JSON the API server receives (what its request limits apply to)."""
    return len(json.dumps(crd, separators=(",", ":")).encode())
