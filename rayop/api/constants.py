"""Names and strings that users, Ray and Ray's autoscaler see, spelled exactly as KubeRay spells them.

Source: KubeRay `ray-operator/controllers/ray/utils/constant.go` (docs/compatibility.md). Changing any value
here breaks drop-in compatibility.
"""

from typing import Final

GROUP: Final = "ray.io"
VERSION: Final = "v1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
ALPHA_VERSION: Final = "v1alpha1"
KIND_RAYCLUSTER: Final = "RayCluster"
KIND_RAYJOB: Final = "RayJob"
KIND_RAYSERVICE: Final = "RayService"
PLURAL_RAYCLUSTERS: Final = "rayclusters"
PLURAL_RAYJOBS: Final = "rayjobs"
PLURAL_RAYSERVICES: Final = "rayservices"

KUBERAY_VERSION: Final = "v1.7.0"
OPERATOR_NAME: Final = "kuberay-operator"
FIELD_MANAGER: Final = "rayop"
LEADER_ELECTION_ID: Final = "ray-operator-leader"

# Labels
LABEL_IS_RAY_NODE: Final = "ray.io/is-ray-node"
LABEL_CLUSTER: Final = "ray.io/cluster"
LABEL_NODE_TYPE: Final = "ray.io/node-type"
LABEL_GROUP: Final = "ray.io/group"
LABEL_IDENTIFIER: Final = "ray.io/identifier"
LABEL_APP_NAME: Final = "app.kubernetes.io/name"
LABEL_CREATED_BY: Final = "app.kubernetes.io/created-by"
LABEL_SERVE: Final = "ray.io/serve"
LABEL_HEADLESS_WORKER_SVC: Final = "ray.io/headless-worker-svc"
LABEL_WORKER_GROUP_REPLICA_INDEX: Final = "ray.io/worker-group-replica-index"
LABEL_WORKER_GROUP_REPLICA_NAME: Final = "ray.io/worker-group-replica-name"
LABEL_REPLICA_HOST_INDEX: Final = "ray.io/replica-host-index"
LABEL_ORIGINATED_FROM_CR_NAME: Final = "ray.io/originated-from-cr-name"
LABEL_ORIGINATED_FROM_CRD: Final = "ray.io/originated-from-crd"
LABEL_JOB_SUBMISSION_MODE: Final = "ray.io/job-submission-mode"
APP_NAME_VALUE: Final = "kuberay"
CREATED_BY_VALUE: Final = OPERATOR_NAME
NODE_TYPE_HEAD: Final = "head"
NODE_TYPE_WORKER: Final = "worker"
NODE_TYPE_REDIS_CLEANUP: Final = "redis-cleanup"
HEAD_GROUP_NAME: Final = "headgroup"

# Annotations
ANN_FT_ENABLED: Final = "ray.io/ft-enabled"
ANN_EXTERNAL_STORAGE_NAMESPACE: Final = "ray.io/external-storage-namespace"
ANN_OVERWRITE_CONTAINER_CMD: Final = "ray.io/overwrite-container-cmd"
ANN_UPGRADE_RECREATE_HASH: Final = "ray.io/upgrade-strategy-recreate-hash"
ANN_KUBERAY_VERSION: Final = "ray.io/kuberay-version"
ANN_ENABLE_SERVE_SERVICE: Final = "ray.io/enable-serve-service"
ANN_GCS_FT_DELETION_TIMEOUT: Final = "ray.io/gcs-ft-deletion-timeout"
ANN_DISABLE_PROVISIONED_HEAD_RESTART: Final = "ray.io/disable-provisioned-head-restart"
ANN_HASH_WITHOUT_REPLICAS: Final = "ray.io/hash-without-replicas-and-workers-to-delete"
ANN_NUM_WORKER_GROUPS: Final = "ray.io/num-worker-groups"
ANN_INITIALIZING_TIMEOUT: Final = "ray.io/initializing-timeout"

