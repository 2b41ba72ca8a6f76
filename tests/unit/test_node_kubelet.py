"""The node agent's kubelet API, piece by piece: the /metrics/resource text, container log records and
their reading, request authorization attributes, and usage read from /proc."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from multidict import MultiDict
from prometheus_client.parser import text_string_to_metric_families

from rayop.local import metrics_server
from rayop.node import shim, stats
from rayop.node.kubelet import caller_from_peercert, log_options, request_attributes
from rayop.node.logs import (
    LogOptionError,
    LogOptions,
    LogReader,
    format_rfc3339_nano,
    parse_record,
    tail_offset,
)
from rayop.node.streaming import status_message

T0 = 1_767_000_000.0


# --- /metrics/resource ----------------------------------------------------------------------------


def _usage() -> tuple[stats.NodeUsage, list[stats.ContainerUsage]]:
    node = stats.NodeUsage(cpu_seconds=1234.5, memory_working_set=3 << 30, time=T0)
    containers = [
        stats.ContainerUsage("ns1", "head", "ray-head", 12.25, 512 << 20, T0 - 100, T0),
        stats.ContainerUsage("ns1", "head", "autoscaler", 0.5, 64 << 20, T0 - 90, T0),
        stats.ContainerUsage("ns2", 'odd"name', "main", 0.001, 4096, T0 - 5, T0),
    ]
    return node, containers


def test_resource_metrics_parse_with_the_kubelet_names_and_labels() -> None:
    text = stats.render_resource_metrics(*_usage()).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # The parser names counters without their _total suffix.
    assert {"node_cpu_usage_seconds", "container_cpu_usage_seconds", "pod_cpu_usage_seconds"} <= set(families)
    assert {
        "node_memory_working_set_bytes",
        "container_memory_working_set_bytes",
        "container_start_time_seconds",
        "pod_memory_working_set_bytes",
        "resource_scrape_error",
    } <= set(families)
    assert families["node_cpu_usage_seconds"].type == "counter"
    assert families["container_memory_working_set_bytes"].type == "gauge"

    def samples(family: str) -> dict[tuple[str, str, str], float]:
        out = {}
        for s in families[family].samples:
            out[(s.labels.get("namespace", ""), s.labels.get("pod", ""), s.labels.get("container", ""))] = (
                s.value
            )
            assert s.timestamp is not None and abs(float(s.timestamp) - T0) < 0.01
        return out

    cpu = samples("container_cpu_usage_seconds")
    assert cpu == {
        ("ns1", "head", "ray-head"): 12.25,
        ("ns1", "head", "autoscaler"): 0.5,
        ("ns2", 'odd"name', "main"): 0.001,
    }
    assert samples("container_memory_working_set_bytes")[("ns1", "head", "ray-head")] == 512 << 20
    assert samples("container_start_time_seconds")[("ns2", 'odd"name', "main")] == T0 - 5
    assert samples("pod_cpu_usage_seconds") == {("ns1", "head", ""): 12.75, ("ns2", 'odd"name', ""): 0.001}
    assert samples("node_cpu_usage_seconds") == {("", "", ""): 1234.5}
    assert samples("node_memory_working_set_bytes") == {("", "", ""): 3 << 30}
    assert [s.value for s in families["resource_scrape_error"].samples] == [0.0]
    # metrics-server finds labels by byte search (pkg/scraper/client/resource/decode.go): each sample of a
    # container carries all three, and the help text is the kubelet's.
    line = next(x for x in text.splitlines() if x.startswith("container_cpu_usage_seconds_total{"))
    assert 'container="ray-head"' in line and 'pod="head"' in line and 'namespace="ns1"' in line
    assert line.endswith(f" {int(T0 * 1000)}")
    assert (
        "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container"
        in text
    )


def test_resource_metrics_without_node_figures_report_a_scrape_error() -> None:
    text = stats.render_resource_metrics(None, []).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["node_cpu_usage_seconds"].samples == []
    assert [s.value for s in families["resource_scrape_error"].samples] == [1.0]


def _fake_proc(
    root: Path, pid: int, ns: str, utime: int, stime: int, cutime: int, cstime: int, rss: int
) -> None:
    d = root / str(pid)
    (d / "ns").mkdir(parents=True)
    os.symlink(f"pid:[{ns}]", d / "ns" / "pid")
    rest = [
        "S",
        "1",
        "1",
        "1",
        "0",
        "-1",
        "0",
        "0",
        "0",
        "0",
        "0",
        str(utime),
        str(stime),
        str(cutime),
        str(cstime),
    ]
    rest += ["20", "0", "1", "0", "100", "1000", str(rss)]
    (d / "stat").write_text(f"{pid} (a (weird) name) " + " ".join(rest) + " 0 0\n")


def test_usage_from_proc_counts_live_processes_and_what_the_init_reaped(tmp_path: Path) -> None:
    tck = stats.CLK_TCK
    _fake_proc(tmp_path, 100, "1", utime=tck, stime=tck, cutime=3 * tck, cstime=tck, rss=10)  # init of a
    _fake_proc(tmp_path, 101, "1", utime=2 * tck, stime=0, cutime=50 * tck, cstime=0, rss=5)  # child in a
    _fake_proc(tmp_path, 200, "2", utime=tck, stime=0, cutime=0, cstime=0, rss=1)  # init of b
    _fake_proc(tmp_path, 300, "9", utime=99 * tck, stime=0, cutime=0, cstime=0, rss=99)  # elsewhere
    (tmp_path / "self").mkdir()
    got = stats.pid_namespace_usage({"a": 100, "b": 200, "gone": 999}, proc=str(tmp_path))
    # a: init 1+1 + reaped 3+1, child 2 (its own reaped children are not a's init's to count)
    assert got["a"] == pytest.approx((8.0, 15 * stats.PAGE_SIZE))
    assert got["b"] == pytest.approx((1.0, stats.PAGE_SIZE))
    assert "gone" not in got


def test_node_usage_from_proc(tmp_path: Path) -> None:
    tck = stats.CLK_TCK
    # user nice system idle iowait irq softirq steal guest guest_nice
    (tmp_path / "stat").write_text(
        f"cpu  {10 * tck} {tck} {5 * tck} {999 * tck} {7 * tck} 0 {tck} 0 0 0\ncpu0 1 2 3\n"
    )
    (tmp_path / "meminfo").write_text("MemTotal: 1000 kB\nMemFree: 200 kB\nInactive(file): 100 kB\n")
    n = stats.node_usage(str(tmp_path))
    assert n.cpu_seconds == pytest.approx(17.0)
    assert n.memory_working_set == 700 * 1024


# --- logs ----------------------------------------------------------------------------------------------


def _write_log(path: Path, records: list[tuple[float, str, bytes, bool]]) -> None:
    with open(path, "wb") as f:
        for t, stream, content, partial in records:
            f.write(shim.log_record(stream, content, partial, int(t * 1e9)))


def test_log_records_round_trip() -> None:
    rec = parse_record(
        shim.log_record("stderr", b"a line: with F and P", False, 1_767_000_000_123_456_789)[:-1]
    )
    assert (rec.time_ns, rec.stream, rec.partial, rec.content) == (
        1_767_000_000_123_456_789,
        "stderr",
        False,
        b"a line: with F and P",
    )
    assert parse_record(shim.log_record("stdout", b"", True, 0)[:-1]).partial
    assert parse_record(b"not the CRI format") == parse_record(b"not the CRI format")
    assert parse_record(b"not the CRI format").content == b"not the CRI format"
    assert format_rfc3339_nano(1_767_000_000_120_000_000) == "2025-12-29T09:20:00.12Z"
    assert format_rfc3339_nano(1_767_000_000_000_000_000) == "2025-12-29T09:20:00Z"


def test_log_reader_applies_tail_since_timestamps_limit_and_stream(tmp_path: Path) -> None:
    log = tmp_path / "log"
    _write_log(
        log,
        [
            (T0, "stdout", b"one", False),
            (T0 + 10, "stderr", b"two", False),
            (T0 + 20, "stdout", b"thr", True),
            (T0 + 20, "stdout", b"ee", False),
            (T0 + 30, "stdout", b"four", False),
        ],
    )

    def read(**kw: object) -> bytes:
        return LogReader(log, LogOptions(**kw), now=T0 + 35).read()  # type: ignore[arg-type]

    assert read() == b"one\ntwo\nthree\nfour\n"
    assert read(tail_lines=2) == b"ee\nfour\n"
    assert read(tail_lines=0) == b""
    assert read(tail_lines=99) == b"one\ntwo\nthree\nfour\n"
    assert read(since_seconds=16) == b"three\nfour\n"
    assert read(since_time=T0 + 10) == b"two\nthree\nfour\n"
    assert read(limit_bytes=6) == b"one\ntw"
    assert read(stream="Stderr") == b"two\n"
    assert (
        read(tail_lines=1, timestamps=True) == f"{format_rfc3339_nano(int((T0 + 30) * 1e9))} four\n".encode()
    )


def test_log_reader_follows_a_growing_file_and_waits_for_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "log"
    _write_log(log, [(T0, "stdout", b"first", False)])
    reader = LogReader(log, LogOptions(follow=True))
    assert reader.read() == b"first\n" and reader.at_end()
    rec = shim.log_record("stdout", b"second", False, int(T0 * 1e9))
    with open(log, "ab") as f:
        f.write(rec[:10])
    assert reader.read() == b"" and not reader.at_end()
    with open(log, "ab") as f:
        f.write(rec[10:])
    assert reader.read() == b"second\n"


def test_tail_offset_across_blocks(tmp_path: Path) -> None:
    log = tmp_path / "log"
    lines = [b"x" * 3000 + str(i).encode() for i in range(100)]
    _write_log(log, [(T0, "stdout", ln, False) for ln in lines])
    out = LogReader(log, LogOptions(tail_lines=30)).read(1 << 30)
    assert out.splitlines() == lines[-30:]
    assert tail_offset(log, 100) == 0 and tail_offset(log, 1000) == 0


def test_log_options_from_the_query_string() -> None:
    q = MultiDict(follow="true", tailLines="10", timestamps="1", sinceSeconds="5", previous="false")
    o = log_options(q)
    assert (o.follow, o.tail_lines, o.timestamps, o.since_seconds, o.previous) == (True, 10, True, 5, False)
    assert log_options(MultiDict(tail="all")).tail_lines is None
    assert log_options(MultiDict(sinceTime="2026-01-01T00:00:00Z")).since_time == 1767225600.0
    for bad in (
        {"tailLines": "-3"},
        {"sinceSeconds": "0"},
        {"sinceSeconds": "1", "sinceTime": "2026-01-01T00:00:00Z"},
        {"tailLines": "x"},
        {"stream": "Both"},
    ):
        with pytest.raises(LogOptionError):
            log_options(MultiDict(bad))


def test_the_container_init_writes_a_record_per_line(tmp_path: Path) -> None:
    r, w = os.pipe()
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    copier = shim._LogCopier(r, "stdout", fd, threading.Lock())
    long = b"y" * (shim.LOG_LINE_MAX + 10)
    os.write(w, b"alpha\nbe")
    time.sleep(0.05)
    os.write(w, b"ta\n" + long + b"\nno newline at the end")
    os.close(w)
    copier.thread.join(10)
    os.close(fd)
    recs = [parse_record(x) for x in (tmp_path / "log").read_bytes().split(b"\n")[:-1]]
    assert [(x.content, x.partial) for x in recs] == [
        (b"alpha", False),
        (b"beta", False),
        (long[: shim.LOG_LINE_MAX], True),
        (b"y" * 10, False),
        (b"no newline at the end", False),
    ]
    assert [(x.stream, abs(x.time_ns / 1e9 - time.time()) < 60) for x in recs] == [("stdout", True)] * 5
    assert (
        LogReader(tmp_path / "log", LogOptions()).read()
        == b"alpha\nbeta\n" + long + b"\nno newline at the end\n"
    )


# --- authorization and streaming details -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "verb", "subs"),
    [
        ("GET", "/metrics/resource", "get", ["metrics"]),
        ("GET", "/stats/summary", "get", ["stats"]),
        ("GET", "/containerLogs/ns/p/c", "get", ["proxy"]),
        ("GET", "/logs/", "get", ["log"]),
        ("GET", "/healthz", "get", ["healthz", "proxy"]),
        ("GET", "/pods", "get", ["pods", "proxy"]),
        ("POST", "/exec/ns/p/c", "create", ["proxy"]),
        ("GET", "/metricsx", "get", ["proxy"]),
    ],
)
def test_request_attributes_follow_the_kubelet(method: str, path: str, verb: str, subs: list[str]) -> None:
    assert request_attributes(method, path) == (verb, subs)


def test_client_certificate_names_the_caller() -> None:
    cert = {
        "subject": (
            (("organizationName", "system:masters"),),
            (("commonName", "kube-apiserver-kubelet-client"),),
        )
    }
    c = caller_from_peercert(cert)
    assert c is not None and (c.name, c.groups) == ("kube-apiserver-kubelet-client", ("system:masters",))
    assert caller_from_peercert(None) is None and caller_from_peercert({}) is None


def test_exec_status_messages() -> None:
    assert json.loads(status_message(0)) == {"metadata": {}, "status": "Success"}
    failed = json.loads(status_message(3))
    assert failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert json.loads(status_message(None, "boom"))["status"] == "Failure"


# --- metrics-server manifests --------------------------------------------------------------------------


def test_metrics_server_manifests_wire_the_apiservice_to_the_pod() -> None:
    spec = metrics_server.MetricsServerSpec(Path("/cache/metrics-server"), "v0.8.0", b"CA", b"CRT", b"KEY")
    docs = metrics_server.manifests(spec)
    by_kind = {d["kind"]: d for d in docs}
    api = by_kind["APIService"]
    assert api["metadata"]["name"] == "v1beta1.metrics.k8s.io"
    assert api["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system", "port": 443}
    assert api["spec"]["caBundle"] == "Q0E=" and "insecureSkipTLSVerify" not in api["spec"]
    c = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][0] == "/cache/metrics-server"
    args = c["command"][1:]
    assert "--kubelet-preferred-address-types=InternalIP" in args
    assert "--kubelet-use-node-status-port" in args
    assert f"--kubelet-certificate-authority={metrics_server.SA_CA}" in args
    assert "--metric-resolution=15s" in args
    assert not any("insecure" in a for a in args)
    assert by_kind["Service"]["spec"]["ports"][0]["targetPort"] == "https"
    rules = [r for d in docs if d["kind"] == "ClusterRole" for r in d["rules"]]
    assert {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]} in rules
    assert docs[-1]["kind"] == "APIService", "the APIService comes last, after what serves it"


def test_the_init_stops_copying_when_asked_even_if_the_pipe_stays_open(tmp_path: Path) -> None:
    r, w = os.pipe()  # `w` stays open, like a daemon of the container that holds its stdout
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    copier = shim._LogCopier(r, "stderr", fd, threading.Lock())
    os.write(w, b"last words\nunfinished")
    t = time.monotonic()
    copier.finish()
    assert not copier.thread.is_alive() and time.monotonic() - t < shim.LOG_DRAIN_SECONDS
    os.close(w)
    os.close(fd)
    assert LogReader(tmp_path / "log", LogOptions()).read() == b"last words\nunfinished\n"
