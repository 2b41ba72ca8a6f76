"""The embedded control plane: a real etcd, kube-apiserver and kube-controller-manager on one machine.

plane     start, stop and locate the plane's processes (by PID, never by name), kubeconfigs, CRD install
pki       the plane's CAs and certificates (serving, client, front-proxy, kubelet)
openapi   fetch the API server's OpenAPI documents for the CRD generator
metrics_server  metrics-server's binary (built on demand) and manifests for `rayop local up`
"""