# GCS fault-tolerance backends (gcsFaultToleranceOptions.backend)
GCS_BACKEND_REDIS: Final = "redis"
GCS_BACKEND_ROCKSDB: Final = "rocksdb"

# Finalizers
FINALIZER_GCS_FT_REDIS_CLEANUP: Final = "ray.io/gcs-ft-redis-cleanup-finalizer"
FINALIZER_RAYJOB: Final = "ray.io/rayjob-finalizer"
FINALIZER_RAYSERVICE: Final = "ray.io/rayservice-finalizer"

# managedBy values
MANAGED_BY_KUBERAY: Final = "ray.io/kuberay-operator"
MANAGED_BY_MULTIKUEUE: Final = "kueue.x-k8s.io/multikueue"

# Ports
PORT_CLIENT: Final = 10001
PORT_GCS: Final = 6379
PORT_DASHBOARD: Final = 8265
PORT_METRICS: Final = 8080
PORT_SERVE: Final = 8000
PORT_DASHBOARD_AGENT: Final = 52365
DEFAULT_HEAD_PORTS: Final = {
    "client": PORT_CLIENT,
    "gcs-server": PORT_GCS,
    "dashboard": PORT_DASHBOARD,
    "metrics": PORT_METRICS,
    "serve": PORT_SERVE,
}

# Container / volume names
RAY_CONTAINER_INDEX: Final = 0
AUTOSCALER_CONTAINER_NAME: Final = "autoscaler"
INIT_CONTAINER_WAIT_GCS: Final = "wait-gcs-ready"
SUBMITTER_CONTAINER_NAME: Final = "ray-job-submitter"
SHM_VOLUME_NAME: Final = "shared-mem"
SHM_MOUNT_PATH: Final = "/dev/shm"
RAY_LOGS_VOLUME_NAME: Final = "ray-logs"
RAY_LOGS_MOUNT_PATH: Final = "/tmp/ray"
GCS_STORAGE_VOLUME_NAME: Final = "gcs-storage"
GCS_STORAGE_MOUNT_PATH: Final = "/data/gcs"

# Env vars injected into Ray containers
ENV_FQ_RAY_IP: Final = "FQ_RAY_IP"
ENV_RAY_IP: Final = "RAY_IP"
ENV_RAY_CLUSTER_NAME: Final = "RAY_CLUSTER_NAME"
ENV_RAY_CLUSTER_NAMESPACE: Final = "RAY_CLUSTER_NAMESPACE"
ENV_RAY_CLOUD_INSTANCE_ID: Final = "RAY_CLOUD_INSTANCE_ID"
ENV_RAY_NODE_TYPE_NAME: Final = "RAY_NODE_TYPE_NAME"
ENV_KUBERAY_GEN_RAY_START_CMD: Final = "KUBERAY_GEN_RAY_START_CMD"
ENV_RAY_PORT: Final = "RAY_PORT"
ENV_RAY_ADDRESS: Final = "RAY_ADDRESS"
ENV_USAGE_STATS_KUBERAY_IN_USE: Final = "RAY_USAGE_STATS_KUBERAY_IN_USE"
ENV_USAGE_STATS_EXTRA_TAGS: Final = "RAY_USAGE_STATS_EXTRA_TAGS"
ENV_DASHBOARD_ENABLE_K8S_DISK_USAGE: Final = "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE"
ENV_ENABLE_AUTOSCALER_V2: Final = "RAY_enable_autoscaler_v2"
ENV_GCS_RECONNECT_TIMEOUT: Final = "RAY_gcs_rpc_server_reconnect_timeout_s"
ENV_EXTERNAL_STORAGE_NAMESPACE: Final = "RAY_external_storage_namespace"
ENV_REDIS_ADDRESS: Final = "RAY_REDIS_ADDRESS"
ENV_REDIS_USERNAME: Final = "REDIS_USERNAME"
ENV_REDIS_PASSWORD: Final = "REDIS_PASSWORD"
ENV_GCS_STORAGE: Final = "RAY_gcs_storage"
ENV_GCS_STORAGE_PATH: Final = "RAY_gcs_storage_path"
ENV_AUTH_MODE: Final = "RAY_AUTH_MODE"
ENV_AUTH_TOKEN: Final = "RAY_AUTH_TOKEN"
ENV_ENABLE_K8S_TOKEN_AUTH: Final = "RAY_ENABLE_K8S_TOKEN_AUTH"
ENV_RAY_HEAD_POD_NAME: Final = "RAY_HEAD_POD_NAME"
RAY_TOKEN_VOLUME_NAME: Final = "ray-token"
RAY_TOKEN_MOUNT_PATH: Final = "/var/run/secrets/ray.io/serviceaccount"
ENV_KUBERAY_CRD_VER: Final = "KUBERAY_CRD_VER"
ENV_KUBERAY_GEN_AUTOSCALER_START_CMD: Final = "KUBERAY_GEN_AUTOSCALER_START_CMD"
AUTH_TOKEN_SECRET_KEY: Final = "auth_token"

