"""Serving certificates for the admission webhook.

Three sources, one interface (``CertSource``):

* ``SelfSignedCertSource`` keeps a generated CA and serving certificate in memory (tests, ``rayop webhook``
  without a cluster to store them in);
* ``SecretCertSource`` stores the CA and serving certificate in a Secret, so every operator replica (and a
  restarted one) serves the same certificate, and rotates them before they expire;
* ``FileCertSource`` reads ``tls.crt``/``tls.key`` (and ``ca.crt``) from a directory that cert-manager or a
  projected Secret keeps current, and notices when they change.

The webhook server asks ``refresh()`` periodically; a returned bundle means "serve this from now on", and
its ``ca_bundle`` is what the ValidatingWebhookConfiguration must trust.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from cryptography import x509

from rayop.base import pki
from rayop.base.files import replace_private
from rayop.runtime.client import SECRETS, ApiClient, ApiError

GENERATED_MARKER = ".rayop-generated"

log = logging.getLogger("rayop.webhook.certs")

Clock = Callable[[], dt.datetime]

CA_VALIDITY = dt.timedelta(days=3650)
SERVING_VALIDITY = dt.timedelta(days=365)
# Rotate when less than this share of the validity is left: long enough to survive an outage of the
# operator, short enough that a leaked key does not live for the whole year.
ROTATE_REMAINING_FRACTION = 1 / 3


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class CertBundle:
    """What the server needs to serve TLS, plus what the API server needs to trust it."""

    cert_pem: bytes
    key_pem: bytes
    ca_bundle: bytes  # one or more PEM CA certificates (two while a CA rotation is in progress)
    not_before: dt.datetime
    not_after: dt.datetime
    ca_key_pem: bytes = b""  # only for generated certificates

    def remaining(self, now: dt.datetime) -> dt.timedelta:
        return self.not_after - now

    def needs_rotation(self, now: dt.datetime, fraction: float = ROTATE_REMAINING_FRACTION) -> bool:
        return self.remaining(now) < (self.not_after - self.not_before) * fraction

    @property
    def serial(self) -> int:
        return x509.load_pem_x509_certificate(self.cert_pem).serial_number


def generate_ca(
    common_name: str = "rayop-webhook-ca",
    *,
    now: dt.datetime | None = None,
    validity: dt.timedelta = CA_VALIDITY,
) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM) of a new self-signed CA."""
    cert, key = pki.make_ca(common_name, now=now or utcnow(), validity=validity)
    return pki.pem(cert), pki.key_pem(key)


def generate_serving_cert(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    sans: Sequence[str],
    *,
    now: dt.datetime | None = None,
    validity: dt.timedelta = SERVING_VALIDITY,
) -> tuple[bytes, bytes, dt.datetime, dt.datetime]:
    """(cert PEM, key PEM, not_before, not_after) of a serving certificate for ``sans`` signed by the CA."""
    if not sans:
        raise ValueError("a serving certificate needs at least one subject alternative name")
    ca_cert = pki.load_cert(ca_cert_pem)
    cert, key = pki.make_leaf(
        ca_cert,
        pki.load_key(ca_key_pem),
        sans[0],
        sans=sans,
        server=True,
        now=now or utcnow(),
        validity=validity,
    )
    return pki.pem(cert), pki.key_pem(key), cert.not_valid_before_utc, cert.not_valid_after_utc


cert_validity = pki.validity_of
split_pems = pki.split_pems


def new_bundle(
    sans: Sequence[str],
    *,
    now: dt.datetime | None = None,
    ca: tuple[bytes, bytes] | None = None,
    extra_trusted: bytes = b"",
    serving_validity: dt.timedelta = SERVING_VALIDITY,
    ca_validity: dt.timedelta = CA_VALIDITY,
) -> CertBundle:
    """A serving certificate (and a new CA unless ``ca`` is given); ``extra_trusted`` CAs stay trusted too."""
    now = now or utcnow()
    ca_cert, ca_key = ca or generate_ca(now=now, validity=ca_validity)
    cert, key, nb, na = generate_serving_cert(ca_cert, ca_key, sans, now=now, validity=serving_validity)
    return CertBundle(cert, key, ca_cert + extra_trusted, nb, na, ca_key)


class CertSource(Protocol):
    """Where the webhook's serving certificate comes from."""

    async def load(self) -> CertBundle: ...

    async def refresh(self) -> CertBundle | None:
        """A new bundle when the certificate changed (rotated, or files replaced), else None."""
        ...

    async def rotate(self, *, ca: bool = False) -> CertBundle:
        """Replace the serving certificate now (and the CA too with ``ca=True``)."""
        ...


