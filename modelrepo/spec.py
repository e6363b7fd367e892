"""What model.json says about one version: the model's sizes and one `GraphSpec` per ONNX file.

Format `cvae-model/1` (docs/model-repository.md): the decoder is `model.onnx`, described by the
top-level `inputs`, `outputs` and `onnx_sha256`. Further graphs (an encoder) are optional
top-level objects named by their role, each `{"file", "onnx_sha256", "inputs", "outputs"}`;
readers that know no such role ignore the key, so adding one needs no new format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelrepo.errors import ModelRepositoryError

FORMAT = "cvae-model/1"  # the model.json layout written and read
DESCRIPTION_FILE = "model.json"
DECODER_FILE = "model.onnx"
DECODER = "decoder"
ENCODER = "encoder"
# For each graph role: the roles its "inputs" and its "outputs" must name (role -> graph name).
GRAPH_ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    DECODER: (("latent", "label"), ("image",)),
    ENCODER: (("image", "label"), ("mean", "log_variance")),
}
# model.json's top-level keys in the order they are written
KEY_ORDER = (
    "format",
    "name",
    "version",
    "latent_dim",
    "num_classes",
    "class_names",
    "image_shape",
    "inputs",
    "outputs",
    "opset",
    "onnx_sha256",
    ENCODER,
    "training_config",
    "metrics",
    "created_at",
)


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX file of a version: its role, file name, hash and named inputs and outputs."""

    role: str  # a key of GRAPH_ROLES
    file: str  # file name inside the version folder
    sha256: str
    inputs: Mapping[str, str]  # input role -> the graph's input name
    outputs: Mapping[str, str]  # output role -> the graph's output name


@dataclass(frozen=True)
class ModelSpec:
    """One version as model.json describes it; the service needs nothing else."""

    name: str
    version: str
    latent_dim: int
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int]  # (H, W)
    decoder: GraphSpec
    folder: Path
    encoder: GraphSpec | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # the numeric top-level metrics
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def graphs(self) -> tuple[GraphSpec, ...]:
        """Every ONNX file of the version, decoder first."""
        return (self.decoder,) if self.encoder is None else (self.decoder, self.encoder)

    def path_of(self, graph: GraphSpec) -> Path:
        return self.folder / graph.file

    @property
    def onnx_path(self) -> Path:
        return self.path_of(self.decoder)

    @property
    def onnx_sha256(self) -> str:
        return self.decoder.sha256

    @property
    def latent_input(self) -> str:
        return self.decoder.inputs["latent"]

    @property
    def label_input(self) -> str:
        return self.decoder.inputs["label"]

    @property
    def image_output(self) -> str:
        return self.decoder.outputs["image"]


def parse_document(document: dict[str, Any], folder: Path) -> ModelSpec:
    """Check a model.json document of the version in `folder`; errors name model.json."""
    json_path = folder / DESCRIPTION_FILE

    def need(key: str, kind: type | tuple[type, ...], parent: dict[str, Any] = document) -> Any:
        if key not in parent:
            raise ModelRepositoryError(f"{json_path}: missing key {key!r}")
        value = parent[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ModelRepositoryError(f"{json_path}: {key!r} has the wrong type ({value!r})")
        return value

    layout = document.get("format", FORMAT)
    if layout != FORMAT:
        raise ModelRepositoryError(f"{json_path}: format {layout!r}; this server reads {FORMAT!r}")
    latent_dim = need("latent_dim", int)
    num_classes = need("num_classes", int)
    image_shape = need("image_shape", list)
    class_names = document.get("class_names", [str(index) for index in range(num_classes)])
    if latent_dim < 1 or num_classes < 1:
        raise ModelRepositoryError(f"{json_path}: latent_dim and num_classes must be positive")
    if len(image_shape) != 2 or not all(isinstance(d, int) and d > 0 for d in image_shape):
        raise ModelRepositoryError(f"{json_path}: image_shape must be [H, W], got {image_shape!r}")
    if not isinstance(class_names, list) or len(class_names) != num_classes:
        raise ModelRepositoryError(
            f"{json_path}: class_names must list num_classes={num_classes} names"
        )
    decoder = _graph(DECODER, DECODER_FILE, document, need, json_path)
    encoder = None
    if ENCODER in document:
        entry = need(ENCODER, dict)
        encoder = _graph(ENCODER, need("file", str, entry), entry, need, json_path)
    raw_metrics = document.get("metrics", {})
    metrics = {
        str(key): float(value)
        for key, value in (raw_metrics.items() if isinstance(raw_metrics, dict) else [])
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return ModelSpec(
        name=need("name", str),
        version=str(need("version", (str, int))),
        latent_dim=latent_dim,
        num_classes=num_classes,
        class_names=tuple(str(name) for name in class_names),
        image_shape=(image_shape[0], image_shape[1]),
        decoder=decoder,
        folder=folder,
        encoder=encoder,
        metrics=metrics,
        document=document,
    )


def _graph(role: str, file: str, entry: dict[str, Any], need: Any, json_path: Path) -> GraphSpec:
    if "/" in file or "\\" in file or file in ("", ".", "..", DESCRIPTION_FILE):
        raise ModelRepositoryError(f"{json_path}: {role} file {file!r} is not a plain file name")
    input_roles, output_roles = GRAPH_ROLES[role]
    inputs, outputs = need("inputs", dict, entry), need("outputs", dict, entry)
    return GraphSpec(
        role=role,
        file=file,
        sha256=need("onnx_sha256", str, entry),
        inputs={key: need(key, str, inputs) for key in input_roles},
        outputs={key: need(key, str, outputs) for key in output_roles},
    )


def model_document(
    *,
    name: str,
    version: int | str,
    latent_dim: int,
    num_classes: int,
    class_names: list[str] | tuple[str, ...],
    image_shape: list[int] | tuple[int, int],
    decoder: GraphSpec,
    opset: int,
    training_config: dict[str, Any],
    metrics: dict[str, Any],
    created_at: str,
    encoder: GraphSpec | None = None,
) -> dict[str, Any]:
    """The model.json document of a version, its keys in KEY_ORDER (parse_document reads it)."""
    document: dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "version": str(version),
        "latent_dim": latent_dim,
        "num_classes": num_classes,
        "class_names": list(class_names),
        "image_shape": list(image_shape),
        "inputs": dict(decoder.inputs),
        "outputs": dict(decoder.outputs),
        "opset": opset,
        "onnx_sha256": decoder.sha256,
        "training_config": training_config,
        "metrics": metrics,
        "created_at": created_at,
    }
    if encoder is not None:
        document[ENCODER] = {
            "file": encoder.file,
            "onnx_sha256": encoder.sha256,
            "inputs": dict(encoder.inputs),
            "outputs": dict(encoder.outputs),
        }
    return {key: document[key] for key in KEY_ORDER if key in document}
