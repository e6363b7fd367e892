"""What model.json says about one version: the model's sizes and one `GraphSpec` per ONNX file.

Format `cvae-model/1` (docs/model-repository.md): the decoder is `model.onnx`, described by the
top-level `inputs`, `outputs` and `onnx_sha256`. Further graphs (an encoder; a posterior
sampler beside it) are optional top-level objects named by their role, each
`{"file", "onnx_sha256", "inputs", "outputs"}`; readers that know no such role ignore the key,
so adding one needs no new format. Every other file of the version folder (an ONNX graph's
external weights) is listed with its sha256 in the optional top-level `files` object, so that
each byte a version serves is in its integrity record.

Sizes are bounded (MAX_LATENT_DIM, MAX_CLASSES, MAX_IMAGE_PIXELS, ...): a hostile model.json is
refused before anything of its size is allocated.
"""

from __future__ import annotations

import datetime
import math
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
POSTERIOR = "posterior"  # a sample of Q(z|x,y) in the decoder's latent space, its log density
FILES = "files"  # {"<file name>": "<sha256>"} for each file that is not model.json or a graph
# The largest model a version may describe: far above any CVAE of MNIST-like images, far below
# what would exhaust a server's memory at warm-up (which runs every label, --max-batch rows).
MAX_LATENT_DIM = 4096
MAX_CLASSES = 10_000
MAX_IMAGE_PIXELS = 1024 * 1024
MAX_CLASS_NAME_CHARS = 256
_SHA256_HEX = frozenset("0123456789abcdef")
# For each graph role: the roles its "inputs" and its "outputs" must name (role -> graph name).
GRAPH_ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    DECODER: (("latent", "label"), ("image",)),
    ENCODER: (("image", "label"), ("mean", "log_variance")),
    POSTERIOR: (("image", "label", "noise"), ("latent", "log_density")),
}
OPTIONAL_GRAPHS = (ENCODER, POSTERIOR)  # top-level keys, in the order they are written
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
    POSTERIOR,
    FILES,
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
    posterior: GraphSpec | None = None  # only beside an encoder
    metrics: dict[str, float] = field(default_factory=dict)  # the numeric top-level metrics
    files: Mapping[str, str] = field(default_factory=dict)  # other files -> sha256 ("files")
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def graphs(self) -> tuple[GraphSpec, ...]:
        """Every ONNX file of the version, decoder first."""
        optional = (self.encoder, self.posterior)
        return (self.decoder, *(graph for graph in optional if graph is not None))

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
            raise ModelRepositoryError(f"{json_path}: {key!r} has the wrong type ({_shown(value)})")
        return value

    layout = document.get("format", FORMAT)
    if layout != FORMAT:
        raise ModelRepositoryError(
            f"{json_path}: format {_shown(layout)}; this server reads {FORMAT!r}"
        )
    name = need("name", str)
    latent_dim = need("latent_dim", int)
    num_classes = need("num_classes", int)
    image_shape = need("image_shape", list)
    _check_range(json_path, "latent_dim", latent_dim, MAX_LATENT_DIM)
    _check_range(json_path, "num_classes", num_classes, MAX_CLASSES)
    if len(image_shape) != 2 or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in image_shape
    ):
        raise ModelRepositoryError(
            f"{json_path}: image_shape must be [H, W], got {_shown(image_shape)}"
        )
    if image_shape[0] * image_shape[1] > MAX_IMAGE_PIXELS:
        raise ModelRepositoryError(
            f"{json_path}: image_shape {image_shape} has more than {MAX_IMAGE_PIXELS} pixels"
        )
    # Only now that num_classes is bounded may a default list of that length be built.
    class_names = document.get("class_names")
    if class_names is None:
        class_names = [str(index) for index in range(num_classes)]
    if not isinstance(class_names, list) or len(class_names) != num_classes:
        raise ModelRepositoryError(
            f"{json_path}: class_names must list num_classes={num_classes} names"
        )
    if not all(isinstance(n, str) and len(n) <= MAX_CLASS_NAME_CHARS for n in class_names):
        raise ModelRepositoryError(
            f"{json_path}: class_names must be strings of at most {MAX_CLASS_NAME_CHARS} characters"
        )
    decoder = _graph(DECODER, DECODER_FILE, document, need, json_path)
    optional: dict[str, GraphSpec] = {}
    for role in OPTIONAL_GRAPHS:
        if role in document:
            entry = need(role, dict)
            optional[role] = _graph(role, need("file", str, entry), entry, need, json_path)
    if POSTERIOR in optional and ENCODER not in optional:
        raise ModelRepositoryError(f"{json_path}: a {POSTERIOR!r} graph needs an {ENCODER!r}")
    files = _files(document.get(FILES, {}), json_path)
    graph_files = {decoder.file}
    for graph in optional.values():
        if graph.file in graph_files:
            raise ModelRepositoryError(
                f"{json_path}: the {graph.role} shares {graph.file!r} with another graph"
            )
        graph_files.add(graph.file)
    if graph_files & set(files):
        raise ModelRepositoryError(
            f"{json_path}: {FILES!r} lists a graph file ({sorted(graph_files & set(files))}); "
            "graphs are hashed by their onnx_sha256"
        )
    raw_metrics = document.get("metrics", {})
    metrics = {
        str(key): float(value)
        for key, value in (raw_metrics.items() if isinstance(raw_metrics, dict) else [])
        if _finite_number(value)
    }
    return ModelSpec(
        name=name,
        version=str(need("version", (str, int))),
        latent_dim=latent_dim,
        num_classes=num_classes,
        class_names=tuple(class_names),
        image_shape=(image_shape[0], image_shape[1]),
        decoder=decoder,
        folder=folder,
        encoder=optional.get(ENCODER),
        posterior=optional.get(POSTERIOR),
        metrics=metrics,
        files=files,
        document=document,
    )


