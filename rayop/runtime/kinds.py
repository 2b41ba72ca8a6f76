"""The built-in Kubernetes kinds the runtime and its users touch."""

from __future__ import annotations

from rayop.base.resource import Resource

# Ray kinds are declared with their schemas in rayop.api.kinds.
PODS = Resource("", "v1", "pods", kind="Pod")
SERVICES = Resource("", "v1", "services", kind="Service")
SECRETS = Resource("", "v1", "secrets", kind="Secret")
CONFIGMAPS = Resource("", "v1", "configmaps", kind="ConfigMap")
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", kind="ServiceAccount")
PVCS = Resource("", "v1", "persistentvolumeclaims", kind="PersistentVolumeClaim")
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False, kind="Namespace")
NODES = Resource("", "v1", "nodes", namespaced=False, kind="Node")
ENDPOINTS = Resource("", "v1", "endpoints", kind="Endpoints")
CORE_EVENTS = Resource("", "v1", "events", kind="Event")
EVENTS = Resource("events.k8s.io", "v1", "events", kind="Event")
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", kind="EndpointSlice")
JOBS = Resource("batch", "v1", "jobs", kind="Job")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", kind="Role")
ROLEBINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", kind="RoleBinding")
INGRESSES = Resource("networking.k8s.io", "v1", "ingresses", kind="Ingress")
LEASES = Resource("coordination.k8s.io", "v1", "leases", kind="Lease")
# Gateway API (sigs.k8s.io/gateway-api, standard channel): CRDs a cluster may or may not have installed.
GATEWAYCLASSES = Resource(
    "gateway.networking.k8s.io", "v1", "gatewayclasses", namespaced=False, kind="GatewayClass"
)
GATEWAYS = Resource("gateway.networking.k8s.io", "v1", "gateways", kind="Gateway")
HTTPROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes", kind="HTTPRoute")
CRDS = Resource(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    namespaced=False,
    kind="CustomResourceDefinition",
)
VALIDATING_WEBHOOKS = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingwebhookconfigurations",
    namespaced=False,
    kind="ValidatingWebhookConfiguration",
)
