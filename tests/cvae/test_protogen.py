"""The committed gRPC stubs are exactly what grpcio-tools makes from protos/."""

from __future__ import annotations

from pathlib import Path

from cvae import protogen

_STUBS = Path(protogen.__file__).resolve().parent / "v1"


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    generated = protogen.generate(tmp_path)
    assert {p.name for p in generated} == {
        "generator_pb2.py",
        "generator_pb2.pyi",
        "generator_pb2_grpc.py",
    }
    for fresh in generated:
        committed = _STUBS / fresh.name
        assert committed.exists(), f"{committed} is missing: run `make proto`"
        assert committed.read_text() == fresh.read_text(), (
            f"{committed} drifted from protos/: run `make proto` and commit"
        )
