"""The committed gRPC stubs are exactly what grpcio-tools makes from protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cvae import protogen

_CVAE = Path(protogen.__file__).resolve().parent


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    generated = protogen.generate(tmp_path)
    assert {str(p.relative_to(tmp_path)) for p in generated} == {
        "cvae/v1/generator_pb2.py",
        "cvae/v1/generator_pb2.pyi",
        "cvae/v1/generator_pb2_grpc.py",
        "cvae/inference/grpc_service_pb2.py",
        "cvae/inference/grpc_service_pb2.pyi",
        "cvae/inference/grpc_service_pb2_grpc.py",
    }
    for fresh in generated:
        committed = _CVAE.parent / fresh.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is missing: run `make proto`"
        assert committed.read_text() == fresh.read_text(), (
            f"{committed} drifted from protos/: run `make proto` and commit"
        )


def test_the_inference_stubs_load_beside_tritonclients_own() -> None:
    # Both define inference.ModelInferRequest etc.; in one descriptor pool the second would fail.
    code = (
        "import tritonclient.grpc, tritonclient.grpc.service_pb2 as theirs\n"
        "from cvae.inference import grpc_service_pb2 as ours\n"
        "wire = ours.ModelInferRequest(model_name='m', id='7').SerializeToString()\n"
        "assert theirs.ModelInferRequest.FromString(wire).id == '7'\n"
        "assert ours.DESCRIPTOR.services_by_name['GRPCInferenceService'].full_name == "
        "'inference.GRPCInferenceService'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
