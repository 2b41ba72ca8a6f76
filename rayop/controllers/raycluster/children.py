"""The steps that create a RayCluster's child objects other than Pods, in KubeRay's order: the autoscaler's
ServiceAccount, Role and RoleBinding, the dashboard Ingress, the auth token Secret, the head Service, the
headless worker Service, the serve Service and the GCS PVC (KubeRay `reconcileAutoscalerServiceAccount`
... `reconcileGCSPVC` in `ray-operator/controllers/ray/raycluster_controller.go`).

Each is created once and, except the Ingress, never updated: an existing object is looked up in the
label-selected cache of its kind (no API call per reconcile) and left alone. A create that finds the
object already there is not an error. Every create records KubeRay's event for it.
"""

from __future__ import annotations

import base64
import copy
import secrets

from rayop.api import constants as C
from rayop.api import spec as RS
from rayop.base.objects import annotations_of, is_controlled_by, meta, name_of, spec_of
from rayop.base.resource import Resource
from rayop.base.types import Obj
from rayop.controllers.common import ACT_CREATE, ACT_UPDATE, NORMAL, WARNING
from rayop.controllers.raycluster.step import (
    HEAD_SERVICE_EXPECTATION,
    ReconcileError,
    ReconcilePass,
    StepServices,
    autoscaling,
    ensure_owned,
)
from rayop.runtime.client import (
    INGRESSES,
    PVCS,
    ROLEBINDINGS,
    ROLES,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    ApiError,
)


def new_auth_token() -> str:
    # 32 random bytes, base64 (KubeRay's generated auth token); the randomness lives here, not in builders.
    return base64.b64encode(secrets.token_bytes(32)).decode()


