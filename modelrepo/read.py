"""Read one version folder: model.json parsed and checked, each graph file against its sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from modelrepo.errors import ModelRepositoryError
from modelrepo.folders import ModelRepository
from modelrepo.spec import DESCRIPTION_FILE, ModelSpec, parse_document


def read_spec(folder: Path) -> ModelSpec:
    """The checked spec of the version in `folder`; ModelRepositoryError names what is wrong."""
    json_path = folder / DESCRIPTION_FILE
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelRepositoryError(f"{json_path}: file is missing") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelRepositoryError(f"{json_path}: cannot be read ({error})") from None
    except json.JSONDecodeError as error:
        raise ModelRepositoryError(f"{json_path}: not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise ModelRepositoryError(f"{json_path}: must hold a JSON object")
    spec = parse_document(document, folder)
    if spec.version != folder.name:
        raise ModelRepositoryError(
            f"{json_path}: version {spec.version!r} does not match its folder {folder.name!r}"
        )
    for graph in spec.graphs:
        path = spec.path_of(graph)
        actual = sha256_of(path)
        if actual != graph.sha256.lower():
            raise ModelRepositoryError(
                f"{path}: sha256 {actual} does not match onnx_sha256 {graph.sha256} "
                f"in {json_path.name} (truncated or replaced file?)"
            )
    return spec


def newest_spec(root: Path, model_name: str = "") -> ModelSpec:
    """The checked spec of the highest version of `model_name` (or of the only model)."""
    return read_spec(ModelRepository(root, model_name).newest().path)


def sha256_of(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            digest = hashlib.file_digest(stream, "sha256")
    except FileNotFoundError:
        raise ModelRepositoryError(f"{path}: file is missing") from None
    except OSError as error:
        raise ModelRepositoryError(f"{path}: cannot be read ({error})") from None
    return digest.hexdigest()
