"""Serve one ONNX decoder from NVIDIA Triton through PyTriton, with Triton's dynamic batcher.

Runs inside the separate Triton environment (`.venv-triton/`, Python 3.12), never in the
project's venv: `python bench/triton_model.py --onnx M --grpc-port P ...`. The inference callable
runs onnxruntime on the same ONNX file the service serves, with the same thread count, and (by
default) returns uint8 pixels round(255 x), the bytes the service's UINT8 encoding sends.
"""

from __future__ import annotations

import argparse
import logging

_LOGGER = logging.getLogger(__name__)
MODEL_NAME = "cvae"
_LOAD_TIMEOUT_S = 300.0


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--onnx", required=True, help="model.onnx to serve")
    parser.add_argument("--latent-dim", type=int, required=True)
    parser.add_argument("--image-height", type=int, default=28)
    parser.add_argument("--image-width", type=int, default=28)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument("--max-delay-us", type=int, default=2000)
    parser.add_argument("--intra-op-threads", type=int, default=2)
    parser.add_argument("--output", choices=("uint8", "float32"), default="uint8")
    parser.add_argument("--workdir", default=None, help="PyTriton workspace (default: a tmp dir)")
    return parser.parse_args(argv)


def serve(argv: list[str] | None = None) -> None:
    import numpy as np
    import onnxruntime as ort
    import pytriton.client.client as pytriton_client
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    # PyTriton loads the model with a 60 s HTTP timeout; the Python backend stub starting on a
    # busy 2-core machine took longer (TimeoutError in load_model). Give it 5 minutes.
    pytriton_client._DEFAULT_NETWORK_TIMEOUT_S = _LOAD_TIMEOUT_S  # type: ignore[attr-defined]

    args = _parse(argv)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.intra_op_threads
    options.inter_op_num_threads = 1
    as_uint8 = args.output == "uint8"
    session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])

    @batch
    def infer(z: np.ndarray, label: np.ndarray) -> dict[str, np.ndarray]:
        # label arrives as [N, 1] (Triton's batch dim + one element); the decoder wants [N].
        (image,) = session.run(["image"], {"z": z, "label": label.reshape(-1)})
        if as_uint8:
            image = np.rint(image * 255.0).astype(np.uint8)
        return {"image": image}

    config = TritonConfig(
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        log_verbose=0,
        exit_on_error=True,
    )
    with Triton(config=config, workspace=args.workdir) as triton:
        triton.bind(
            model_name=MODEL_NAME,
            infer_func=infer,
            inputs=[
                Tensor(name="z", dtype=np.float32, shape=(args.latent_dim,)),
                Tensor(name="label", dtype=np.int64, shape=(1,)),
            ],
            outputs=[
                Tensor(
                    name="image",
                    dtype=np.uint8 if as_uint8 else np.float32,
                    shape=(args.image_height, args.image_width),
                )
            ],
            config=ModelConfig(
                max_batch_size=args.max_batch,
                batcher=DynamicBatcher(max_queue_delay_microseconds=args.max_delay_us),
            ),
            strict=False,
        )
        _LOGGER.info("Triton serving %s on gRPC port %d", MODEL_NAME, args.grpc_port)
        triton.serve()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    serve()
