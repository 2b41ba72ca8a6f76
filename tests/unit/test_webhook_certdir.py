"""A --cert-dir the webhook filled itself is not mistaken for mounted certificates on the next start
(mounted ones are never rotated by rayop, so the generated ones would silently expire)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rayop.webhook.certs import FileCertSource, SelfSignedCertSource
from rayop.webhook.standalone import WebhookOptions, make_cert_source


def _bundle_files(d: Path) -> None:
    bundle = asyncio.run(SelfSignedCertSource(["127.0.0.1"]).load())
    FileCertSource(d).write(bundle)


def test_generated_files_are_regenerated_not_treated_as_mounted(tmp_path: Path) -> None:
    _bundle_files(tmp_path)
    assert (tmp_path / ".rayop-generated").exists()
    assert (tmp_path / "tls.key").stat().st_mode & 0o077 == 0
    src = make_cert_source(WebhookOptions(cert_dir=str(tmp_path)), None)
    assert isinstance(src, SelfSignedCertSource)


def test_mounted_files_are_used_as_they_are(tmp_path: Path) -> None:
    _bundle_files(tmp_path)
    (tmp_path / ".rayop-generated").unlink()
    src = make_cert_source(WebhookOptions(cert_dir=str(tmp_path)), None)
    assert isinstance(src, FileCertSource)
