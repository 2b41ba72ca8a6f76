"""rayop: KubeRay's operator for Ray, rebuilt in Python (see ARCHITECTURE.md for the layers and the code map).

base         generic helpers every package may use (objects as dicts, times, processes, PKI, files)
api          Ray's names, the kind registry, the CRD schemas and generator
runtime      a small asyncio controller runtime (client, informers, queue, leader election, events)
builders     pure manifests from specs (Pods, Services, RBAC, Jobs, status)
validation   pure validation rules per kind, shared by the webhook and the controllers
ray          the Ray dashboard client
webhook      the validating admission webhook
node         the node agent: a small kubelet that runs Pods as processes
local        the embedded control plane (etcd, kube-apiserver, kube-controller-manager)
controllers  one reconciler per kind and what they share
ui           the read-only web view, beside the controllers, from the same caches
operator     the operator process: configuration, manager, controllers, servers
cli          the `rayop` command
"""
