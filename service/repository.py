"""The model repository on disk: find versions, read and check `model.json` and `model.onnx`.

Layout and fields: docs/model-repository.md. Every problem is a `ModelLoadError` whose message
names the file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.errors import ModelLoadError

_LOGGER = logging.getLogger(__name__)
_FORMAT = "cvae-model/1"  # the model.json layout this server reads


@dataclass(frozen=True)
class ModelSpec:
    """What model.json says about one version; the service needs nothing else."""

    name: str
    version: str
    latent_dim: int
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int]  # (H, W)
    latent_input: str
    label_input: str
    image_output: str
    onnx_sha256: str
    onnx_path: Path
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionFolder:
    """One <name>/<version> folder, and a fingerprint that changes when its files change."""

    version: str
    path: Path
    fingerprint: tuple[tuple[str, int, int], ...]


class ModelRepository:
    """The `<root>/<name>/<version>/` folders of one model name."""

    def __init__(self, root: Path, model_name: str = "") -> None:
        self._root = root
        self._model_name = model_name

    @property
    def root(self) -> Path:
        return self._root

    def model_dir(self) -> Path:
        """The <name> folder served; with no name given the repository must hold exactly one."""
        if not self._root.is_dir():
            raise ModelLoadError(f"{self._root}: model repository folder does not exist")
        if self._model_name:
            path = self._root / self._model_name
            if not path.is_dir():
                raise ModelLoadError(f"{path}: model folder does not exist")
            return path
        names = sorted(p for p in self._root.iterdir() if p.is_dir() and not _hidden(p))
        if not names:
            raise ModelLoadError(f"{self._root}: model repository holds no model folder")
        if len(names) > 1:
            listed = ", ".join(p.name for p in names)
            raise ModelLoadError(f"{self._root}: several models ({listed}); pass --model-name")
        return names[0]

    def versions(self) -> list[VersionFolder]:
        """Version folders (positive integer names), oldest first."""
        model_dir = self.model_dir()
        found = []
        for path in model_dir.iterdir():
            if path.is_dir() and path.name.isdigit() and int(path.name) > 0:
                found.append(VersionFolder(path.name, path, _fingerprint(path)))
        return sorted(found, key=lambda folder: int(folder.version))

    def newest(self) -> VersionFolder:
        versions = self.versions()
        if not versions:
            raise ModelLoadError(f"{self.model_dir()}: no version folder (1/, 2/, ...)")
        return versions[-1]


def read_spec(folder: Path) -> ModelSpec:
    """Read and check model.json of one version folder, and the sha256 of its model.onnx."""
    json_path = folder / "model.json"
    onnx_path = folder / "model.onnx"
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{json_path}: file is missing") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{json_path}: cannot be read ({error})") from None
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"{json_path}: not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise ModelLoadError(f"{json_path}: must hold a JSON object")
    spec = _spec_from_document(document, json_path, onnx_path)
    if spec.version != folder.name:
        raise ModelLoadError(
            f"{json_path}: version {spec.version!r} does not match its folder {folder.name!r}"
        )
    actual = sha256_of(onnx_path)
    if actual != spec.onnx_sha256.lower():
        raise ModelLoadError(
            f"{onnx_path}: sha256 {actual} does not match onnx_sha256 {spec.onnx_sha256} "
            f"in {json_path.name} (truncated or replaced file?)"
        )
    return spec


def sha256_of(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            digest = hashlib.file_digest(stream, "sha256")
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: file is missing") from None
    except OSError as error:
        raise ModelLoadError(f"{path}: cannot be read ({error})") from None
    return digest.hexdigest()


def _spec_from_document(document: dict[str, Any], json_path: Path, onnx_path: Path) -> ModelSpec:
    def need(key: str, kind: type | tuple[type, ...], parent: dict[str, Any] = document) -> Any:
        if key not in parent:
            raise ModelLoadError(f"{json_path}: missing key {key!r}")
        value = parent[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ModelLoadError(f"{json_path}: {key!r} has the wrong type ({value!r})")
        return value

    layout = document.get("format", _FORMAT)
    if layout != _FORMAT:
        raise ModelLoadError(f"{json_path}: format {layout!r}; this server reads {_FORMAT!r}")
    latent_dim = need("latent_dim", int)
    num_classes = need("num_classes", int)
    image_shape = need("image_shape", list)
    class_names = document.get("class_names", [str(index) for index in range(num_classes)])
    inputs, outputs = need("inputs", dict), need("outputs", dict)
    if latent_dim < 1 or num_classes < 1:
        raise ModelLoadError(f"{json_path}: latent_dim and num_classes must be positive")
    if len(image_shape) != 2 or not all(isinstance(d, int) and d > 0 for d in image_shape):
        raise ModelLoadError(f"{json_path}: image_shape must be [H, W], got {image_shape!r}")
    if not isinstance(class_names, list) or len(class_names) != num_classes:
        raise ModelLoadError(f"{json_path}: class_names must list num_classes={num_classes} names")
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
        latent_input=need("latent", str, inputs),
        label_input=need("label", str, inputs),
        image_output=need("image", str, outputs),
        onnx_sha256=need("onnx_sha256", str),
        onnx_path=onnx_path,
        metrics=metrics,
    )


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    entries = []
    for name in ("model.json", "model.onnx"):
        try:
            stat = (folder / name).stat()
        except OSError:
            continue
        entries.append((name, stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


def _hidden(path: Path) -> bool:
    return path.name.startswith((".", "_"))
