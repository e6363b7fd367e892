"""TLS and mutual TLS with certificates made in the test: wrong CA or no client cert refused."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cvae.v1 import generator_pb2 as pb
from cvae.v1 import generator_pb2_grpc as pb_grpc
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str, issuer: tuple[Pem, ec.EllipticCurvePrivateKey] | None, usage: str
) -> tuple[Pem, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    issuer_name = _name(subject)
    signing_key = key
    if issuer is not None:
        issuer_name = x509.load_pem_x509_certificate(issuer[0].cert).subject
        signing_key = issuer[1]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if usage == "ca":
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        purpose = (
            ExtendedKeyUsageOID.SERVER_AUTH
            if usage == "server"
            else (ExtendedKeyUsageOID.CLIENT_AUTH)
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), False)
    if usage == "server":
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    cert = builder.sign(signing_key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Pem(cert.public_bytes(serialization.Encoding.PEM), key_pem), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pem | Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca = _issue("test CA", None, "ca")
    rogue_ca = _issue("rogue CA", None, "ca")
    server, _ = _issue("localhost", ca, "server")
    client, _ = _issue("a client", ca, "client")
    rogue_client, _ = _issue("a rogue client", rogue_ca, "client")
    paths: dict[str, Pem | Path] = {
        "ca": ca[0], "rogue_ca": rogue_ca[0], "server": server, "client": client,
        "rogue_client": rogue_client,
    }  # fmt: skip
    for name, data in (
        ("ca.pem", ca[0].cert),
        ("server.pem", server.cert),
        ("server.key", server.key),
    ):
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    return paths


def _call(
    server: ServerProcess, credentials: grpc.ChannelCredentials | None
) -> pb.GenerateResponse:
    channel = (
        server.new_channel(credentials) if credentials else grpc.insecure_channel(server.address)
    )
    with channel:
        return pb_grpc.GeneratorStub(channel).Generate(pb.GenerateRequest(labels=[1]), timeout=10)


def _tls_args(pki: dict[str, Pem | Path], mutual: bool) -> list[str]:
    args = ["--tls-cert", str(pki["server.pem"]), "--tls-key", str(pki["server.key"])]
    return args + (["--tls-client-ca", str(pki["ca.pem"])] if mutual else [])


def test_tls_serves_clients_that_trust_the_ca_only(
    pki: dict[str, Pem | Path], shared_repo: Path
) -> None:
    ca, rogue_ca = pki["ca"], pki["rogue_ca"]
    assert isinstance(ca, Pem) and isinstance(rogue_ca, Pem)
    trusting = grpc.ssl_channel_credentials(root_certificates=ca.cert)
    with ServerProcess(shared_repo, *_tls_args(pki, mutual=False), credentials=trusting) as server:
        assert len(_call(server, trusting).images.data) == 784
        for credentials in (grpc.ssl_channel_credentials(rogue_ca.cert), None):
            with pytest.raises(grpc.RpcError) as raised:
                _call(server, credentials)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_needs_a_client_certificate_from_the_ca(
    pki: dict[str, Pem | Path], shared_repo: Path
) -> None:
    ca, client, rogue = pki["ca"], pki["client"], pki["rogue_client"]
    assert isinstance(ca, Pem) and isinstance(client, Pem) and isinstance(rogue, Pem)
    good = grpc.ssl_channel_credentials(ca.cert, client.key, client.cert)
    with ServerProcess(shared_repo, *_tls_args(pki, mutual=True), credentials=good) as server:
        assert len(_call(server, good).images.data) == 784
        refused = (
            grpc.ssl_channel_credentials(ca.cert),  # no client certificate
            grpc.ssl_channel_credentials(ca.cert, rogue.key, rogue.cert),  # signed by another CA
            None,  # plaintext
        )
        for credentials in refused:
            with pytest.raises(grpc.RpcError) as raised:
                _call(server, credentials)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_unreadable_certificate_exits_naming_the_file(shared_repo: Path, tmp_path: Path) -> None:
    from tests.service.serverproc import run_serve

    missing = tmp_path / "nope.pem"
    result = run_serve(shared_repo, "--tls-cert", str(missing), "--tls-key", str(missing))
    assert result.returncode == 1
    assert f"{missing}: cannot read --tls-cert file" in result.stderr