# Operator env vars (docs/compatibility.md#operator)
OPENV_ENABLE_INIT_CONTAINER_INJECTION: Final = "ENABLE_INIT_CONTAINER_INJECTION"
OPENV_ENABLE_PROBES_INJECTION: Final = "ENABLE_PROBES_INJECTION"
OPENV_ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE: Final = "ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE"
OPENV_CLUSTER_DOMAIN: Final = "CLUSTER_DOMAIN"
OPENV_RAYCLUSTER_DEFAULT_REQUEUE_SECONDS: Final = "RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV"
OPENV_ENABLE_GCS_FT_REDIS_CLEANUP: Final = "ENABLE_GCS_FT_REDIS_CLEANUP"
OPENV_ENABLE_DETERMINISTIC_HEAD_POD_NAME: Final = "ENABLE_DETERMINISTIC_HEAD_POD_NAME"
OPENV_ENABLE_LOGIN_SHELL: Final = "ENABLE_LOGIN_SHELL"
OPENV_ENABLE_RANDOM_POD_DELETE: Final = "ENABLE_RANDOM_POD_DELETE"
OPENV_ENABLE_WEBHOOKS: Final = "ENABLE_WEBHOOKS"
OPENV_DELETE_RAYJOB_CR_AFTER_JOB_FINISHES: Final = "DELETE_RAYJOB_CR_AFTER_JOB_FINISHES"
OPENV_RAYJOB_TRANSITION_GRACE: Final = "RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS"
OPENV_RAYJOB_STATUS_CHECK_TIMEOUT: Final = "RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS"

DEFAULT_CLUSTER_DOMAIN: Final = "cluster.local"
DEFAULT_ULIMIT_CMD: Final = "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}"

# Status values
STATE_READY: Final = "ready"
STATE_SUSPENDED: Final = "suspended"
STATE_FAILED: Final = "failed"

COND_HEAD_POD_READY: Final = "HeadPodReady"
COND_PROVISIONED: Final = "RayClusterProvisioned"
COND_REPLICA_FAILURE: Final = "ReplicaFailure"
COND_SUSPENDING: Final = "RayClusterSuspending"
COND_SUSPENDED: Final = "RayClusterSuspended"

