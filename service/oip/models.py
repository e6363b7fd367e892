"""Which loaded model version an Open Inference Protocol call names (gRPC and HTTP alike)."""

from __future__ import annotations

from service.catalog import ModelCatalog
from service.errors import ModelNotFound
from service.runtime import ModelRuntime


def resolve_model(catalog: ModelCatalog, name: str, version: str) -> ModelRuntime:
    """The runtime of model `name` at `version` ("" the newest); NOT_FOUND when not served.

    The protocol always names its model: an empty name is not the default model here."""
    if not name:
        raise ModelNotFound("model_name: empty; models: " + ", ".join(catalog.names))
    return catalog.resolve(name, version)
