"""The `rayop` command (typer). Each module contributes one command or command group.

main       the entry point, assembling the groups below
operator   `rayop operator`: the operator with KubeRay's flags
webhook    `rayop webhook`: the admission webhook on its own
node       `rayop node`: the local node agent
local      `rayop local up|status|down`: the embedded plane, operator and node agent in the background
podcmds    `rayop logs` and `rayop exec` for Pods on the local node
demo       `rayop demo`: the end-to-end demonstration `make demo` runs
dev        `rayop dev`: developer commands (CRD generation)
"""
