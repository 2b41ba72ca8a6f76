"""The bottom layer: small, generic helpers that every other package may use.

Nothing here knows about Kubernetes kinds or Ray; nothing here imports another `rayop` package. It holds
what the runtime, the local plane, the node agent, the webhook and the Ray-level packages would otherwise
each write again:

- `types`: the `Obj` alias for an object held as a plain dict (JSON as the API server sends it);
- `resource`: `Resource`, where a kind lives in the Kubernetes API (group, version, plural);
- `times`: RFC 3339 timestamps as Kubernetes writes and reads them;
- `names`: random name suffixes drawn as the API server draws them for `generateName`;
- `procs`: checks on processes by PID (alive, command line) that survive odd process names;
- `files`: owner-only file writes for keys, tokens and kubeconfigs;
- `pki`: CAs and leaf certificates for the local plane, the node agent and the webhook.
"""
