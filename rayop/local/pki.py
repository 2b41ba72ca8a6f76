"""Certificates for the embedded control plane, made with `cryptography` (no openssl binary needed).

Layout: a serving CA + apiserver certificate, a client CA with an
admin (system:masters) and a kube-controller-manager certificate, and the service-account key pair.
Files are reused across restarts of the same state directory so kubeconfigs stay valid.

For aggregated API servers and the node's kubelet API (see docs/local-plane.md) there are also: a
front-proxy CA and the `front-proxy-client` certificate the API server presents when it forwards a request
to an APIService; the API server's kubelet client certificate (signed by the client CA, which the node agent
trusts); and serving certificates for the node agents' kubelet APIs and for in-cluster servers such as
metrics-server, signed by the serving CA that the API server and pods already trust.
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

    @property
    def front_proxy_ca(self) -> Path:
        return self.dir / "front-proxy-ca.crt"

    @property
    def front_proxy_ca_key(self) -> Path:
        return self.dir / "front-proxy-ca.key"

    @property
    def front_proxy_client(self) -> tuple[Path, Path]:
        return self.dir / "front-proxy-client.crt", self.dir / "front-proxy-client.key"

    @property
    def kubelet_client(self) -> tuple[Path, Path]:
        """The API server's client certificate towards kubelets (logs, exec, the node proxy)."""
        return self.client_cert("apiserver-kubelet-client")


# The name the front-proxy certificate carries; aggregated API servers accept forwarded requests only from
# a client certificate with this CN (--requestheader-allowed-names), as kubeadm sets it up.
FRONT_PROXY_CLIENT_CN = "front-proxy-client"
KUBELET_CLIENT_CN = "kube-apiserver-kubelet-client"


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

    ensure_aggregation_pki(pki)
    if not pki.sa_key.exists():
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(pki.sa_key, sa)
        pki.sa_pub.write_bytes(
            sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return pki


def ensure_aggregation_pki(pki: PlanePKI) -> None:
    """The front-proxy CA and client certificate, and the API server's kubelet client certificate."""
    if not pki.front_proxy_ca.exists():
        cert, key = make_ca("rayop-front-proxy-ca")
        pki.front_proxy_ca.write_bytes(pem(cert))
        _write_key(pki.front_proxy_ca_key, key)
    crt, keyp = pki.front_proxy_client
    if not crt.exists():
        ca, ca_key = load_cert(pki.front_proxy_ca.read_bytes()), _load_key(pki.front_proxy_ca_key)
        cert, key = make_leaf(ca, ca_key, FRONT_PROXY_CLIENT_CN, client=True)
        crt.write_bytes(pem(cert))
        _write_key(keyp, key)
    crt, keyp = pki.kubelet_client
    if not crt.exists():
        ca, ca_key = load_cert(pki.client_ca.read_bytes()), _load_key(pki.client_ca_key)
        # system:masters: the node agent authorizes every caller through SubjectAccessReviews, and the API
        # server may read logs, exec and port-forward on any node (kubeadm binds the same rights by RBAC).
        cert, key = make_leaf(ca, ca_key, KUBELET_CLIENT_CN, org="system:masters", client=True)
        crt.write_bytes(pem(cert))
        _write_key(keyp, key)


def issue_serving_cert(pki: PlanePKI, name: str, sans: list[str]) -> tuple[Path, Path]:
    """A serving certificate signed by the plane's serving CA (which the API server, kubectl and pods
    trust) for `sans`: a node agent's kubelet API (its InternalIP) or an in-cluster server (its Service's
    DNS names). Written as `<name>.crt`/`<name>.key`; re-issued only when the names change."""
    crt, keyp = pki.dir / f"{name}.crt", pki.dir / f"{name}.key"
    sans_file = pki.dir / f"{name}.sans"
    wanted = ",".join(sans)
    if crt.exists() and keyp.exists() and sans_file.exists() and sans_file.read_text() == wanted:
        return crt, keyp
    ca, ca_key = load_cert(pki.serving_ca.read_bytes()), _load_key(pki.serving_ca_key)
    cert, key = make_leaf(ca, ca_key, name, sans=sans, server=True)
    _write_key(keyp, key)
    crt.write_bytes(pem(cert))
    sans_file.write_text(wanted)
    return crt, keyp