class ChildObjects:
    def __init__(self, services: StepServices) -> None:
        self.s = services

    async def _ensure(
        self,
        rc: Obj,
        res: Resource,
        obj: Obj,
        *,
        created: str,
        failed: str,
        what: str,
        existing: Obj | bool | None = None,
    ) -> Obj | None:
        """Create `obj` unless it exists (given, or looked up by name). Returns the existing object."""
        s = self.s
        ensure_owned(obj, rc)
        ns, nm = meta(obj)["namespace"], meta(obj)["name"]
        if existing is None:
            existing = await self._lookup(res, ns, nm)
        if existing:
            return existing if isinstance(existing, dict) else None
        try:
            await s.client.create(res, obj, ns)
        except ApiError as e:
            if e.already_exists:
                # Not in our cache (made by someone else, without our label, or the cache lags): read it.
                return await s.client.get_or_none(res, nm, ns) if s.store.cached(res) else None
            s.writer.event(rc, WARNING, failed, ACT_CREATE, f"Failed creating {what} {ns}/{nm}, {e}")
            raise
        s.writer.event(rc, NORMAL, created, ACT_CREATE, f"Created {what} {ns}/{nm}")
        return None

    async def _lookup(self, res: Resource, namespace: str, name: str) -> Obj | None:
        """The object from our cache of that kind when there is one (no API call per reconcile), else GET."""
        if self.s.store.cached(res):
            return self.s.store.child(res, namespace, name)
        return await self.s.client.get_or_none(res, name, namespace)

    # -- the autoscaler's RBAC (KubeRay ray-operator/controllers/ray/common/rbac.go) ------------------

    async def service_account(self, p: ReconcilePass) -> None:
        rc, s = p.cluster, self.s
        if not autoscaling(rc):
            return
        sa = s.builders.service_account(rc)
        ns, nm = p.namespace, meta(sa)["name"]
        if await self._lookup(SERVICEACCOUNTS, ns, nm) is not None:
            return
        template_sa = (
            ((spec_of(rc).get("headGroupSpec") or {}).get("template") or {})
            .get("spec", {})
            .get("serviceAccountName")
        )
        user_named = bool(template_sa) and template_sa == nm
        # The user's own ServiceAccount does not carry our label, so our cache cannot show it.
        if (
            user_named
            and s.store.cached(SERVICEACCOUNTS)
            and await s.client.get_or_none(SERVICEACCOUNTS, nm, ns) is not None
        ):
            return
        if user_named:
            # A user-named ServiceAccount is the user's to create (KubeRay PR #1128): say so and stop.
            msg = (
                f"Failed to reconcile RayCluster {ns}/{p.name}. If users specify ServiceAccountName for the "
                f"head Pod, they need to create a ServiceAccount themselves. However, ServiceAccount {nm} is not "
                "found. Please create one."
            )
            s.writer.event(rc, WARNING, C.EV_AUTOSCALER_SA_NOT_FOUND, ACT_CREATE, msg)
            raise ReconcileError(msg)
        await self._ensure(
            rc,
            SERVICEACCOUNTS,
            sa,
            created=C.EV_CREATED_SERVICE_ACCOUNT,
            failed=C.EV_FAILED_CREATE_SERVICE_ACCOUNT,
            what="service account",
            existing=False,
        )

    async def role(self, p: ReconcilePass) -> None:
        rc = p.cluster
        if not autoscaling(rc):
            return
        await self._ensure(
            rc,
            ROLES,
            self.s.builders.role(rc),
            created=C.EV_CREATED_ROLE,
            failed=C.EV_FAILED_CREATE_ROLE,
            what="role",
        )

    async def role_binding(self, p: ReconcilePass) -> None:
        rc = p.cluster
        if not autoscaling(rc):
            return
        await self._ensure(
            rc,
            ROLEBINDINGS,
            self.s.builders.role_binding(rc),
            created=C.EV_CREATED_ROLE_BINDING,
            failed=C.EV_FAILED_CREATE_ROLE_BINDING,
            what="role binding",
        )

    # -- the dashboard Ingress (KubeRay ray-operator/controllers/ray/common/ingress.go) -----------------

    async def ingress(self, p: ReconcilePass) -> None:
        rc, s = p.cluster, self.s
        head = spec_of(rc).get("headGroupSpec") or {}
        if head.get("enableIngress") is not True:
            return
        ing = ensure_owned(s.builders.ingress(rc), rc)
        existing = await self._ensure(
            rc,
            INGRESSES,
            ing,
            created=C.EV_CREATED_INGRESS,
            failed=C.EV_FAILED_CREATE_INGRESS,
            what="ingress",
        )
        if existing is None:
            return
        if not is_controlled_by(existing, rc):
            s.writer.event(
                rc,
                WARNING,
                C.EV_FAILED_CREATE_INGRESS,
                ACT_CREATE,
                f"Ingress {meta(existing).get('namespace')}/{meta(existing).get('name')} exists and is not "
                "owned by this RayCluster; leaving it untouched",
            )
            return
        # Keep labels, annotations and spec in line with the RayCluster (KubeRay updates the Ingress in place).
        want_md, have_md = meta(ing), meta(existing)
        if (
            existing.get("spec") != ing.get("spec")
            or (have_md.get("labels") or {}) != (want_md.get("labels") or {})
            or (have_md.get("annotations") or {}) != (want_md.get("annotations") or {})
        ):
            upd = copy.deepcopy(existing)
            upd["spec"] = ing.get("spec")
            upd["metadata"]["labels"] = want_md.get("labels") or {}
            upd["metadata"]["annotations"] = want_md.get("annotations") or {}
            await s.client.replace(INGRESSES, upd)
            s.writer.event(
                rc,
                NORMAL,
                C.EV_UPDATED_INGRESS,
                ACT_UPDATE,
                f"Updated ingress {have_md.get('namespace')}/{have_md.get('name')}",
            )

    # -- the auth token Secret (authOptions.mode: token) -----------------------------------------------

    async def auth_secret(self, p: ReconcilePass) -> None:
        rc, s = p.cluster, self.s
        if not s.builders.needs_auth_secret(rc):
            return
        # The token is drawn here, not in the builder: builders are pure. It is only used when the Secret
        # does not exist yet, so an existing token is never rotated behind Ray's back.
        secret = s.builders.auth_secret(rc, new_auth_token())
        await self._ensure(
            rc,
            SECRETS,
            secret,
            created=C.EV_CREATED_SECRET,
            failed=C.EV_FAILED_CREATE_SECRET,
            what="secret",
        )

    # -- Services (KubeRay ray-operator/controllers/ray/common/service.go) ------------------------------

    async def head_service(self, p: ReconcilePass) -> None:
        rc, s = p.cluster, self.s
        found = s.store.head_services(p.namespace, p.name)
        if len(found) == 1:
            return
        if len(found) > 1:
            raise ReconcileError(f"{len(found)} head services found {[name_of(x) for x in found]}")
        svc = s.builders.head_service(rc, s.opts)
        if not (svc.get("spec") or {}).get("ports"):
            raise ReconcileError("ray head service does not have any ports set up")
        await self._ensure(
            rc,
            SERVICES,
            svc,
            created=C.EV_CREATED_SERVICE,
            failed=C.EV_FAILED_CREATE_SERVICE,
            what="service",
            existing=False,
        )
        # A lagging cache makes later passes try again (409); that must not restart the expectation's clock.
        if not s.expectations.pending(p.key, HEAD_SERVICE_EXPECTATION):
            s.expectations.expect_create(p.key, HEAD_SERVICE_EXPECTATION, name_of(svc))

    async def headless_worker_service(self, p: ReconcilePass) -> None:
        rc = p.cluster
        if not any(int(g.get("numOfHosts") or 1) > 1 for g in spec_of(rc).get("workerGroupSpecs") or []):
            return
        svc = self.s.builders.headless_worker_service(rc)
        await self._ensure_cached_service(p, svc)

    async def serve_service(self, p: ReconcilePass) -> None:
        rc = p.cluster
        if (meta(rc).get("annotations") or {}).get(C.ANN_ENABLE_SERVE_SERVICE) != "true":
            return
        svc = self.s.builders.serve_service(rc)
        if svc is None:
            raise ReconcileError("the serve service needs a port named serve on the head Ray container")
        await self._ensure_cached_service(p, svc)

    async def _ensure_cached_service(self, p: ReconcilePass, svc: Obj) -> None:
        names = {name_of(x) for x in self.s.store.cluster_services(p.namespace, p.name)}
        await self._ensure(
            p.cluster,
            SERVICES,
            svc,
            created=C.EV_CREATED_SERVICE,
            failed=C.EV_FAILED_CREATE_SERVICE,
            what="service",
            existing=True if name_of(svc) in names else None,
        )

    # -- the GCS PVC (gcsFaultToleranceOptions with the RocksDB backend) -------------------------------

    async def gcs_pvc(self, p: ReconcilePass) -> None:
        rc, s = p.cluster, self.s
        if RS.gcs_ft_backend(spec_of(rc), annotations_of(rc)) != C.GCS_BACKEND_ROCKSDB:
            return
        storage = (spec_of(rc).get("gcsFaultToleranceOptions") or {}).get("storage") or {}
        if storage.get("claimName"):
            return  # bring-your-own claim: the user owns it
        pvc = s.builders.gcs_pvc(rc)
        if pvc is None:
            return
        if storage.get("deletionPolicy") == "Retain":
            # A retained PVC must outlive the RayCluster: no ownerReference, so no garbage collection.
            pvc.setdefault("metadata", {})["namespace"] = p.namespace
            if await self._lookup(PVCS, p.namespace, meta(pvc)["name"]) is not None:
                return
            try:
                await s.client.create(PVCS, pvc, p.namespace)
            except ApiError as e:
                if not e.already_exists:
                    s.writer.event(
                        rc, WARNING, C.EV_FAILED_CREATE_PVC, ACT_CREATE, f"Failed creating PVC, {e}"
                    )
                    raise
                return
            s.writer.event(rc, NORMAL, C.EV_CREATED_PVC, ACT_CREATE, f"Created PVC {meta(pvc)['name']}")
            return
        await self._ensure(
            rc,
            PVCS,
            pvc,
            created=C.EV_CREATED_PVC,
            failed=C.EV_FAILED_CREATE_PVC,
            what="persistent volume claim",
        )
