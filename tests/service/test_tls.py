"""TLS and mutual TLS with certificates made in the test: wrong CA or no client cert refused."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cvae.v1 import generator_pb2 as pb
from cvae.v1 import generator_pb2_grpc as pb_grpc
from tests.cvae.certs import make_certificates
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pem | Path]:
    """The test CA with its server and client, and a rogue CA with a client of its own."""
    good = make_certificates(tmp_path_factory.mktemp("pki"))
    rogue = make_certificates(tmp_path_factory.mktemp("rogue-pki"))
    return {
        "ca": Pem(good.ca.read_bytes(), b""),
        "rogue_ca": Pem(rogue.ca.read_bytes(), b""),
        "client": Pem(good.client_cert.read_bytes(), good.client_key.read_bytes()),
        "rogue_client": Pem(rogue.client_cert.read_bytes(), rogue.client_key.read_bytes()),
        "ca.pem": good.ca, "server.pem": good.server_cert, "server.key": good.server_key,
    }  # fmt: skip


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


def _mount_secret(folder: Path, version: str, files: dict[str, bytes]) -> None:
    """Lay out `files` as the kubelet updates a Secret volume: the files live in a timestamped
    folder, `..data` points at it, each name points into `..data`; an update writes a new folder
    and swaps `..data` in one rename, so cert and key always change together."""
    (folder / version).mkdir(parents=True)
    for name, data in files.items():
        (folder / version / name).write_bytes(data)
    link = folder / "..data_tmp"
    link.symlink_to(version)
    link.replace(folder / "..data")
    for name in files:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")


def test_a_renewed_certificate_is_served_without_a_restart(
    shared_repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first, second = make_certificates(tmp_path / "first"), make_certificates(tmp_path / "second")
    secret = tmp_path / "secret"

    def files(pki: object) -> dict[str, bytes]:
        return {
            "tls.crt": pki.server_cert.read_bytes(),  # type: ignore[attr-defined]
            "tls.key": pki.server_key.read_bytes(),  # type: ignore[attr-defined]
        }

    def fresh_connection(ca: Path) -> int:
        """A Generate over a new TLS connection (no subchannel shared with earlier calls)."""
        credentials = grpc.ssl_channel_credentials(ca.read_bytes())
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.secure_channel(server.address, credentials, options=options) as channel:
            stub = pb_grpc.GeneratorStub(channel)
            return len(stub.Generate(pb.GenerateRequest(labels=[1]), timeout=10).images.data)

    _mount_secret(secret, "..2026_01", files(first))
    trust_first = grpc.ssl_channel_credentials(first.ca.read_bytes())
    tls = ["--tls-cert", str(secret / "tls.crt"), "--tls-key", str(secret / "tls.key")]
    with ServerProcess(shared_repo, *tls, credentials=trust_first) as server:
        assert fresh_connection(first.ca) == 784
        # A broken renewal (not PEM) is refused: the certificate in use stays.
        _mount_secret(secret, "..2026_02", {"tls.crt": b"garbage", "tls.key": b"garbage"})
        assert fresh_connection(first.ca) == 784
        # cert-manager renews from another CA: new connections get the new certificate.
        _mount_secret(secret, "..2026_03", files(second))
        assert fresh_connection(second.ca) == 784
        with pytest.raises(grpc.RpcError) as stale:
            fresh_connection(first.ca)
        assert stale.value.code() == grpc.StatusCode.UNAVAILABLE
        log = server.log()
    assert "TLS certificate reloaded" in log
    assert "cannot be used, keeping the old" in log


def _expired_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed localhost certificate that expired yesterday, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (folder / "expired.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "expired.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "expired.pem", folder / "expired.key"


_GARBAGE_PEM = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
_GARBAGE_KEY = b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    "case", ["key-of-another-certificate", "garbage-certificate", "garbage-key", "expired"]
)
def test_bad_tls_files_exit_with_one_line_naming_the_file_and_problem(
    shared_repo: Path, tmp_path: Path, case: str
) -> None:
    from tests.service.serverproc import run_serve

    good = make_certificates(tmp_path)
    cert, key = good.server_cert, good.server_key
    if case == "key-of-another-certificate":
        (tmp_path / "other").mkdir()
        key = make_certificates(tmp_path / "other").server_key
        named, problem = key, "is not the private key of the certificate in"
    elif case == "garbage-certificate":
        cert = tmp_path / "garbage.pem"
        cert.write_bytes(_GARBAGE_PEM)
        named, problem = cert, "holds no readable PEM certificate"
    elif case == "garbage-key":
        key = tmp_path / "garbage.key"
        key.write_bytes(_GARBAGE_KEY)
        named, problem = key, "holds no readable, unencrypted PEM private key"
    else:
        cert, key = _expired_certificate(tmp_path)
        named, problem = cert, "certificate expired on"
    result = run_serve(shared_repo, "--tls-cert", str(cert), "--tls-key", str(key))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cvae serve: {named}: "), lines[0]
    assert problem in lines[0], lines[0]
    assert "--port" not in lines[0]
