"""The bottom-layer helpers (rayop.base): processes, timestamps, private files, certificates."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

from rayop.base import pki
from rayop.base.files import replace_private, write_private
from rayop.base.names import ALPHABET, random_suffix
from rayop.base.procs import cmdline, pid_alive
from rayop.base.times import format_micro_time, format_time, parse_time, parse_timestamp

# A process whose name holds ") Z ": the stat line then reads "(x) Z y) S ...". Splitting it at the first
# ") " (what the local plane's copy did) takes the process for a zombie.
_ODD_NAME = r"""
import ctypes, sys, time
ctypes.CDLL(None).prctl(15, b"x) Z y", 0, 0, 0)
sys.stdout.write("ready\n"); sys.stdout.flush()
time.sleep(60)
"""


def test_pid_alive_survives_a_process_name_with_parentheses() -> None:
    p = subprocess.Popen([sys.executable, "-c", _ODD_NAME], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        assert ") Z " in Path(f"/proc/{p.pid}/stat").read_text()
        assert pid_alive(p.pid)
        assert "prctl" in cmdline(p.pid)
    finally:
        p.kill()
        p.wait()
    assert not pid_alive(p.pid)
    assert cmdline(p.pid) == ""


def test_a_zombie_counts_as_dead() -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while "Z" not in Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not pid_alive(p.pid)
    p.wait()


def test_times_round_trip_in_every_form_kubernetes_writes() -> None:
    t = dt.datetime(2026, 5, 1, 12, 0, 3, 250000, tzinfo=dt.UTC)
    assert format_time(t) == "2026-05-01T12:00:03Z"
    assert format_micro_time(t) == "2026-05-01T12:00:03.250000Z"
    assert format_time(t.timestamp()) == "2026-05-01T12:00:03Z"
    assert parse_time("2026-05-01T12:00:03.250000Z") == t
    assert parse_time("2026-05-01T14:00:03.25+02:00") == t
    assert parse_timestamp("2026-05-01T12:00:03Z") == t.replace(microsecond=0).timestamp()
    for bad in ("", "yesterday", None, 17):
        assert parse_time(bad) is None


def test_private_files_are_owner_only_even_when_they_existed(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_bytes(b"old")
    os.chmod(f, 0o644)
    write_private(f, b"secret")
    assert f.read_bytes() == b"secret" and stat.S_IMODE(f.stat().st_mode) == 0o600
    replace_private(f, b"newer")
    assert f.read_bytes() == b"newer" and stat.S_IMODE(f.stat().st_mode) == 0o600


def test_random_suffix_uses_the_api_servers_alphabet() -> None:
    s = random_suffix()
    assert len(s) == 5 and set(s) <= set(ALPHABET)


def test_a_leaf_signed_by_the_ca_verifies_and_never_outlives_it(tmp_path: Path) -> None:
    ca, ca_key = pki.make_ca("test-ca", validity=dt.timedelta(days=10))
    leaf, key = pki.make_leaf(ca, ca_key, "svc", sans=["svc.ns.svc", "127.0.0.1"], server=True)
    assert leaf.not_valid_after_utc <= ca.not_valid_after_utc
    leaf.verify_directly_issued_by(ca)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.load_chain(ctx, pki.pem(leaf), pki.key_pem(key))  # a matching key and certificate load
    assert pki.split_pems(pki.pem(ca) + pki.pem(leaf)) == [pki.pem(ca), pki.pem(leaf)]
