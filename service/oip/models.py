"""Which loaded model version an Open Inference Protocol call names (gRPC and HTTP alike)."""

from __future__ import annotations

from service.errors import ModelNotFound, NotReady, brief
from service.registry import ModelRegistry
from service.runtime import ModelRuntime


def resolve_model(registry: ModelRegistry, name: str, version: str) -> ModelRuntime:
    """The runtime of model `name` at `version` ("" the newest); NOT_FOUND when not served."""
    newest = registry.newest
    if newest is None:
        raise NotReady("no model version is loaded yet; retry shortly")
    if name != newest.name:
        raise ModelNotFound(f"model_name: {brief(name)} is not served here; models: {newest.name}")
    return registry.resolve(version)
