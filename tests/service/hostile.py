"""Hostile and careless model versions, as real files, for the tests of a model repository that
must not take the service down: odd folder names, special files, absurd numbers,
poisoned graphs, unhashed external weights, a name that is not its folder's.

`HOSTILE[name](root, version)` writes one into root/cvae-mnist/<version> (or beside it, for the
folder names that are not versions) and returns the folder. Reusable by any test.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.service.modelrepo import DecoderSpec, build_decoder, write_version

MODEL = "cvae-mnist"


def _edit_json(folder: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    path = folder / "model.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    return folder


def _set(key: str, value: Any) -> Callable[[Path, str], Path]:
    def make(root: Path, version: str) -> Path:
        def edit(document: dict[str, Any]) -> None:
            document[key] = value
            if key == "num_classes":
                del document["class_names"]  # the default list must not be built

        return _edit_json(write_version(root, version), edit)

    return make


def odd_folder(name: str) -> Callable[[Path, str], Path]:
    """A complete, valid version in a folder whose name is digits only outside ASCII."""

    def make(root: Path, version: str) -> Path:
        folder = write_version(root, version)
        _edit_json(folder, lambda document: document.update(version=name))
        target = folder.parent / name
        folder.rename(target)
        return target

    return make


def dev_zero_onnx(root: Path, version: str) -> Path:
    """model.onnx is a link to /dev/zero: endless bytes for whoever hashes or parses it."""
    folder = write_version(root, version)
    (folder / "model.onnx").unlink()
    (folder / "model.onnx").symlink_to("/dev/zero")
    return folder


def fifo(file: str) -> Callable[[Path, str], Path]:
    """`file` (model.onnx or model.json) is a FIFO no one writes to: opening it blocks."""

    def make(root: Path, version: str) -> Path:
        folder = write_version(root, version)
        (folder / file).unlink()
        os.mkfifo(folder / file)
        return folder

    return make


def replaced(old: str, new: str) -> Callable[[Path, str], Path]:
    """model.json's text with `old` replaced by `new` once (what JSON tools would not write)."""

    def make(root: Path, version: str) -> Path:
        folder = write_version(root, version)
        path = folder / "model.json"
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new, 1))
        return folder

    return make


_DEPTH = 100_000
# latent_dim of 5,000 digits (beyond Python's 4,300-digit int() limit); training_config nested
# 100,000 lists deep; a metric of 400 digits (float() of it overflows).
huge_integer = replaced('"latent_dim": 16', '"latent_dim": 1' + "0" * 4999)
deep_json = replaced(
    '"training_config": {', f'"deep": {"[" * _DEPTH}{"]" * _DEPTH}, "training_config": {{'
)
long_metric = replaced('"label_accuracy": 0.5', '"label_accuracy": ' + "9" * 400)


def wrong_name(root: Path, version: str) -> Path:
    """model.json names another model than its folder's."""
    return _edit_json(
        write_version(root, version), lambda document: document.update(name="../../etc/passwd")
    )


