"""metrics-server on the local plane: the `metrics.k8s.io` API behind `kubectl top` and the HPA.

It runs the way it runs on any cluster: a Deployment in kube-system whose pod the node agent runs (the
binary comes from the cache, built from its Go module by scripts/build-metrics-server.sh: there are no
images), a Service in front of it, and the APIService `v1beta1.metrics.k8s.io` that makes the API server
forward `/apis/metrics.k8s.io/v1beta1` to that Service. The API server reaches the pod IP through
`--enable-aggregator-routing` and authenticates as `front-proxy-client`; metrics-server scrapes each node's
kubelet API (`/metrics/resource` at the node's InternalIP and advertised port) with its service-account
token, and verifies the node's serving certificate with the plane's CA (the `ca.crt` of its token volume).

Its own serving certificate is signed by the same CA, and the APIService trusts that CA (`caBundle`), so
nothing on the path skips TLS verification. See docs/local-plane.md.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from rayop.base.types import Obj
from rayop.local.pki import issue_serving_cert
from rayop.local.plane import REPO_ROOT, ControlPlane, PlaneError, cache_dir

NAMESPACE = "kube-system"
NAME = "metrics-server"
APISERVICE = "v1beta1.metrics.k8s.io"
IMAGE = "registry.k8s.io/metrics-server/metrics-server"
SECURE_PORT = 10250
TLS_DIR = "/etc/metrics-server/tls"
SA_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
LABELS = {"k8s-app": NAME}


def default_version() -> str:
    env = os.environ.get("RAYOP_METRICS_SERVER_VERSION")
    if env:
        return env
    vfile = REPO_ROOT / "versions.env"
    if vfile.exists():
        for line in vfile.read_text().splitlines():
            if line.startswith("RAYOP_METRICS_SERVER_VERSION="):
                return line.split("=", 1)[1].strip()
    return "v0.8.0"


def binary_path(version: str | None = None) -> Path:
    return cache_dir() / "metrics-server" / (version or default_version()) / "metrics-server"


def ensure_binary(version: str | None = None, *, build: bool = True) -> Path:
    """The cached metrics-server binary, built first if it is missing (minutes on a cold cache)."""
    path = binary_path(version)
    if path.exists() or not build:
        if not path.exists():
            raise PlaneError(f"metrics-server missing at {path} (run `make deps`)")
        return path
    script = REPO_ROOT / "scripts" / "build-metrics-server.sh"
    if not script.exists():
        raise PlaneError(f"metrics-server missing at {path} and no build script at {script}")
    env = dict(
        os.environ,
        RAYOP_METRICS_SERVER_VERSION=version or default_version(),
        RAYOP_CACHE_DIR=str(cache_dir()),
    )
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not path.exists():
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        raise PlaneError(f"building metrics-server failed (exit {proc.returncode}):\n{tail}")
    return path


@dataclass(frozen=True)
class MetricsServerSpec:
    binary: Path
    version: str
    ca_pem: bytes  # the plane's serving CA: signs the certificate below and the nodes' kubelet certificates
    cert_pem: bytes  # for the Service's DNS names (what the API server checks)
    key_pem: bytes
    # How often nodes are scraped; `kubectl top` needs two scrapes for a CPU rate. 10 s is its minimum.
    metric_resolution: str = "15s"


def service_dns_names() -> list[str]:
    return [NAME, f"{NAME}.{NAMESPACE}", f"{NAME}.{NAMESPACE}.svc", f"{NAME}.{NAMESPACE}.svc.cluster.local"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def manifests(spec: MetricsServerSpec) -> list[Obj]:
    """Everything metrics-server needs, in the order to apply it."""
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)}
    rbac = "rbac.authorization.k8s.io"
    args = [
        f"--secure-port={SECURE_PORT}",
        "--cert-dir=/tmp",
        f"--tls-cert-file={TLS_DIR}/tls.crt",
        f"--tls-private-key-file={TLS_DIR}/tls.key",
        "--kubelet-preferred-address-types=InternalIP",
        "--kubelet-use-node-status-port",
        f"--kubelet-certificate-authority={SA_CA}",
        f"--metric-resolution={spec.metric_resolution}",
    ]
    https_probe = {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    container: Obj = {
        "name": NAME,
        "image": f"{IMAGE}:{spec.version}",
        # The node agent runs no images: the command is the binary built into the cache.
        "command": [str(spec.binary), *args],
        "ports": [{"name": "https", "containerPort": SECURE_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": https_probe, "periodSeconds": 2, "failureThreshold": 3},
        "livenessProbe": {
            "httpGet": {**https_probe, "path": "/livez"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}},
        "volumeMounts": [
            {"name": "tmp-dir", "mountPath": "/tmp"},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
        ],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": "system:aggregated-metrics-reader",
                "labels": {
                    **LABELS,
                    "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                    "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                    "rbac.authorization.k8s.io/aggregate-to-view": "true",
                },
            },
            "rules": [
                {
                    "apiGroups": ["metrics.k8s.io"],
                    "resources": ["pods", "nodes"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"system:{NAME}", "labels": dict(LABELS)},
            "rules": [
                {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]},
            ],
        },
        {
            # Reads the front-proxy CA and header names the API server publishes in kube-system.
            "apiVersion": f"{rbac}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{NAME}-auth-reader", "namespace": NAMESPACE, "labels": dict(LABELS)},
            "roleRef": {
                "apiGroup": rbac,
                "kind": "Role",
                "name": "extension-apiserver-authentication-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {
            # TokenReviews and SubjectAccessReviews for the callers the API server forwards.
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{NAME}:system:auth-delegator", "labels": dict(LABELS)},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"system:{NAME}", "labels": dict(LABELS)},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": f"system:{NAME}"},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{NAME}-tls", "namespace": NAMESPACE, "labels": dict(LABELS)},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": _b64(spec.cert_pem), "tls.key": _b64(spec.key_pem)},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "selector": dict(LABELS),
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": dict(LABELS)},
                "strategy": {"rollingUpdate": {"maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": dict(LABELS)},
                    "spec": {
                        "serviceAccountName": NAME,
                        "priorityClassName": "system-cluster-critical",
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "terminationGracePeriodSeconds": 5,
                        "containers": [container],
                        "volumes": [
                            {"name": "tmp-dir", "emptyDir": {}},
                            {"name": "tls", "secret": {"secretName": f"{NAME}-tls"}},
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": APISERVICE, "labels": dict(LABELS)},
            "spec": {
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "service": {"name": NAME, "namespace": NAMESPACE, "port": 443},
                "caBundle": _b64(spec.ca_pem),
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]


def install(plane: ControlPlane, timeout: float = 180.0) -> None:
    """Install metrics-server on a plane whose node agent runs its pod (building the binary if missing),
    and wait until its APIService is Available. Raises PlaneError when it does not become Available."""
    assert plane.pki
    binary = ensure_binary()
    crt, key = issue_serving_cert(plane.pki, NAME, service_dns_names())
    spec = MetricsServerSpec(
        binary=binary,
        version=default_version(),
        ca_pem=plane.pki.serving_ca.read_bytes(),
        cert_pem=crt.read_bytes(),
        key_pem=key.read_bytes(),
    )
    docs = yaml.safe_dump_all(manifests(spec), sort_keys=False)
    plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=rayop", "-f", "-", input=docs
    )
    api = f"apiservice/{APISERVICE}"
    out = plane.kubectl(
        "wait",
        "--for=condition=Available",
        f"--timeout={int(timeout)}s",
        api,
        check=False,
        timeout=timeout + 30,
    )
    if "condition met" not in out:
        status = plane.kubectl("get", api, "-o", "jsonpath={.status.conditions}", check=False)
        pods = plane.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide", check=False)
        raise PlaneError(f"metrics-server did not become Available in {timeout:.0f} s: {status}\n{pods}")
