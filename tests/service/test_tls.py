"""TLS and mutual TLS with certificates made in the test: wrong CA or no client cert refused."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

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