def _check_range(json_path: Path, key: str, value: int, maximum: int) -> None:
    if not 1 <= value <= maximum:
        raise ModelRepositoryError(
            f"{json_path}: {key} must be in [1, {maximum}], got {_shown(value)}"
        )


def _finite_number(value: Any) -> bool:
    """A metric GetModelInfo can report: a finite int or float (not bool, not 400 digits)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _files(entry: Any, json_path: Path) -> dict[str, str]:
    if not isinstance(entry, dict):
        raise ModelRepositoryError(f"{json_path}: {FILES!r} must map file names to sha256s")
    for file, digest in entry.items():
        _check_file_name(file, FILES, json_path)
        if not _is_sha256(digest):
            raise ModelRepositoryError(
                f"{json_path}: {FILES!r} entry {file!r} is not a hex sha256 ({_shown(digest)})"
            )
    return {str(file): str(digest).lower() for file, digest in entry.items()}


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value.lower()) <= _SHA256_HEX


def _check_file_name(file: str, role: str, json_path: Path) -> None:
    if (
        "/" in file
        or "\\" in file
        or "\0" in file
        or file in ("", ".", "..", DESCRIPTION_FILE)
        or len(file) > 255
    ):
        raise ModelRepositoryError(
            f"{json_path}: {role} file {_shown(file)} is not a plain file name"
        )


def _shown(value: Any) -> str:
    """repr(value), cut short: a hostile model.json must not make a log line of megabytes."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        text = f"<an integer of {value.bit_length()} bits>"
    return text if len(text) <= 60 else f"{text[:60]}... ({len(text)} characters)"


def _graph(role: str, file: str, entry: dict[str, Any], need: Any, json_path: Path) -> GraphSpec:
    _check_file_name(file, role, json_path)
    input_roles, output_roles = GRAPH_ROLES[role]
    inputs, outputs = need("inputs", dict, entry), need("outputs", dict, entry)
    digest = need("onnx_sha256", str, entry)
    if not _is_sha256(digest):
        raise ModelRepositoryError(
            f"{json_path}: {role} onnx_sha256 is not a hex sha256 ({_shown(digest)})"
        )
    return GraphSpec(
        role=role,
        file=file,
        sha256=digest.lower(),
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
    posterior: GraphSpec | None = None,
    files: Mapping[str, str] | None = None,
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
    for graph in (encoder, posterior):
        if graph is not None:
            document[graph.role] = {
                "file": graph.file,
                "onnx_sha256": graph.sha256,
                "inputs": dict(graph.inputs),
                "outputs": dict(graph.outputs),
            }
    if files:
        document[FILES] = dict(files)
    return {key: document[key] for key in KEY_ORDER if key in document}


def utc_timestamp() -> str:
    """Now, as model.json's and the metrics' `created_at` say it: "2026-12-02T14:00:00Z"."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
