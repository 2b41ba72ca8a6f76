"""Pure builders: the objects the controllers create, computed from a spec and the operator's options.

No I/O and no randomness (the callers draw names and tokens), so each is checked against hand-written
expectations (`tests/golden/`) and against a real API server's validation.

options        operator-level knobs that change what is built (KubeRay's env vars, the config file)
cluster        shared RayCluster helpers: names, desired replicas, hashes, pod health
pod            head and worker Pods: ray start command, env, probes, init container, autoscaler sidecar
service        head, serve and headless worker Services
rbac           the autoscaler's ServiceAccount, Role and RoleBinding
ingress        the dashboard Ingress
secrets        the token auth Secret
storage        the GCS PVC (RocksDB fault tolerance)
redis_cleanup  the Job that empties Redis after a GCS-FT cluster is deleted
status         the RayCluster status and when it is worth writing
rayjob         RayJob: the submitter Job and command, the per-attempt RayCluster, the HTTP submit body
quantity       Kubernetes quantities with exact decimal math
"""
