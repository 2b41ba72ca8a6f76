"""The embedded control plane: a real etcd, kube-apiserver and kube-controller-manager on one machine.

plane     start, stop and locate the plane's processes (by PID, never by name), kubeconfigs, CRD install
pki       the plane's CA and serving/client certificates
openapi   fetch the API server's OpenAPI documents for the CRD generator
"""
