"""The model repository the image bakes in (models/), for tests that run the real server."""

from __future__ import annotations

from pathlib import Path

from tests.deploy.manifests import ROOT
from tests.service.modelrepo import write_version

SHIPPED = ROOT / "models"


def model_repository(scratch: Path) -> Path:
    """The shipped repository when it holds a version; until then a small valid one, built in
    `scratch` by the service's own test fixture (a real ONNX decoder and model.json)."""
    if any(SHIPPED.glob("*/*/model.onnx")):
        return SHIPPED
    write_version(scratch)
    return scratch
