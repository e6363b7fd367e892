"""Generate the gRPC stubs in cvae/v1/ and cvae/inference/ from protos/ with grpcio-tools."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

_LOGGER = logging.getLogger(__name__)
_ROOT = Path(__file__).resolve().parent.parent
_PROTO_ROOT = _ROOT / "protos"
# (import path protoc sees, file under protos/): the import path decides the Python package.
_PROTO_FILES = (
    ("cvae/v1/generator.proto", "cvae/v1/generator.proto"),
    ("cvae/inference/grpc_service.proto", "inference/grpc_service.proto"),
)
# The Open Inference Protocol's `inference.*` messages are also defined by tritonclient and other
# clients' stubs, in protobuf's default pool, where a second definition of a name fails to load.
# Ours live in a pool of their own, so one process can hold both.
_PRIVATE_POOL = {"cvae/inference/grpc_service.proto"}
_DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
_OWN_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("


def generate(out_dir: Path) -> list[Path]:
    """Write the _pb2.py, .pyi and _pb2_grpc.py files under out_dir/cvae/; return them."""
    from grpc_tools import protoc  # dev dependency, imported only here

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for import_path, source in _PROTO_FILES:
        package = Path(import_path).parent
        args = [
            "grpc_tools.protoc",
            f"-I{package}={_PROTO_ROOT / Path(source).parent}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(_PROTO_ROOT / source),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {source}")
        stem = Path(import_path).stem
        if import_path in _PRIVATE_POOL:
            _use_own_pool(out_dir / package / f"{stem}_pb2.py")
        written += (out_dir / package).glob(f"{stem}_pb2*.py*")
    return sorted(written)


def _use_own_pool(module: Path) -> None:
    text = module.read_text()
    if text.count(_DEFAULT_POOL) != 1:
        raise RuntimeError(f"{module}: expected one {_DEFAULT_POOL!r} line from protoc")
    module.write_text(text.replace(_DEFAULT_POOL, _OWN_POOL))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=_ROOT, help="root to write cvae/ stubs under")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        _LOGGER.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