# Event reasons (docs/compatibility.md#events)
EV_INVALID_SPEC: Final = "InvalidRayClusterSpec"
EV_INVALID_METADATA: Final = "InvalidRayClusterMetadata"
EV_INVALID_STATUS: Final = "InvalidRayClusterStatus"
EV_CREATED_HEAD_POD: Final = "CreatedHeadPod"
EV_FAILED_CREATE_HEAD_POD: Final = "FailedToCreateHeadPod"
EV_DELETED_HEAD_POD: Final = "DeletedHeadPod"
EV_FAILED_DELETE_HEAD_POD: Final = "FailedToDeleteHeadPod"
EV_CREATED_WORKER_POD: Final = "CreatedWorkerPod"
EV_FAILED_CREATE_WORKER_POD: Final = "FailedToCreateWorkerPod"
EV_DELETED_WORKER_POD: Final = "DeletedWorkerPod"
EV_FAILED_DELETE_WORKER_POD: Final = "FailedToDeleteWorkerPod"
EV_DELETED_POD: Final = "DeletedPod"
EV_FAILED_DELETE_POD_COLLECTION: Final = "FailedToDeletePodCollection"
EV_CREATED_REDIS_CLEANUP_JOB: Final = "CreatedRedisCleanupJob"
EV_FAILED_CREATE_REDIS_CLEANUP_JOB: Final = "FailedToCreateRedisCleanupJob"
EV_FORCE_DELETED_STUCK_CLUSTER: Final = "ForceDeletedStuckCluster"
EV_CREATED_SERVICE: Final = "CreatedService"
EV_FAILED_CREATE_SERVICE: Final = "FailedToCreateService"
EV_UPDATED_SERVICE: Final = "UpdatedService"
EV_FAILED_UPDATE_SERVICE: Final = "FailedToUpdateService"
EV_CREATED_SERVICE_ACCOUNT: Final = "CreatedServiceAccount"
EV_FAILED_CREATE_SERVICE_ACCOUNT: Final = "FailedToCreateServiceAccount"
EV_CREATED_ROLE: Final = "CreatedRole"
EV_FAILED_CREATE_ROLE: Final = "FailedToCreateRole"
EV_CREATED_ROLE_BINDING: Final = "CreatedRoleBinding"
EV_FAILED_CREATE_ROLE_BINDING: Final = "FailedToCreateRoleBinding"
EV_CREATED_INGRESS: Final = "CreatedIngress"
EV_FAILED_CREATE_INGRESS: Final = "FailedToCreateIngress"
EV_UPDATED_INGRESS: Final = "UpdatedIngress"
EV_FAILED_DELETE_WORKER_POD_COLLECTION: Final = "FailedToDeleteWorkerPodCollection"
EV_FAILED_CREATE_SECRET: Final = "FailedToCreateSecret"
EV_CREATED_PVC: Final = "CreatedPersistentVolumeClaim"
EV_FAILED_CREATE_PVC: Final = "FailedToCreatePersistentVolumeClaim"
EV_CREATED_SECRET: Final = "CreatedSecret"
EV_AUTOSCALER_SA_NOT_FOUND: Final = "AutoscalerServiceAccountNotFound"
# RayJob (utils/constant.go K8sEventType)
EV_INVALID_RAYJOB_SPEC: Final = "InvalidRayJobSpec"
EV_INVALID_RAYJOB_METADATA: Final = "InvalidRayJobMetadata"
EV_INVALID_RAYJOB_STATUS: Final = "InvalidRayJobStatus"
EV_CREATED_RAYJOB_SUBMITTER: Final = "CreatedRayJobSubmitter"
EV_DELETED_RAYJOB_SUBMITTER: Final = "DeletedRayJobSubmitter"
EV_FAILED_CREATE_RAYJOB_SUBMITTER: Final = "FailedToCreateRayJobSubmitter"
EV_FAILED_DELETE_RAYJOB_SUBMITTER: Final = "FailedToDeleteRayJobSubmitter"
EV_CREATED_RAYCLUSTER: Final = "CreatedRayCluster"
EV_UPDATED_RAYCLUSTER: Final = "UpdatedRayCluster"
EV_DELETED_RAYCLUSTER: Final = "DeletedRayCluster"
EV_FAILED_CREATE_RAYCLUSTER: Final = "FailedToCreateRayCluster"
EV_FAILED_DELETE_RAYCLUSTER: Final = "FailedToDeleteRayCluster"
EV_FAILED_UPDATE_RAYCLUSTER: Final = "FailedToUpdateRayCluster"
EV_RAYCLUSTER_NOT_FOUND: Final = "RayClusterNotFound"
# RayService (utils/constant.go K8sEventType)
EV_INVALID_RAYSERVICE_SPEC: Final = "InvalidRayServiceSpec"
EV_INVALID_RAYSERVICE_METADATA: Final = "InvalidRayServiceMetadata"
EV_RAYSERVICE_INITIALIZING_TIMEOUT: Final = "RayServiceInitializingTimeout"
EV_UPDATED_HEAD_POD_SERVE_LABEL: Final = "UpdatedHeadPodServeLabel"
EV_FAILED_UPDATE_HEAD_POD_SERVE_LABEL: Final = "FailedToUpdateHeadPodServeLabel"
EV_UPDATED_SERVE_APPLICATIONS: Final = "UpdatedServeApplications"
EV_FAILED_UPDATE_SERVE_APPLICATIONS: Final = "FailedToUpdateServeApplications"
EV_DELETED_SERVICE: Final = "DeletedService"
EV_FAILED_DELETE_SERVICE: Final = "FailedToDeleteService"
# rayop's own: Ray reports a Serve application that cannot run (bad import path, failing constructor).
EV_SERVE_APPLICATION_FAILED: Final = "ServeApplicationFailed"
# The incremental upgrade (NewClusterWithIncrementalUpgrade): its Gateway, HTTPRoute and target_capacity.
EV_CREATED_GATEWAY: Final = "CreatedGateway"
EV_FAILED_CREATE_GATEWAY: Final = "FailedToCreateGateway"
EV_UPDATED_GATEWAY: Final = "UpdatedGateway"
EV_FAILED_UPDATE_GATEWAY: Final = "FailedToUpdateGateway"
EV_CREATED_HTTPROUTE: Final = "CreatedHTTPRoute"
EV_FAILED_CREATE_HTTPROUTE: Final = "FailedToCreateHTTPRoute"
EV_UPDATED_HTTPROUTE: Final = "UpdatedHTTPRoute"
EV_FAILED_UPDATE_HTTPROUTE: Final = "FailedToUpdateHTTPRoute"
EV_UPDATED_SERVE_TARGET_CAPACITY: Final = "UpdatedServeTargetCapacity"
EV_FAILED_UPDATE_TARGET_CAPACITY: Final = "FailedToUpdateTargetCapacity"
EV_ROLLBACK_IMPOSSIBLE: Final = "RollbackImpossible"

