"""The node agent: a small kubelet that runs Pods as real processes on this machine, without Docker.

agent       the agent: Node and Lease, binding, watches, per-pod /etc/hosts, restart recovery, host paths
pod         one Pod's worker: sandbox, containers, restarts, probes, status (through the PodHost Protocol)
containers  the container runtime: start sandboxes and containers through the shim, signal, exec
shim        the small program left running per pod and per container, so pods outlive the agent
network     the bridge, one network namespace and veth pair per pod, IP allocation
volumes     emptyDir, ConfigMap, Secret, projected, hostPath and PVC volumes on the node's disk
probes      exec, httpGet and tcpSocket probes with the kubelet's timing rules
cgroups     per-container cgroups (v1): memory limits, memory and CPU usage
kubelet     the kubelet API the API server and metrics-server call: logs, metrics, exec, port-forward
streaming   exec and port-forward over the kubelet's WebSocket protocols
logs        read container logs (CRI format) with kubectl's options
stats       node and container usage, and the kubelet's /metrics/resource text
podspec     pure readers of a Pod spec: quantities, fit, env expansion, hosts file, phase
locate      find a Pod's container on this node from the API objects (for logs and exec)
"""
