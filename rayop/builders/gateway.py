"""Pure builders and readers for a RayService's incremental upgrade (`NewClusterWithIncrementalUpgrade`):
its Gateway `<rayservice>-gateway`, its HTTPRoute `<rayservice>-httproute` with one weighted backend per
RayCluster, and each RayCluster's own serve Service `<cluster>-serve-svc` that the backends name.

Names, listener, match and owners are KubeRay's (`ray-operator/controllers/ray/rayservice_controller.go`
createGateway, createHTTPRoute, reconcilePerClusterServeService; `common/service.go` BuildServeService).
rayop adds the originated-from labels to the Gateway and HTTPRoute, and records on the HTTPRoute when its
weights last changed (`rayop.io/traffic-migrated-at`), in the same write as the weights.

The traffic split itself is done by whatever Gateway implementation the cluster runs; rayop only writes
the weights and reads the conditions that implementation reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rayop.api import constants as C
from rayop.base.objects import annotations_of, meta, name_of, namespace_of
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders import rayservice as B

GROUP: Final = "gateway.networking.k8s.io"
API_VERSION: Final = f"{GROUP}/v1"


def gateway_name(rayservice: Mapping[str, Any]) -> str:
    return f"{name_of(rayservice)}-gateway"


def httproute_name(rayservice: Mapping[str, Any]) -> str:
    return f"{name_of(rayservice)}-httproute"


def cluster_serve_service_name(cluster_name: str) -> str:
    """utils.GenerateServeServiceName of the cluster: `<cluster>-serve-svc`."""
    return f"{cluster_name}-serve-svc"


def gateway_class(rayservice: Mapping[str, Any]) -> str:
    opts = ((rayservice.get("spec") or {}).get("upgradeStrategy") or {}).get("clusterUpgradeOptions") or {}
    return str(opts.get("gatewayClassName") or "")


# The Gateway ----------------------------------------------------------------------------------------------


def build_gateway(rayservice: Mapping[str, Any]) -> Obj:
    """One HTTP listener `http` on port 80, of the RayService's `gatewayClassName`."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Gateway",
        "metadata": {
            "name": gateway_name(rayservice),
            "namespace": namespace_of(rayservice),
            "labels": B.originated_labels(rayservice),
            "ownerReferences": [B.owner_reference(rayservice)],
        },
        "spec": {
            "gatewayClassName": gateway_class(rayservice),
            "listeners": [
                {"name": C.GATEWAY_LISTENER_NAME, "protocol": "HTTP", "port": C.GATEWAY_LISTENER_PORT}
            ],
        },
    }


def _gateway_key(gw: Mapping[str, Any]) -> tuple[Any, ...]:
    spec = gw.get("spec") or {}
    return (
        spec.get("gatewayClassName"),
        tuple(
            (lst.get("name"), lst.get("protocol"), lst.get("port"))
            for lst in spec.get("listeners") or []
            if isinstance(lst, Mapping)
        ),
    )


def gateway_matches(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Whether the Gateway says what rayop wants, ignoring what the API server defaults (allowedRoutes)."""
    return _gateway_key(have) == _gateway_key(want)


def updated_gateway(have: Mapping[str, Any], want: Mapping[str, Any]) -> Obj:
    """`have` with the wanted spec (its resourceVersion kept, so the update is refused if it changed)."""
    out: Obj = {k: v for k, v in have.items() if k != "status"}
    out["spec"] = dict(want.get("spec") or {})
    return out


# The HTTPRoute --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """One weighted backend of the HTTPRoute: a RayCluster's serve Service."""

    service: str
    port: int
    weight: int


def build_httproute(
    rayservice: Mapping[str, Any], backends: Sequence[Backend], migrated_at: str | None
) -> Obj:
    """Prefix `/` to the backends, in order (the active cluster first), attached to the Gateway."""
    ns = namespace_of(rayservice)
    md: Obj = {
        "name": httproute_name(rayservice),
        "namespace": ns,
        "labels": B.originated_labels(rayservice),
        "ownerReferences": [B.owner_reference(rayservice)],
    }
    if migrated_at:
        md["annotations"] = {C.ANN_TRAFFIC_MIGRATED_AT: migrated_at}
    return {
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": md,
        "spec": {
            "parentRefs": [{"name": gateway_name(rayservice), "namespace": ns}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": b.service, "namespace": ns, "port": b.port, "weight": b.weight}
                        for b in backends
                    ],
                }
            ],
        },
    }


def route_backends(route: Mapping[str, Any] | None) -> list[Backend]:
    """The backends of the route's first rule (the one rayop writes); weight 1 when unset, as the API says."""
    rules = ((route or {}).get("spec") or {}).get("rules") or []
    if not rules or not isinstance(rules[0], Mapping):
        return []
    out = []
    for ref in rules[0].get("backendRefs") or []:
        if not isinstance(ref, Mapping):
            continue
        weight = ref.get("weight")
        port = ref.get("port")
        out.append(
            Backend(
                service=str(ref.get("name") or ""),
                port=port if isinstance(port, int) else 0,
                weight=weight if isinstance(weight, int) and not isinstance(weight, bool) else 1,
            )
        )
    return out


def route_weight(route: Mapping[str, Any] | None, service: str) -> int | None:
    """The route's weight for that Service, as a percentage of the total; None when it is not a backend."""
    backends = route_backends(route)
    total = sum(max(b.weight, 0) for b in backends)
    for b in backends:
        if b.service == service:
            return round(100 * max(b.weight, 0) / total) if total else 0
    return None