class SelfSignedCertSource:
    """Generated in memory; rotated by ``refresh()`` when due."""

    def __init__(
        self,
        sans: Sequence[str],
        *,
        clock: Clock = utcnow,
        serving_validity: dt.timedelta = SERVING_VALIDITY,
        ca_validity: dt.timedelta = CA_VALIDITY,
    ) -> None:
        self.sans = list(sans)
        self.clock = clock
        self.serving_validity = serving_validity
        self.ca_validity = ca_validity
        self.bundle: CertBundle | None = None

    async def load(self) -> CertBundle:
        if self.bundle is None:
            self.bundle = await asyncio.to_thread(
                new_bundle,
                self.sans,
                now=self.clock(),
                serving_validity=self.serving_validity,
                ca_validity=self.ca_validity,
            )
        return self.bundle

    async def refresh(self) -> CertBundle | None:
        b = await self.load()
        if b.needs_rotation(self.clock()):
            return await self.rotate()
        return None

    async def rotate(self, *, ca: bool = False) -> CertBundle:
        old = await self.load()
        self.bundle = await asyncio.to_thread(
            _rotated, old, self.sans, self.clock(), ca, self.serving_validity, self.ca_validity
        )
        return self.bundle


def _rotated(
    old: CertBundle,
    sans: Sequence[str],
    now: dt.datetime,
    ca: bool,
    serving_validity: dt.timedelta,
    ca_validity: dt.timedelta,
) -> CertBundle:
    old_ca = split_pems(old.ca_bundle)[0] if old.ca_bundle else b""
    ca_remaining_short = False
    if old_ca:
        nb, na = cert_validity(old_ca)
        ca_remaining_short = (na - now) < (na - nb) * ROTATE_REMAINING_FRACTION or (
            na - now
        ) < serving_validity
    if ca or ca_remaining_short or not old.ca_key_pem:
        # The old CA stays trusted next to the new one, so certificates it signed keep working while the
        # API server picks up the new caBundle.
        return new_bundle(
            sans, now=now, extra_trusted=old_ca, serving_validity=serving_validity, ca_validity=ca_validity
        )
    return new_bundle(sans, now=now, ca=(old_ca, old.ca_key_pem), serving_validity=serving_validity)


class SecretCertSource:
    """CA and serving certificate kept in a Secret (keys ``ca.crt``, ``ca.key``, ``tls.crt``, ``tls.key``).

    Every replica reads the same Secret; whoever sees the certificate due for rotation writes the new one
    with the Secret's resourceVersion, so concurrent rotations cannot both win.
    """

    def __init__(
        self,
        client: ApiClient,
        namespace: str,
        name: str,
        sans: Sequence[str],
        *,
        clock: Clock = utcnow,
        serving_validity: dt.timedelta = SERVING_VALIDITY,
        ca_validity: dt.timedelta = CA_VALIDITY,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.sans = list(sans)
        self.clock = clock
        self.serving_validity = serving_validity
        self.ca_validity = ca_validity
        self.bundle: CertBundle | None = None
        self._rv: str | None = None

    @staticmethod
    def _decode(secret: dict[str, object]) -> CertBundle | None:
        data = secret.get("data")
        if not isinstance(data, dict):
            return None
        try:
            got = {k: base64.b64decode(str(data[k])) for k in ("ca.crt", "tls.crt", "tls.key")}
            ca_key = base64.b64decode(str(data.get("ca.key", "")))
            nb, na = cert_validity(got["tls.crt"])
        except (KeyError, ValueError) as e:
            log.warning("webhook certificate Secret is unusable (%s); generating a new one", e)
            return None
        return CertBundle(got["tls.crt"], got["tls.key"], got["ca.crt"], nb, na, ca_key)

    def _secret(self, b: CertBundle) -> dict[str, object]:
        enc = {
            "ca.crt": b.ca_bundle,
            "ca.key": b.ca_key_pem,
            "tls.crt": b.cert_pem,
            "tls.key": b.key_pem,
        }
        md: dict[str, object] = {
            "name": self.name,
            "namespace": self.namespace,
            "labels": {"app.kubernetes.io/name": "rayop", "app.kubernetes.io/component": "webhook"},
        }
        if self._rv:
            md["resourceVersion"] = self._rv
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": md,
            "data": {k: base64.b64encode(v).decode() for k, v in enc.items()},
        }

    def _covers_sans(self, b: CertBundle) -> bool:
        c = x509.load_pem_x509_certificate(b.cert_pem)
        try:
            ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        have = {str(v) for v in ext.get_values_for_type(x509.DNSName)}
        have |= {str(v) for v in ext.get_values_for_type(x509.IPAddress)}
        return all(str(ipaddress.ip_address(s)) in have if _is_ip(s) else s in have for s in self.sans)

    async def _read(self) -> CertBundle | None:
        s = await self.client.get_or_none(SECRETS, self.name, self.namespace)
        if s is None:
            self._rv = None
            return None
        self._rv = str(s.get("metadata", {}).get("resourceVersion") or "") or None
        return self._decode(s)

    async def _write(self, b: CertBundle) -> CertBundle:
        body = self._secret(b)
        try:
            if self._rv:
                saved = await self.client.replace(SECRETS, body)
            else:
                saved = await self.client.create(SECRETS, body, self.namespace)
        except ApiError as e:
            if not (e.conflict or e.already_exists):
                raise
            # Another replica wrote first: serve what it wrote.
            current = await self._read()
            if current is None:
                raise
            return current
        self._rv = str(saved.get("metadata", {}).get("resourceVersion") or "") or None
        return b

    async def load(self) -> CertBundle:
        b = await self._read()
        now = self.clock()
        if b is None or not self._covers_sans(b) or b.not_after <= now:
            fresh = await asyncio.to_thread(
                new_bundle,
                self.sans,
                now=now,
                serving_validity=self.serving_validity,
                ca_validity=self.ca_validity,
            )
            b = await self._write(fresh)
        elif b.needs_rotation(now):
            b = await self._write(
                await asyncio.to_thread(
                    _rotated, b, self.sans, now, False, self.serving_validity, self.ca_validity
                )
            )
        self.bundle = b
        return b

    async def refresh(self) -> CertBundle | None:
        before = self.bundle
        b = await self.load()
        if before is None or b.cert_pem != before.cert_pem or b.ca_bundle != before.ca_bundle:
            return b
        return None

    async def rotate(self, *, ca: bool = False) -> CertBundle:
        current = await self._read() or await self.load()
        rotated = await asyncio.to_thread(
            _rotated, current, self.sans, self.clock(), ca, self.serving_validity, self.ca_validity
        )
        self.bundle = await self._write(rotated)
        return self.bundle


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


