"""The model repository the image bakes in (models/), for tests that run the real server."""

from __future__ import annotations

from pathlib import Path

from tests.deploy.manifests import ROOT
from tests.service.modelrepo import write_version

SHIPPED = ROOT / "models"
DEFAULT_MODEL = "cvae-mnist"
"""The repository's default model (CVAE_MODEL_NAME of the image and the pods): it holds several."""


def model_repository(scratch: Path) -> Path:
    """The shipped repository when it holds a version; until then a small valid one, built in
    `scratch` by the service's own test fixture (a real ONNX decoder and model.json), whose one
    model is named DEFAULT_MODEL too."""
    if any(SHIPPED.glob("*/*/model.onnx")):
        return SHIPPED
    write_version(scratch, name=DEFAULT_MODEL)
    return scratch
