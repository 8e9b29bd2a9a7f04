"""The TCP listener for the network manager: TLS and a bearer token, or nothing.

Certificates are made here with ``cryptography`` (a CA, a server certificate
for 127.0.0.1, a client certificate); the daemon listens on port 0 and logs
the port it got.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import primitives as prim
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from daemon_fixture import DaemonFactory

import ovs_sandbox

TOKEN = "s3cr3t-token-for-tests"


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    token_file: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(path, 0o600)


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
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
    elif server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue("vifplug test CA", ca_key, ca_key, _name("vifplug test CA"), ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue("localhost", server_key, ca_key, ca_cert.subject, server=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _issue("network-manager", client_key, ca_key, ca_cert.subject)
    pem = serialization.Encoding.PEM
    out = Pki(
        ca=tmp_path / "ca.pem",
        cert=tmp_path / "server.pem",
        key=tmp_path / "server.key",
        client_cert=tmp_path / "client.pem",
        client_key=tmp_path / "client.key",
        token_file=tmp_path / "token",
    )
    out.ca.write_bytes(ca_cert.public_bytes(pem))
    out.cert.write_bytes(server_cert.public_bytes(pem))
    _write_key(out.key, server_key)
    out.client_cert.write_bytes(client_cert.public_bytes(pem))
    _write_key(out.client_key, client_key)
    out.token_file.write_text(TOKEN + "\n")
    os.chmod(out.token_file, 0o600)
    return out


def _refused(
    daemon_factory: DaemonFactory, ovs: ovs_sandbox.OvsSandbox, api: dict[str, object]
) -> str:
    d = daemon_factory({"api": {"listen": "127.0.0.1:0", **api}}, wait=False)
    assert d.wait(60) == 2, d.stderr()
    assert not os.path.exists(d.socket_path)
    assert d.bridge not in ovs.vsctl("list-br").split()
    return d.stderr()


@pytest.mark.parametrize("missing", ["everything", "token", "tls"])
def test_tcp_listener_refuses_to_start_without_tls_and_token(
    daemon_factory: DaemonFactory, ovs: ovs_sandbox.OvsSandbox, pki: Pki, missing: str
) -> None:
    api: dict[str, object] = {}
    if missing == "token":
        api.update(cert_file=str(pki.cert), key_file=str(pki.key))
    elif missing == "tls":
        api.update(token_file=str(pki.token_file))
    log = _refused(daemon_factory, ovs, api)
    assert "needs TLS and a bearer token" in log
    assert "insecure" in log


def test_tcp_listener_refuses_an_unreadable_certificate(
    daemon_factory: DaemonFactory, ovs: ovs_sandbox.OvsSandbox, pki: Pki
) -> None:
    log = _refused(
        daemon_factory,
        ovs,
        {
            "cert_file": "/nonexistent.pem",
            "key_file": str(pki.key),
            "token_file": str(pki.token_file),
        },
    )
    assert "/nonexistent.pem" in log


def test_insecure_tcp_listener_runs_without_tls_and_token(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"api": {"listen": "127.0.0.1:0", "insecure": True}})
    url = d.tcp_address()
    assert url.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
    assert "WITHOUT" in d.stderr()


def test_tls_and_token_on_tcp(
    daemon_factory: DaemonFactory, pki: Pki, ovs: ovs_sandbox.OvsSandbox
) -> None:
    d = daemon_factory(
        {
            "api": {
                "listen": "127.0.0.1:0",
                "cert_file": str(pki.cert),
                "key_file": str(pki.key),
                "token_file": str(pki.token_file),
            }
        }
    )
    url = d.tcp_address()
    assert url.startswith("https://127.0.0.1:")
    verify = ssl.create_default_context(cafile=str(pki.ca))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, verify=verify, timeout=60) as c:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            r = c.get("/v1/host-info", headers=headers)
            assert r.status_code == 401, r.text
            assert r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
        r = c.post("/v1/vifs", json=prim.body(prim.vif_ovs(bridge=d.bridge)))
        assert r.status_code == 401
        assert d.bridge not in ovs.vsctl("list-br").split()

        assert c.get("/v1/host-info", headers=auth).json()["versioned_object.name"] == "HostInfo"
        vif = prim.vif_ovs(bridge=d.bridge)
        r = c.post("/v1/vifs", json=prim.body(vif), headers=auth)
        assert r.status_code == 201, r.text
        assert prim.data(vif)["vif_name"] in ovs.vsctl("list-ports", d.bridge).split()
    # Plain HTTP to the TLS port gets nowhere.
    with (
        httpx.Client(base_url=url.replace("https", "http"), timeout=10) as c,
        pytest.raises(httpx.HTTPError),
    ):
        c.get("/healthz", headers=auth)
    # The unix socket needs no token.
    with d.client() as c:
        assert c.get(f"/v1/vifs/{prim.data(vif)['id']}").status_code == 200


def test_ca_file_requires_client_certificates(daemon_factory: DaemonFactory, pki: Pki) -> None:
    d = daemon_factory(
        {
            "api": {
                "listen": "127.0.0.1:0",
                "cert_file": str(pki.cert),
                "key_file": str(pki.key),
                "token_file": str(pki.token_file),
                "ca_file": str(pki.ca),
            }
        }
    )
    url = d.tcp_address()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    anonymous = ssl.create_default_context(cafile=str(pki.ca))
    with (
        httpx.Client(base_url=url, verify=anonymous, timeout=10) as c,
        pytest.raises(httpx.HTTPError),
    ):
        c.get("/healthz", headers=auth)
    with_cert = ssl.create_default_context(cafile=str(pki.ca))
    with_cert.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    with httpx.Client(base_url=url, verify=with_cert, timeout=10) as c:
        assert c.get("/healthz", headers=auth).status_code == 200


def test_the_token_is_checked_before_the_body_on_every_path(
    daemon_factory: DaemonFactory, pki: Pki, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """Without the token every route, and a path that is none, answers 401
    before its body is looked at: a malformed body, a wrong media type or an
    oversized one all get the same 401, and nothing changes."""
    d = daemon_factory(
        {
            "api": {
                "listen": "127.0.0.1:0",
                "cert_file": str(pki.cert),
                "key_file": str(pki.key),
                "token_file": str(pki.token_file),
                "max_body_bytes": 4096,
            }
        }
    )
    document = json.loads((Path(__file__).parents[2] / "docs" / "openapi.json").read_text())
    routes = [
        (method.upper(), path.replace("{vif_id}", str(uuid.uuid4())))
        for path, operations in document["paths"].items()
        for method in operations
    ]
    routes.append(("POST", "/v1/no-such-route"))
    bodies = [
        (b"{not json", "application/json"),
        (b"<vif/>", "application/xml"),
        (b"{" + b" " * 8192 + b"}", "application/json"),
    ]
    verify = ssl.create_default_context(cafile=str(pki.ca))
    with httpx.Client(base_url=d.tcp_address(), verify=verify, timeout=60) as c:
        for method, path in routes:
            for content, media in bodies:
                r = c.request(method, path, content=content, headers={"content-type": media})
                assert r.status_code == 401, (method, path, media, r.status_code, r.text)
                assert r.json()["error"]["code"] == "unauthorized"
    with d.client() as c:
        assert c.get("/v1/vifs").json()["vifs"] == []
    assert d.bridge not in ovs.vsctl("list-br").split()
