"""Generate the gRPC stubs in cvae/v1/ from protos/ with grpcio-tools."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

_LOGGER = logging.getLogger(__name__)
_ROOT = Path(__file__).resolve().parent.parent
_PROTO_ROOT = _ROOT / "protos"
_PROTO_FILES = ("cvae/v1/generator.proto",)


def generate(out_dir: Path) -> list[Path]:
    """Write generator_pb2.py, .pyi and _pb2_grpc.py under out_dir/cvae/v1/; return them."""
    from grpc_tools import protoc  # dev dependency, imported only here

    out_dir.mkdir(parents=True, exist_ok=True)
    for proto in _PROTO_FILES:
        args = [
            "grpc_tools.protoc",
            f"-I{_PROTO_ROOT}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(_PROTO_ROOT / proto),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")
    return sorted((out_dir / "cvae" / "v1").glob("*_pb2*.py*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=_ROOT, help="root to write cvae/v1/ under")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        _LOGGER.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
