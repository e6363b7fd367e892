"""The model repository the image bakes in (models/), for tests that run the real server."""

from __future__ import annotations

from pathlib import Path

from tests.deploy.manifests import ROOT

SHIPPED = ROOT / "models"


def model_repository(scratch: Path) -> Path:
    """The shipped repository when it holds a version, else a small valid one built in `scratch`."""
    if any(SHIPPED.glob("*/*/model.onnx")):
        return SHIPPED
    raise NotImplementedError("build one with the service's test fixture")