class FileCertSource:
    """Certificates mounted from a directory (cert-manager / projected Secret), re-read when they change."""

    def __init__(
        self,
        cert_dir: str | Path,
        cert_name: str = "tls.crt",
        key_name: str = "tls.key",
        ca_name: str = "ca.crt",
    ) -> None:
        self.dir = Path(cert_dir)
        self.cert_path = self.dir / cert_name
        self.key_path = self.dir / key_name
        self.ca_path = self.dir / ca_name
        self.bundle: CertBundle | None = None
        self._stamp: tuple[float, ...] = ()

    def _mtimes(self) -> tuple[float, ...]:
        out = []
        for p in (self.cert_path, self.key_path, self.ca_path):
            try:
                out.append(p.stat().st_mtime)
            except OSError:
                out.append(0.0)
        return tuple(out)

    def _read(self) -> CertBundle:
        cert = self.cert_path.read_bytes()
        key = self.key_path.read_bytes()
        ca = self.ca_path.read_bytes() if self.ca_path.exists() else b""
        nb, na = cert_validity(cert)
        return CertBundle(cert, key, ca, nb, na)

    async def load(self) -> CertBundle:
        self._stamp = self._mtimes()
        self.bundle = await asyncio.to_thread(self._read)
        return self.bundle

    async def refresh(self) -> CertBundle | None:
        stamp = self._mtimes()
        if stamp == self._stamp:
            return None
        try:
            b = await asyncio.to_thread(self._read)
        except (OSError, ValueError) as e:
            # A half-written update (cert replaced, key not yet): keep serving, try again next tick.
            log.info("webhook certificate files changing (%s); keeping the current certificate", e)
            return None
        self._stamp = stamp
        if (
            self.bundle is not None
            and b.cert_pem == self.bundle.cert_pem
            and b.key_pem == self.bundle.key_pem
        ):
            self.bundle = replace(self.bundle, ca_bundle=b.ca_bundle)
            return None
        self.bundle = b
        return b

    async def rotate(self, *, ca: bool = False) -> CertBundle:
        raise NotImplementedError(
            "mounted certificates are rotated by whoever writes them (e.g. cert-manager)"
        )

    def write(self, b: CertBundle) -> None:
        """Write a bundle in the layout this source reads (used to hand generated certificates to files)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        # Marks the files as a copy of generated certificates: on the next start they are not taken
        # for mounted ones (which are never rotated by us), see make_cert_source.
        (self.dir / GENERATED_MARKER).write_text("generated by rayop; rotated by the operator\n")
        self.ca_path.write_bytes(b.ca_bundle)
        replace_private(self.key_path, b.key_pem)
        self.cert_path.write_bytes(b.cert_pem)
