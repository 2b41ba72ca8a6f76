"""Certificates for the embedded control plane, made with `cryptography` (no openssl binary needed).

Layout: a serving CA + apiserver certificate, a client CA with an
admin (system:masters) and a kube-controller-manager certificate, and the service-account key pair.
Files are reused across restarts of the same state directory so kubeconfigs stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rayop.base.files import write_private
from rayop.base.pki import Key, key_pem, load_cert, load_key, make_ca, make_leaf, pem


def _write_key(path: Path, key: Key) -> None:
    write_private(path, key_pem(key))


def _load_key(path: Path) -> Key:
    return load_key(path.read_bytes())


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
    s_ca = load_cert(pki.serving_ca.read_bytes())
    s_key = _load_key(pki.serving_ca_key)
    c_ca = load_cert(pki.client_ca.read_bytes())
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
        cert, key = make_leaf(s_ca, s_key, "kube-apiserver", sans=[*ips, *dns], server=True)
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
