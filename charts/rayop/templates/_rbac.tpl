{{/* The operator's permissions on the objects it manages, granted by a ClusterRole (watching every
namespace) or by one Role per watched namespace. Each rule is what the operator was seen to use
(tests/e2e/test_least_privilege.py checks that against the API server's audit log); no wildcards. */}}
{{- define "rayop.rules" -}}
# Ray Pods: created and deleted one by one, deleted all at once when a cluster is suspended. patch
# (and pods/resize) only because the autoscaler's Role grants them: RBAC lets the operator grant no
# more than it holds.
- apiGroups: [""]
  resources: [pods]
  verbs: [create, delete, deletecollection, get, list, patch, watch]
- apiGroups: [""]
  resources: [pods/resize]
  verbs: [patch]
# Head and serve Services; a RayJob's submitter reaches the dashboard through the service proxy.
- apiGroups: [""]
  resources: [services]
  verbs: [create, get, list, patch, watch]
# A RayService points its serve Service at the new cluster with a PUT and deletes the old one's.
- apiGroups: [""]
  resources: [services]
  verbs: [delete, update]
# A RayService counts the ready endpoints of its serve Service.
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
# The web view lists the events of the object it shows.
- apiGroups: [""]
  resources: [events]
  verbs: [list]
# With useKubernetesProxy, Ray is reached through the API server's proxies: a head's dashboard
# through its Service (GET Serve's and Ray's state, POST jobs and node drains, PUT a RayService's Serve
# config), and a RayService's Serve proxies (/-/healthz, request metrics) through their Pods.
- apiGroups: [""]
  resources: [services/proxy]
  verbs: [create, get, update]
- apiGroups: [""]
  resources: [pods/proxy]
  verbs: [get]
# The autoscaler's ServiceAccount, the auth-token Secret, the GCS fault-tolerance PVC.
- apiGroups: [""]
  resources: [serviceaccounts, secrets, persistentvolumeclaims]
  verbs: [create, get, list, watch]
# The autoscaler's Role and RoleBinding in the cluster's namespace.
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [create, get, list, watch]
# RayJob submitter Jobs (deleted when a RayJob is suspended or retried) and the GCS
# fault-tolerance Redis cleanup Job.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [create, delete, list, watch]
# The head Ingress (spec.headGroupSpec.enableIngress), put back in place when edited. get, here and
# above: after a create finds an object of that name that the label-selected cache does not hold.
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [create, get, list, update, watch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# A RayJob creates, suspends (a JSON patch) and deletes its RayCluster, and may delete itself
# (deletion policy DeleteSelf); finalizers are merge patches; status is written with PUT.
- apiGroups: [ray.io]
  resources: [rayclusters]
  verbs: [create, delete, get, list, patch, watch]
# A RayService replaces its pending cluster's spec in place (a PUT) when only its workers changed.
- apiGroups: [ray.io]
  resources: [rayclusters]
  verbs: [update]
- apiGroups: [ray.io]
  resources: [rayjobs]
  verbs: [delete, get, list, patch, watch]
- apiGroups: [ray.io]
  resources: [rayservices]
  verbs: [get, list, patch, watch]
- apiGroups: [ray.io]
  resources: [rayclusters/status, rayjobs/status, rayservices/status]
  verbs: [update]
# A RayService upgraded with NewClusterWithIncrementalUpgrade: its Gateway and HTTPRoute, read from the
# API server at each pass (no cache), created, and replaced with a PUT as traffic moves between clusters.
# Deleted by the garbage collector with the RayService that owns them.
- apiGroups: [gateway.networking.k8s.io]
  resources: [gateways, httproutes]
  verbs: [create, get, update]
# One RayWorkerGroup per worker group of a RayCluster or RayService (the scale target of kubectl scale
# and the HPA), kept and removed with the groups.
- apiGroups: [rayop.io]
  resources: [rayworkergroups]
  verbs: [create, delete, get, list, patch, watch]
- apiGroups: [rayop.io]
  resources: [rayworkergroups/status]
  verbs: [update]
# One RayServeDeployment per Serve deployment of a RayService (the scale target of an HPA on Serve
# replicas), kept and removed with the deployments Ray reports.
- apiGroups: [rayop.io]
  resources: [rayservedeployments]
  verbs: [create, delete, get, list, patch, watch]
- apiGroups: [rayop.io]
  resources: [rayservedeployments/status]
  verbs: [update]
# Needed to set blockOwnerDeletion on the objects a RayCluster or RayJob owns where the
# OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift).
- apiGroups: [ray.io]
  resources: [rayclusters/finalizers, rayjobs/finalizers, rayservices/finalizers]
  verbs: [update]
# The same for the drain Pods a RayWorkerGroup owns.
- apiGroups: [rayop.io]
  resources: [rayworkergroups/finalizers]
  verbs: [update]
{{- end -}}

{{/* Leader election, in the namespace of the Lease (the release namespace). */}}
{{- define "rayop.leaderElectionRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create, get, update]
{{- end -}}
