"""Certificate authorities and the certificates they sign, made with `cryptography` (no openssl needed).

One implementation for every place that needs certificates: the local plane (serving and client CAs,
the API server, admin and component client certificates), the node agent's kubelet API, and the
admission webhook (a generated CA that it rotates). Keys are P-256: fast to generate and to handshake
with, and accepted by every Kubernetes component.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rayop.base.files import write_private

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# Tolerate clock skew between the machine that signs and the one that checks.
BACKDATE = dt.timedelta(minutes=5)
CA_VALIDITY = dt.timedelta(days=3650)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(data: bytes) -> Key:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError("expected an EC or RSA private key")
    return key


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(data: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def subject_alt_names(names: Sequence[str]) -> list[x509.GeneralName]:
    """IP addresses as IP SANs, everything else as DNS SANs."""
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    cn: str, *, now: dt.datetime | None = None, validity: dt.timedelta = CA_VALIDITY
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA that signs leaf certificates only (path length 0)."""
    now = now or dt.datetime.now(dt.UTC)
    key = new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    ca_cert: x509.Certificate,
    ca_key: Key,
    cn: str,
    *,
    org: str | None = None,
    sans: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    now: dt.datetime | None = None,
    validity: dt.timedelta = CA_VALIDITY,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for `cn` (and `org`, which Kubernetes reads as the user's group) signed by the CA,
    for serving (`sans` names it), for client authentication, or both. It never outlives its CA, or the
    peer would stop trusting it early."""
    now = now or dt.datetime.now(dt.UTC)
    key = new_key()
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(subject_alt_names(sans)), critical=False)
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = None  # a CA made by an older release: no key identifier to point at
    if ski is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    return b.sign(ca_key, hashes.SHA256()), key


def validity_of(cert_pem: bytes) -> tuple[dt.datetime, dt.datetime]:
    c = load_cert(cert_pem)
    return c.not_valid_before_utc, c.not_valid_after_utc


def split_pems(bundle: bytes) -> list[bytes]:
    """The certificates of a PEM bundle, one PEM each."""
    marker = b"-----END CERTIFICATE-----"
    out = []
    for part in bundle.split(marker):
        part = part.strip()
        if part:
            out.append(part + b"\n" + marker + b"\n")
    return out


def load_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Load a certificate and key held in memory into `ctx`. The ssl module reads them only from files:
    write both to a private temporary folder, owner-only, and remove it once loaded."""
    with tempfile.TemporaryDirectory(prefix="rayop-tls-") as d:
        cert, key = Path(d, "tls.crt"), Path(d, "tls.key")
        write_private(key, key_pem)
        cert.write_bytes(cert_pem)
        ctx.load_cert_chain(str(cert), str(key))