# RayService conditions and reasons (apis/ray/v1/rayservice_types.go)
COND_RS_READY: Final = "Ready"
COND_RS_UPGRADE_IN_PROGRESS: Final = "UpgradeInProgress"
COND_RS_SUSPENDING: Final = "Suspending"
COND_RS_SUSPENDED: Final = "Suspended"
COND_RS_ROLLBACK_IN_PROGRESS: Final = "RollbackInProgress"
RS_REASON_INITIALIZING: Final = "Initializing"
RS_REASON_INITIALIZING_TIMEOUT: Final = "InitializingTimeout"
RS_REASON_ZERO_SERVE_ENDPOINTS: Final = "ZeroServeEndpoints"
RS_REASON_NON_ZERO_SERVE_ENDPOINTS: Final = "NonZeroServeEndpoints"
RS_REASON_VALIDATION_FAILED: Final = "ValidationFailed"
RS_REASON_BOTH_CLUSTERS: Final = "BothActivePendingClustersExist"
RS_REASON_NO_PENDING_CLUSTER: Final = "NoPendingCluster"
RS_REASON_NO_ACTIVE_CLUSTER: Final = "NoActiveCluster"
RS_REASON_SUSPEND_REQUESTED: Final = "SuspendRequested"
RS_REASON_SUSPEND_IN_PROGRESS: Final = "SuspendInProgress"
RS_REASON_SUSPEND_COMPLETE: Final = "SuspendComplete"
RS_REASON_DESIRED_SPEC_CHANGED: Final = "DesiredClusterSpecChanged"
# rayop's own reason for leaving Suspended (KubeRay only names the ones above).
RS_REASON_RESUMED: Final = "Resumed"
RS_SERVICE_STATUS_RUNNING: Final = "Running"

