"""The model repository contract: `<root>/<name>/<version>/` folders of ONNX graphs + model.json.

Standard library only, so the service (which must not import torch), export, training's
evaluator and the bench all read, check and publish versions through this one package.
Layout and fields: docs/model-repository.md.

- `spec`: what model.json holds (`ModelSpec`, one `GraphSpec` per ONNX file), parsed from a
  document (`parse_document`) and built into one (`model_document`).
- `folders`: models and versions on disk (`ModelRepository`, `VersionFolder`), naming rules.
- `read`: `read_spec(folder)`: model.json checked, every graph file checked against its sha256.
- `publish`: `publish_version`: a version assembled aside and renamed into place in one step.

Every problem is a `ModelRepositoryError` whose message names the file and what is wrong.
"""

from modelrepo.errors import ModelRepositoryError
from modelrepo.folders import (
    ModelRepository,
    VersionFolder,
    check_name,
    existing_versions,
    next_version,
)
from modelrepo.publish import publish_version
from modelrepo.read import newest_readable_spec, newest_spec, read_spec, sha256_of
from modelrepo.spec import (
    DECODER,
    DECODER_FILE,
    DESCRIPTION_FILE,
    ENCODER,
    FORMAT,
    GRAPH_ROLES,
    POSTERIOR,
    GraphSpec,
    ModelSpec,
    model_document,
    parse_document,
    utc_timestamp,
)

__all__ = [
    "DECODER",
    "DECODER_FILE",
    "DESCRIPTION_FILE",
    "ENCODER",
    "FORMAT",
    "GRAPH_ROLES",
    "POSTERIOR",
    "GraphSpec",
    "ModelRepository",
    "ModelRepositoryError",
    "ModelSpec",
    "VersionFolder",
    "check_name",
    "existing_versions",
    "model_document",
    "newest_readable_spec",
    "newest_spec",
    "next_version",
    "parse_document",
    "publish_version",
    "read_spec",
    "sha256_of",
    "utc_timestamp",
]