def _poisoned(spec: DecoderSpec, poison: str) -> bytes:
    """build_decoder's graph with a term added to the logits before the sigmoid:
    "nan_last_label": sqrt(-one_hot[:, -1]): NaN for the last label only (0 otherwise);
    "rows_above_40": 0.25 when the batch has more than 40 rows (0 otherwise)."""
    model = onnx.load_from_string(build_decoder(spec))
    graph = model.graph
    for node in graph.node:
        if node.op_type == "Sigmoid":
            node.input[0] = "poisoned"
    if poison == "nan_last_label":
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array([spec.num_classes - 1], np.int64), "last_start"),
                numpy_helper.from_array(np.array([spec.num_classes], np.int64), "last_end"),
                numpy_helper.from_array(np.array([1], np.int64), "last_axis"),
            ]
        )
        added = [
            helper.make_node(
                "Slice", ["one_hot", "last_start", "last_end", "last_axis"], ["last_column"]
            ),
            helper.make_node("Neg", ["last_column"], ["negated"]),
            helper.make_node("Sqrt", ["negated"], ["poison"]),
        ]
    elif poison == "rows_above_40":
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(0, np.int64), "zero_index"),
                numpy_helper.from_array(np.array(40, np.int64), "forty"),
                numpy_helper.from_array(np.array(0.25, np.float32), "shift"),
            ]
        )
        added = [
            helper.make_node("Shape", ["z"], ["z_shape"]),
            helper.make_node("Gather", ["z_shape", "zero_index"], ["rows"], axis=0),
            helper.make_node("Greater", ["rows", "forty"], ["big"]),
            helper.make_node("Cast", ["big"], ["big_float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["big_float", "shift"], ["poison"]),
        ]
    else:
        raise ValueError(poison)
    added.append(helper.make_node("Add", ["logits", "poison"], ["poisoned"]))
    sigmoid = next(i for i, node in enumerate(graph.node) if node.op_type == "Sigmoid")
    for offset, node in enumerate(added):
        graph.node.insert(sigmoid + offset, node)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def poisoned(poison: str) -> Callable[[Path, str], Path]:
    def make(root: Path, version: str) -> Path:
        folder = write_version(root, version)
        data = _poisoned(DecoderSpec(), poison)
        (folder / "model.onnx").write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        return _edit_json(folder, lambda document: document.update(onnx_sha256=digest))

    return make


def external_weights(listed: bool) -> Callable[[Path, str], Path]:
    """model.onnx keeps its weights in weights.bin (ONNX external data); model.json lists
    weights.bin under "files" with its sha256 when `listed`."""

    def make(root: Path, version: str) -> Path:
        folder = write_version(root, version)
        model = onnx.load_from_string(build_decoder(DecoderSpec()))
        onnx.save_model(
            model,
            str(folder / "model.onnx"),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="weights.bin",
            size_threshold=1024,  # the weight matrices; OneHot's depth must stay inline
        )
        graph_digest = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
        weights_digest = hashlib.sha256((folder / "weights.bin").read_bytes()).hexdigest()

        def edit(document: dict[str, Any]) -> None:
            document["onnx_sha256"] = graph_digest
            if listed:
                document["files"] = {"weights.bin": weights_digest}

        return _edit_json(folder, edit)

    return make


def hung_decoder(spec: DecoderSpec) -> bytes:
    """build_decoder's graph plus a Loop of 2**62 iterations whose result is added to the
    logits: it loads, and its first run (the warm-up) never ends."""
    model = onnx.load_from_string(build_decoder(spec))
    graph = model.graph
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["carried_in"], ["carried_out"]),
        ],
        "endless",
        inputs=[
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("carried_in", TensorProto.FLOAT, []),
        ],
        outputs=[
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("carried_out", TensorProto.FLOAT, []),
        ],
    )
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(2**62, np.int64), "trip_count"),
            numpy_helper.from_array(np.array(True), "keep_going"),
            numpy_helper.from_array(np.array(0.0, np.float32), "carried_start"),
        ]
    )
    for node in graph.node:
        if node.op_type == "Sigmoid":
            node.input[0] = "poisoned"
    sigmoid = next(i for i, node in enumerate(graph.node) if node.op_type == "Sigmoid")
    graph.node.insert(
        sigmoid,
        helper.make_node(
            "Loop", ["trip_count", "keep_going", "carried_start"], ["poison"], body=body
        ),
    )
    graph.node.insert(sigmoid + 1, helper.make_node("Add", ["logits", "poison"], ["poisoned"]))
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def hung(root: Path, version: str) -> Path:
    """A version whose warm-up never ends (hung_decoder)."""
    folder = write_version(root, version)
    data = hung_decoder(DecoderSpec())
    (folder / "model.onnx").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    return _edit_json(folder, lambda document: document.update(onnx_sha256=digest))


def zero_file(path: Path) -> None:
    """Overwrite a file with as many zero bytes (e.g. external weights "lost" on a volume)."""
    path.write_bytes(bytes(path.stat().st_size))


# Each makes a version the service must refuse (or, for the odd folder names, not see at all).
HOSTILE: dict[str, Callable[[Path, str], Path]] = {
    "superscript-two-folder": odd_folder("²"),
    "arabic-three-folder": odd_folder("٣"),
    "dev-zero-onnx": dev_zero_onnx,
    "fifo-onnx": fifo("model.onnx"),
    "fifo-json": fifo("model.json"),
    "5000-digit-integer": huge_integer,
    "100000-deep-json": deep_json,
    "400-digit-metric": long_metric,
    "latent-dim-2-40": _set("latent_dim", 2**40),
    "num-classes-1e12": _set("num_classes", 10**12),
    "num-classes-3e7": _set("num_classes", 3 * 10**7),
    "nan-for-last-label": poisoned("nan_last_label"),
    "unlisted-external-weights": external_weights(listed=False),
    "name-not-its-folder": wrong_name,
}
# What the one refusal line says for each (the odd folders: no version is seen at all).
PROBLEMS = {
    "superscript-two-folder": "no version folder",
    "arabic-three-folder": "no version folder",
    "dev-zero-onnx": "model.onnx: not a regular file (a character device)",
    "fifo-onnx": "model.onnx: not a regular file (a FIFO)",
    "fifo-json": "model.json: not a regular file (a FIFO)",
    "5000-digit-integer": "model.json: an integer of 5000 digits",
    "100000-deep-json": "model.json: nested deeper than",
    "400-digit-metric": "model.json: an integer of 400 digits",
    "latent-dim-2-40": "model.json: latent_dim must be in [1, 4096]",
    "num-classes-1e12": "model.json: num_classes must be in [1, 10000]",
    "num-classes-3e7": "model.json: num_classes must be in [1, 10000]",
    "nan-for-last-label": "output holds NaN or Inf (labels [9])",
    "unlisted-external-weights": "weights.bin: not in model.json's integrity record",
    "name-not-its-folder": "model.json: name '../../etc/passwd' does not match its model folder",
}