# RayService upgrade strategies (spec.upgradeStrategy.type)
UPGRADE_NEW_CLUSTER: Final = "NewCluster"
UPGRADE_NEW_CLUSTER_INCREMENTAL: Final = "NewClusterWithIncrementalUpgrade"
UPGRADE_NONE: Final = "None"
OPENV_ENABLE_ZERO_DOWNTIME: Final = "ENABLE_ZERO_DOWNTIME"
DEFAULT_RAYCLUSTER_DELETION_DELAY_SECONDS: Final = 60
DEFAULT_SERVE_APP_NAME: Final = "default"
PORT_NAME_SERVE: Final = "serve"
PORT_NAME_METRICS: Final = "metrics"
PORT_NAME_DASHBOARD: Final = "dashboard"
# The incremental upgrade's Gateway listener (utils.GatewayListenerPortName, DefaultGatewayListenerPort).
GATEWAY_LISTENER_NAME: Final = "http"
GATEWAY_LISTENER_PORT: Final = 80

# rayop's own annotations. On a RayService: how long an old cluster may keep serving in-flight requests
# after its deletion delay (Go duration or seconds). On a RayService's RayCluster: what rayop decided, so
# a restarted operator decides the same (the Serve config applied, when the cluster may be deleted, and
# which hash function wrote `ray.io/hash-without-replicas-and-workers-to-delete`).
ANN_SERVE_DRAIN_TIMEOUT: Final = "rayop.io/serve-drain-timeout"
ANN_SERVE_CONFIG_HASH: Final = "rayop.io/serve-config-hash"
ANN_DELETE_AFTER: Final = "rayop.io/delete-after"
ANN_HASH_VERSION: Final = "rayop.io/hash-version"
# The incremental upgrade's records: on a RayCluster, the target_capacity applied to its Serve applications
# and the serveConfigV2 text it runs (so its capacity can change without the RayService's newer config
# reaching it); on the HTTPRoute, when its weights last changed (the clock of `intervalSeconds`).
ANN_TARGET_CAPACITY: Final = "rayop.io/target-capacity"
ANN_SERVE_CONFIG: Final = "rayop.io/serve-config"
ANN_TRAFFIC_MIGRATED_AT: Final = "rayop.io/traffic-migrated-at"

# mTLS (gate RayClusterMTLS) and history collector names that users must not set themselves
# (docs/compatibility.md#raycluster-rules, rules 16 and 19).
ENV_RAY_USE_TLS: Final = "RAY_USE_TLS"
ENV_RAY_TLS_SERVER_CERT: Final = "RAY_TLS_SERVER_CERT"
ENV_RAY_TLS_SERVER_KEY: Final = "RAY_TLS_SERVER_KEY"
ENV_RAY_TLS_CA_CERT: Final = "RAY_TLS_CA_CERT"
RAY_TLS_VOLUME_NAME: Final = "ray-tls"
RAY_TLS_MOUNT_PATH: Final = "/etc/ray/tls"
HISTORY_COLLECTOR_CONTAINER_NAME: Final = "ray-history-collector"

# Name length limits (utils/constant.go): Service names append at most "-serve-svc" to a cluster name, and
# RayJob/RayService append 6 characters to their own name to name the RayCluster.
MAX_RAYCLUSTER_NAME_LENGTH: Final = 53
MAX_RAYJOB_NAME_LENGTH: Final = 47
MAX_RAYSERVICE_NAME_LENGTH: Final = 47
