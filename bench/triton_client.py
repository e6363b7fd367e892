"""Triton-side client pieces, run inside `.venv-triton/` (which has tritonclient[grpc]).

`python -m bench.triton_client frame --images N --latent-dim D --out FILE` writes one KServe v2
`ModelInfer` request as a gRPC frame for h2load; `... check --port P --images N --latent-dim D`
makes one real call with tritonclient and prints its outcome as JSON.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys

MODEL_NAME = "cvae"


def _inputs(images: int, latent_dim: int, seed: int) -> tuple[object, object]:
    import numpy as np

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((images, latent_dim), dtype=np.float32)
    labels = (np.arange(images, dtype=np.int64) % 10).reshape(images, 1)
    return z, labels


def build_request(images: int, latent_dim: int, seed: int) -> bytes:
    """A serialized ModelInferRequest carrying z and label as raw little-endian contents."""
    from tritonclient.grpc import service_pb2

    z, labels = _inputs(images, latent_dim, seed)
    request = service_pb2.ModelInferRequest(model_name=MODEL_NAME)
    for name, datatype, array in (("z", "FP32", z), ("label", "INT64", labels)):
        tensor = request.inputs.add()
        tensor.name = name
        tensor.datatype = datatype
        tensor.shape.extend(array.shape)  # type: ignore[attr-defined]
        request.raw_input_contents.append(array.tobytes())  # type: ignore[attr-defined]
    request.outputs.add().name = "image"
    return request.SerializeToString()  # type: ignore[no-any-return]


def check(port: int, images: int, latent_dim: int, seed: int) -> dict[str, object]:
    """One real ModelInfer call through tritonclient: did it succeed, with the right shape?"""
    import tritonclient.grpc as grpcclient

    z, labels = _inputs(images, latent_dim, seed)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    inputs = [
        grpcclient.InferInput("z", list(z.shape), "FP32"),  # type: ignore[attr-defined]
        grpcclient.InferInput("label", list(labels.shape), "INT64"),  # type: ignore[attr-defined]
    ]
    inputs[0].set_data_from_numpy(z)
    inputs[1].set_data_from_numpy(labels)
    try:
        result = client.infer(MODEL_NAME, inputs)
    except Exception as error:  # the outcome is the report: any failure is written out
        return {"ok": False, "error": str(error)}
    image = result.as_numpy("image")
    return {"ok": True, "shape": list(image.shape), "dtype": str(image.dtype)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    frame = commands.add_parser("frame")
    frame.add_argument("--out", required=True)
    one = commands.add_parser("check")
    one.add_argument("--port", type=int, required=True)
    for sub in (frame, one):
        sub.add_argument("--images", type=int, required=True)
        sub.add_argument("--latent-dim", type=int, required=True)
        sub.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    if args.command == "frame":
        message = build_request(args.images, args.latent_dim, args.seed)
        with open(args.out, "wb") as out:
            out.write(struct.pack(">BI", 0, len(message)) + message)
        return 0
    outcome = check(args.port, args.images, args.latent_dim, args.seed)
    sys.stdout.write(json.dumps(outcome) + "\n")
    return 0 if outcome["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
