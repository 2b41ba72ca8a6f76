"""Kubeconfig loading (merging, contexts, relative paths, clear errors) and the exec credential protocol
(environment, interactiveMode, expiry, refresh on 401) with a fake plugin script and a fake API server."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from rayop.base.times import format_time
from rayop.runtime.client import ApiClient, ApiError
from rayop.runtime.client import load_kubeconfig as reexported
from rayop.runtime.kubeconfig import (
    ExecCredential,
    ExecPluginError,
    KubeconfigError,
    load_config,
    load_kubeconfig,
    parse_exec_output,
)
from tests.exec_plugin import FakePlugin, kubeconfig


def write(path: Path, doc: object) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def test_client_module_reexports_the_loader() -> None:
    assert reexported is load_kubeconfig


def test_merges_kubeconfig_list_first_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "ca.crt").write_bytes(b"CA-A")
    a = write(
        tmp_path / "a" / "config",
        {
            "clusters": [
                {"name": "c", "cluster": {"server": "https://a:6443/", "certificate-authority": "ca.crt"}}
            ],
            "users": [{"name": "u", "user": {"token": "tok-a"}}],
            "contexts": [{"name": "one", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}}],
            "current-context": "one",
        },
    )
    b = write(
        tmp_path / "b",
        {
            "clusters": [
                {"name": "c", "cluster": {"server": "https://ignored"}},
                {"name": "d", "cluster": {"server": "https://d"}},
            ],
            "users": [{"name": "u", "user": {"token": "ignored"}}, {"name": "v", "user": {"token": "tok-v"}}],
            "contexts": [{"name": "two", "context": {"cluster": "d", "user": "v"}}],
            "current-context": "two",
        },
    )
    missing = tmp_path / "nope"
    monkeypatch.setenv("KUBECONFIG", f"{missing}:{a}:{b}")
    cfg = load_kubeconfig()
    assert (cfg.server, cfg.token, cfg.namespace, cfg.context) == ("https://a:6443", "tok-a", "team-a", "one")
    assert cfg.ca_data == b"CA-A"  # relative to the file that named it
    two = load_config(context="two")
    assert (two.server, two.token, two.namespace) == ("https://d", "tok-v", "default")


@pytest.mark.parametrize(
    ("doc", "context", "message"),
    [
        ({"contexts": []}, None, "no current context"),
        (
            {"contexts": [{"name": "x", "context": {"cluster": "c"}}]},
            "y",
            "context 'y' not found (contexts: x)",
        ),
        (
            {"contexts": [{"name": "x", "context": {"cluster": "c"}}], "current-context": "x"},
            None,
            "cluster 'c'",
        ),
        (
            {
                "clusters": [{"name": "c", "cluster": {"server": "https://s"}}],
                "users": [{"name": "u", "user": {"auth-provider": {"name": "gcp"}}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            },
            None,
            "gcp auth-provider is not supported",
        ),
        (
            {
                "clusters": [{"name": "c", "cluster": {"server": "https://s"}}],
                "users": [
                    {
                        "name": "u",
                        "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "x"}},
                    }
                ],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            },
            None,
            "interactiveMode is required",
        ),
        (
            {
                "clusters": [{"name": "c", "cluster": {"server": "https://s"}}],
                "users": [
                    {
                        "name": "u",
                        "user": {
                            "exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}
                        },
                    }
                ],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            },
            None,
            "v1alpha1' is not supported",
        ),
    ],
)
def test_unusable_kubeconfigs_say_why(
    tmp_path: Path, doc: dict[str, object], context: str | None, message: str
) -> None:
    with pytest.raises(KubeconfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_kubeconfig(write(tmp_path / "config", doc), context)


def test_no_kubeconfig_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(KubeconfigError, match=r"no kubeconfig found .*pass --kubeconfig, set KUBECONFIG"):
        load_config()


@pytest.mark.parametrize(
    ("out", "message"),
    [
        (b"nope", "not JSON"),
        (b'{"kind": "Other"}', "not an ExecCredential"),
        (
            b'{"kind": "ExecCredential", "apiVersion": "client.authentication.k8s.io/v1beta1", "status": {}}',
            "asked for",
        ),
        (
            b'{"kind": "ExecCredential", "apiVersion": "client.authentication.k8s.io/v1", "status": {}}',
            "neither",
        ),
        (
            b'{"kind": "ExecCredential", "apiVersion": "client.authentication.k8s.io/v1",'
            b' "status": {"clientCertificateData": "x"}}',
            "both",
        ),
        (
            b'{"kind": "ExecCredential", "apiVersion": "client.authentication.k8s.io/v1",'
            b' "status": {"token": "t", "expirationTimestamp": "soon"}}',
            "RFC 3339",
        ),
    ],
)
def test_bad_plugin_output(out: bytes, message: str) -> None:
    with pytest.raises(ExecPluginError, match=message):
        parse_exec_output(out, "client.authentication.k8s.io/v1")


def test_expiry_has_a_skew() -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert ExecCredential(token="t", expiry=now + dt.timedelta(seconds=5)).expired(now)
    assert not ExecCredential(token="t", expiry=now + dt.timedelta(minutes=5)).expired(now)
    assert not ExecCredential(token="t").expired(now)


# A fake API server that accepts a set of bearer tokens ----------------------------------------------


class TokenServer:
    def __init__(self) -> None:
        self.valid: set[str] = set()
        self.seen: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.seen.append(auth)
        if auth.removeprefix("Bearer ") not in self.valid:
            body = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Unauthorized",
                "code": 401,
            }
            return web.json_response(body, status=401)
        return web.json_response({"major": "1", "minor": "36"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/version", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[TokenServer]:
    s = TokenServer()
    await s.start()
    yield s
    await s.stop()


def _client(tmp_path: Path, server: TokenServer, plugin: FakePlugin, **extra: object) -> ApiClient:
    path = write(tmp_path / "kubeconfig", kubeconfig(server.url, plugin.user(**extra)))
    return ApiClient(load_kubeconfig(path))


async def test_exec_plugin_environment_and_cache(tmp_path: Path, server: TokenServer) -> None:
    plugin = FakePlugin(tmp_path)
    later = format_time(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    plugin.answer([{"token": "t1", "expirationTimestamp": later}])
    server.valid = {"t1"}
    async with _client(tmp_path, server, plugin, provideClusterInfo=True) as api:
        await api.version()
        await api.version()
    assert server.seen == ["Bearer t1", "Bearer t1"]
    runs = plugin.runs
    assert len(runs) == 1, "a credential that has not expired is reused"
    run = runs[0]
    assert run["probe"] == "from-kubeconfig"
    assert run["argv"] == ["get-token", "--cluster", "c1"]
    assert run["info"]["kind"] == "ExecCredential"
    assert run["info"]["apiVersion"] == "client.authentication.k8s.io/v1"
    assert run["info"]["spec"]["interactive"] is False
    assert run["info"]["spec"]["cluster"]["server"] == server.url
    assert run["stdin_tty"] is False


async def test_exec_plugin_runs_again_when_expired(tmp_path: Path, server: TokenServer) -> None:
    plugin = FakePlugin(tmp_path)
    past = format_time(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    plugin.answer([{"token": "t1", "expirationTimestamp": past}, {"token": "t2"}])
    server.valid = {"t1", "t2"}
    async with _client(tmp_path, server, plugin) as api:
        await api.version()
        await api.version()
        await api.version()
    assert server.seen == ["Bearer t1", "Bearer t2", "Bearer t2"]
    assert len(plugin.runs) == 2


async def test_exec_plugin_refreshes_on_401(tmp_path: Path, server: TokenServer) -> None:
    plugin = FakePlugin(tmp_path)
    plugin.answer([{"token": "revoked"}, {"token": "fresh"}])
    server.valid = {"fresh"}
    async with _client(tmp_path, server, plugin) as api:
        assert (await api.version())["minor"] == "36"
        await api.version()
    assert server.seen == ["Bearer revoked", "Bearer fresh", "Bearer fresh"]
    assert len(plugin.runs) == 2


async def test_exec_plugin_401_twice_is_an_error(tmp_path: Path, server: TokenServer) -> None:
    plugin = FakePlugin(tmp_path)
    plugin.answer([{"token": "bad"}])
    async with _client(tmp_path, server, plugin) as api:
        with pytest.raises(ApiError) as err:
            await api.version()
    assert err.value.status == 401
    assert len(plugin.runs) == 2


async def test_exec_plugin_v1beta1_and_failures(tmp_path: Path, server: TokenServer) -> None:
    plugin = FakePlugin(tmp_path, api_version="client.authentication.k8s.io/v1beta1")
    plugin.answer([{"exit": 3}])
    api = _client(tmp_path, server, plugin, interactiveMode=None)
    with pytest.raises(ExecPluginError, match="exited with code 3"):
        await api.version()
    await api.close()
    # Without a terminal, `Always` cannot be honoured.
    api = _client(tmp_path, server, plugin, interactiveMode="Always")
    with pytest.raises(ExecPluginError, match="needs an interactive terminal"):
        await api.version()
    await api.close()
    missing = {"command": str(tmp_path / "no-such-plugin"), "installHint": "install it with: brew install x"}
    api = _client(tmp_path, server, plugin, **missing)
    with pytest.raises(ExecPluginError, match=r"cannot run: No such file or directory\ninstall it with"):
        await api.version()
    await api.close()


def test_exec_relative_command_is_relative_to_its_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    doc = kubeconfig(
        "https://s",
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "bin/p",
                "interactiveMode": "Never",
            }
        },
    )
    cfg = load_kubeconfig(write(tmp_path / "config", doc))
    assert cfg.exec_plugin is not None
    assert cfg.exec_plugin.spec.command == str(tmp_path.resolve() / "bin" / "p")
    doc = kubeconfig(
        "https://s",
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "aws",
                "interactiveMode": "Never",
            }
        },
    )
    cfg = load_kubeconfig(write(tmp_path / "config", doc))
    assert cfg.exec_plugin is not None and cfg.exec_plugin.spec.command == "aws"  # looked up on PATH


def test_exec_info_is_json_with_cluster_config(tmp_path: Path) -> None:
    doc = kubeconfig(
        "https://s",
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "p",
                "interactiveMode": "Never",
                "provideClusterInfo": True,
            }
        },
    )
    doc["clusters"][0]["cluster"]["extensions"] = [
        {"name": "client.authentication.k8s.io/exec", "extension": {"audience": "x"}}
    ]
    cfg = load_kubeconfig(write(tmp_path / "config", doc))
    assert cfg.exec_plugin is not None
    info = json.loads(cfg.exec_plugin.exec_info(False))
    assert info["spec"]["cluster"] == {"server": "https://s", "config": {"audience": "x"}}
