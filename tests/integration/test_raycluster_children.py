"""The RayCluster's less common children against a real API server: the head Ingress (created, then put
back when edited), the GCS fault-tolerance PVC, and objects of the names the operator wants that
somebody else made first (left untouched, the cluster still comes up).

Besides the behaviour, these are the paths on which the operator uses its `create`/`update` on
Ingresses, `create` on PVCs and `get` on the kinds it caches by label, so the least-privilege test
(tests/e2e/test_least_privilege.py) sees those permissions used.
"""

from __future__ import annotations

import copy
from typing import Any

from rayop.api import features
from rayop.runtime.client import (
    INGRESSES,
    PVCS,
    ROLEBINDINGS,
    ROLES,
    SECRETS,
    SERVICEACCOUNTS,
    ApiClient,
)
from tests.helpers import eventually
from tests.integration.events import wait_event
from tests.integration.rayclusters import RAYCLUSTERS, operator, pods_of, raycluster

T = 60.0


def with_ingress(rc: dict[str, Any]) -> dict[str, Any]:
    rc["spec"]["headGroupSpec"]["enableIngress"] = True
    return rc


async def test_head_ingress_is_created_and_put_back_when_edited(kube: ApiClient, namespace: str) -> None:
    ns = namespace
    async with operator(kube, ns):
        await kube.create(RAYCLUSTERS, with_ingress(raycluster("ing", ns, replicas=0)))
        ing = await eventually(lambda: kube.get_or_none(INGRESSES, "ing-head-ingress", ns), T, what="ingress")
        assert ing["metadata"]["ownerReferences"][0]["name"] == "ing"
        want = copy.deepcopy(ing["spec"])
        edited = copy.deepcopy(ing)
        edited["spec"]["rules"][0]["http"]["paths"][0]["path"] = "/somewhere-else"
        await kube.replace(INGRESSES, edited)

        async def restored() -> bool:
            now = await kube.get(INGRESSES, "ing-head-ingress", ns)
            return bool(now["spec"] == want)

        await eventually(restored, T, what="ingress spec put back")
        # Events are written after the change they report (and paced while the client is busy).
        await wait_event(kube, ns, "ing", "UpdatedIngress", timeout=T)


async def test_gcs_embedded_storage_gets_its_pvc(kube: ApiClient, namespace: str) -> None:
    ns = namespace
    rc = raycluster("rocks", ns, replicas=0)
    rc["spec"]["gcsFaultToleranceOptions"] = {"backend": "rocksdb", "storage": {"size": "1Gi"}}
    async with operator(kube, ns, gates={features.GCS_FT_EMBEDDED_STORAGE: True}):
        await kube.create(RAYCLUSTERS, rc)
        pvc = await eventually(lambda: kube.get_or_none(PVCS, "rocks-gcs-pvc", ns), T, what="GCS PVC")
        assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
        assert pvc["metadata"]["ownerReferences"][0]["name"] == "rocks"


async def test_objects_someone_else_made_first_are_left_alone(kube: ApiClient, namespace: str) -> None:
    ns = namespace
    name = "taken"
    foreign = {"labels": {"made-by": "someone-else"}}
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    made = [
        (SERVICEACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount"}),
        (ROLES, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "rules": rules}),
        (
            ROLEBINDINGS,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
            },
        ),
        (SECRETS, {"apiVersion": "v1", "kind": "Secret", "stringData": {"auth_token": "theirs"}}),
    ]
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "spec": {"defaultBackend": {"service": {"name": "elsewhere", "port": {"number": 80}}}},
    }
    made.append((INGRESSES, ingress))
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    made.append((PVCS, pvc))
    before = {}
    for res, body in made:
        obj_name = _name_of(res, name)
        created = await kube.create(res, {**body, "metadata": {"name": obj_name, **foreign}}, ns)
        before[res.plural] = created["metadata"]["resourceVersion"]

    rc = with_ingress(raycluster(name, ns, replicas=1))
    rc["spec"]["enableInTreeAutoscaling"] = True
    rc["spec"]["authOptions"] = {"mode": "token"}
    rc["spec"]["gcsFaultToleranceOptions"] = {"backend": "rocksdb"}
    async with operator(kube, ns, gates={features.GCS_FT_EMBEDDED_STORAGE: True}):
        await kube.create(RAYCLUSTERS, rc)
        # The cluster comes up with what exists ...
        await eventually(lambda: pods_of(kube, ns, name, "head"), T, what="head pod")
        await wait_event(kube, ns, name, "FailedToCreateIngress", timeout=T)
    # ... and nothing of theirs was changed or adopted.
    for res, _ in made:
        obj_name = _name_of(res, name)
        now = await kube.get(res, obj_name, ns)
        assert now["metadata"]["resourceVersion"] == before[res.plural], res.plural
        assert not now["metadata"].get("ownerReferences"), res.plural


def _name_of(res: Any, cluster: str) -> str:
    return {INGRESSES.plural: f"{cluster}-head-ingress", PVCS.plural: f"{cluster}-gcs-pvc"}.get(
        res.plural, cluster
    )
