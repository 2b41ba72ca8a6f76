"""Certificates for the embedded control plane, made with `cryptography` (no openssl binary needed).

Layout follows test-control-plane.md §4.2: a serving CA + apiserver certificate, a client CA with an
admin (system:masters) and a kube-controller-manager certificate, and the service-account key pair.
Files are reused across restarts of the same state directory so kubeconfigs stay valid.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file that is never readable by others, not even for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
        os.write(fd, data)
    finally:
        os.close(fd)


def _write_key(path: Path, key: Key) -> None:
    write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def _load_key(path: Path) -> Key:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey))
    return key


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def make_ca(cn: str, days: int = 3650) -> tuple[x509.Certificate, Key]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    ca_cert: x509.Certificate,
    ca_key: Key,
    cn: str,
    *,
    org: str | None = None,
    dns: list[str] | None = None,
    ips: list[str] | None = None,
    server: bool = False,
    client: bool = False,
    days: int = 3650,
) -> tuple[x509.Certificate, Key]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
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
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or []]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class PlanePKI:
    dir: Path

    @property
    def serving_ca(self) -> Path:
        return self.dir / "serving-ca.crt"

    @property
    def apiserver_crt(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def client_ca(self) -> Path:
        return self.dir / "client-ca.crt"

    @property
    def client_ca_key(self) -> Path:
        return self.dir / "client-ca.key"

    @property
    def serving_ca_key(self) -> Path:
        return self.dir / "serving-ca.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def client_cert(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"


def ensure_pki(
    directory: Path, *, extra_ips: list[str] | None = None, extra_dns: list[str] | None = None
) -> PlanePKI:
    """Create what is missing. The apiserver certificate is re-issued when the wanted SANs change
    (e.g. the node agent's bridge address was added), keeping the CAs so old kubeconfigs stay valid."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = PlanePKI(directory)

    if not pki.serving_ca.exists():
        cert, key = make_ca("rayop-serving-ca")
        pki.serving_ca.write_bytes(pem(cert))
        _write_key(pki.serving_ca_key, key)
    if not pki.client_ca.exists():
        cert, key = make_ca("rayop-client-ca")
        pki.client_ca.write_bytes(pem(cert))
        _write_key(pki.client_ca_key, key)
    s_ca = x509.load_pem_x509_certificate(pki.serving_ca.read_bytes())
    s_key = _load_key(pki.serving_ca_key)
    c_ca = x509.load_pem_x509_certificate(pki.client_ca.read_bytes())
    c_key = _load_key(pki.client_ca_key)

    ips = sorted({"127.0.0.1", "10.0.0.1", *(extra_ips or [])})
    dns = sorted(
        {
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            *(extra_dns or []),
        }
    )
    sans_file = directory / "apiserver.sans"
    wanted = ",".join(ips + dns)
    if not pki.apiserver_crt.exists() or not sans_file.exists() or sans_file.read_text() != wanted:
        cert, key = make_leaf(s_ca, s_key, "kube-apiserver", dns=dns, ips=ips, server=True)
        pki.apiserver_crt.write_bytes(pem(cert))
        _write_key(pki.apiserver_key, key)
        sans_file.write_text(wanted)

    for name, cn, org in (
        ("admin", "rayop-admin", "system:masters"),
        ("kcm", "system:kube-controller-manager", "system:masters"),
        ("node", "system:node:rayop-node", "system:masters"),
    ):
        crt, keyp = pki.client_cert(name)
        if not crt.exists():
            cert, key = make_leaf(c_ca, c_key, cn, org=org, client=True)
            crt.write_bytes(pem(cert))
            _write_key(keyp, key)

    if not pki.sa_key.exists():
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(pki.sa_key, sa)
        pki.sa_pub.write_bytes(
            sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return pki
