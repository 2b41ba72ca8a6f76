"""A fake exec credential plugin (client.authentication.k8s.io) for tests, written as a script next to a
kubeconfig. Each run appends what it saw (its environment's KUBERNETES_EXEC_INFO and a chosen variable) to
`runs.jsonl` and answers the next credential of `answers.json` (the last one repeats)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SCRIPT = """#!{python}
import json, os, sys
from pathlib import Path
d = Path({folder!r})
runs = d / "runs.jsonl"
n = sum(1 for _ in runs.open()) if runs.exists() else 0
with runs.open("a") as f:
    f.write(json.dumps({{"info": json.loads(os.environ.get("KUBERNETES_EXEC_INFO", "null")),
                        "probe": os.environ.get("PLUGIN_PROBE"), "argv": sys.argv[1:],
                        "stdin_tty": sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()}}) + "\\n")
answers = json.loads((d / "answers.json").read_text())
a = answers[min(n, len(answers) - 1)]
if a.get("exit"):
    print("plugin says no", file=sys.stderr)
    sys.exit(a["exit"])
status = {{k: v for k, v in a.items() if v is not None}}
print(json.dumps({{"apiVersion": {api_version!r}, "kind": "ExecCredential", "status": status}}))
"""


class FakePlugin:
    def __init__(self, folder: Path, api_version: str = "client.authentication.k8s.io/v1") -> None:
        self.folder = folder
        self.api_version = api_version
        self.path = folder / "fake-plugin"
        self.path.write_text(
            SCRIPT.format(python=sys.executable, folder=str(folder), api_version=api_version)
        )
        self.path.chmod(0o755)
        self.answer([{"token": "t1"}])

    def answer(self, answers: list[dict[str, Any]]) -> None:
        (self.folder / "answers.json").write_text(json.dumps(answers))

    @property
    def runs(self) -> list[dict[str, Any]]:
        f = self.folder / "runs.jsonl"
        return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []

    def user(self, **extra: Any) -> dict[str, Any]:
        ex: dict[str, Any] = {
            "apiVersion": self.api_version,
            "command": str(self.path),
            "args": ["get-token", "--cluster", "c1"],
            "env": [{"name": "PLUGIN_PROBE", "value": "from-kubeconfig"}],
            "interactiveMode": "Never",
        }
        ex.update(extra)
        return {"exec": ex}


def kubeconfig(
    server: str, user: dict[str, Any], *, ca_data: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = ca_data
    ctx: dict[str, Any] = {"cluster": "c1", "user": "u1"}
    if namespace:
        ctx["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c1", "cluster": cluster}],
        "users": [{"name": "u1", "user": user}],
        "contexts": [{"name": "ctx1", "context": ctx}],
        "current-context": "ctx1",
    }