def migrated_at(route: Mapping[str, Any] | None) -> str | None:
    v = annotations_of(route or {}).get(C.ANN_TRAFFIC_MIGRATED_AT)
    return str(v) if v else None


def _route_key(route: Mapping[str, Any]) -> tuple[Any, ...]:
    spec = route.get("spec") or {}
    parents = tuple(
        (p.get("name"), p.get("namespace")) for p in spec.get("parentRefs") or [] if isinstance(p, Mapping)
    )
    rules = spec.get("rules") or []
    first = rules[0] if rules and isinstance(rules[0], Mapping) else {}
    matches = tuple(
        ((m.get("path") or {}).get("type"), (m.get("path") or {}).get("value"))
        for m in first.get("matches") or []
        if isinstance(m, Mapping)
    )
    return parents, matches, len(rules), tuple(route_backends(route)), migrated_at(route)


def route_matches(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Whether the route says what rayop wants: parent, match, backends and weights, and the migration time
    (what the API server defaults, such as the refs' group and kind, is left out)."""
    return _route_key(have) == _route_key(want)


def updated_route(have: Mapping[str, Any], want: Mapping[str, Any]) -> Obj:
    """`have` with the wanted spec and migration time (its resourceVersion kept)."""
    out: Obj = {k: v for k, v in have.items() if k != "status"}
    md = dict(out.get("metadata") or {})
    annotations = {str(k): str(v) for k, v in annotations_of(have).items()}
    wanted = migrated_at(want)
    if wanted:
        annotations[C.ANN_TRAFFIC_MIGRATED_AT] = wanted
    md["annotations"] = annotations
    out["metadata"] = md
    out["spec"] = dict(want.get("spec") or {})
    return out


# Conditions the Gateway implementation reports ------------------------------------------------------------


def _condition(conds: Any, ctype: str) -> Mapping[str, Any] | None:
    for c in conds or []:
        if isinstance(c, Mapping) and c.get("type") == ctype:
            return c
    return None


def _current(c: Mapping[str, Any], generation: Any) -> bool:
    """A condition about an older generation of the object says nothing about the current one."""
    seen = c.get("observedGeneration")
    return not isinstance(seen, int) or not isinstance(generation, int) or seen >= generation


def _unmet(conds: Any, types: Sequence[str], generation: Any) -> list[str]:
    out = []
    for t in types:
        c = _condition(conds, t)
        if c is None:
            out.append(f"not {t} yet")
        elif c.get("status") != "True":
            detail = ": ".join(str(x) for x in (c.get("reason"), c.get("message")) if x)
            out.append(f"{t} is {c.get('status')}" + (f" ({detail})" if detail else ""))
        elif not _current(c, generation):
            out.append(f"{t} not yet reported for generation {generation}")
    return out


def gateway_problem(gw: Mapping[str, Any] | None) -> str:
    """ "" when the Gateway is Accepted and Programmed (for its current generation), else why not."""
    if gw is None:
        return "it does not exist yet"
    unmet = _unmet(
        (gw.get("status") or {}).get("conditions"), ("Accepted", "Programmed"), meta(gw).get("generation")
    )
    return "; ".join(unmet)


def route_problem(route: Mapping[str, Any] | None, gateway: str) -> str:
    """ "" when the Gateway `gateway` has Accepted the route and resolved its references (for the route's
    current generation, so the weights just written are the ones in force), else why not."""
    if route is None:
        return "it does not exist yet"
    ns = namespace_of(route)
    for parent in (route.get("status") or {}).get("parents") or []:
        if not isinstance(parent, Mapping):
            continue
        ref = parent.get("parentRef") or {}
        if ref.get("name") != gateway or (ref.get("namespace") or ns) != ns:
            continue
        if (ref.get("kind") or "Gateway") != "Gateway":
            continue
        unmet = _unmet(parent.get("conditions"), ("Accepted", "ResolvedRefs"), meta(route).get("generation"))
        return "; ".join(unmet)
    return f"no status from Gateway {gateway} yet"


# The per-cluster serve Service ----------------------------------------------------------------------------


def build_cluster_serve_service(rayservice: Mapping[str, Any], cluster: Mapping[str, Any]) -> Obj:
    """`<cluster>-serve-svc`: the RayService's serve Service (its `serveService` customisation, the serve
    ports, selector `ray.io/cluster=<cluster>`, `ray.io/serve=true`) under the cluster's name, owned by
    the RayCluster so it goes with it. Raises ServeConfigError without a port named `serve`."""
    svc = B.build_serve_service(rayservice, cluster)
    name = name_of(cluster)
    md = dict(svc.get("metadata") or {})
    md["name"] = cluster_serve_service_name(name)
    md["labels"] = {
        **(md.get("labels") or {}),
        C.LABEL_ORIGINATED_FROM_CR_NAME: name,
        C.LABEL_ORIGINATED_FROM_CRD: C.KIND_RAYSERVICE,
        C.LABEL_SERVE: f"{name}-serve",
    }
    md["ownerReferences"] = [cl.owner_reference(cluster)]
    svc["metadata"] = md
    return svc


def serve_port(cluster: Mapping[str, Any]) -> int:
    """The port the cluster's serve Service listens on (the head container's `serve` port, 8000 by default)."""
    head = (((cluster.get("spec") or {}).get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    containers = head.get("containers") or []
    return B.container_port({"spec": {"containers": containers[:1]}}, C.PORT_NAME_SERVE, C.PORT_SERVE)
