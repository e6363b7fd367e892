"""ModelRepository and read_spec: versions in order; each broken file named with its problem;
the shipped versions read back into the very bytes model_document writes; an encoder graph is
checked like the decoder."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from modelrepo import (
    ENCODER,
    POSTERIOR,
    GraphSpec,
    ModelRepository,
    ModelRepositoryError,
    model_document,
    newest_readable_spec,
    read_spec,
)
from tests.service.modelrepo import DecoderSpec, write_version

_SHIPPED = Path(__file__).resolve().parents[2] / "models"


def test_reads_model_json_into_a_spec(tmp_path: Path) -> None:
    spec = read_spec(write_version(tmp_path, "1"))
    assert (spec.name, spec.version) == ("cvae-mnist", "1")
    assert (spec.latent_dim, spec.num_classes, spec.image_shape) == (16, 10, (28, 28))
    assert (spec.latent_input, spec.label_input, spec.image_output) == ("z", "label", "image")
    assert spec.class_names == tuple(str(i) for i in range(10))
    assert spec.metrics == {"label_accuracy": 0.5}


def test_versions_sort_numerically_and_ignore_other_folders(tmp_path: Path) -> None:
    for version in ("2", "10", "9"):
        write_version(tmp_path, version)
    (tmp_path / "cvae-mnist" / ".11.partial").mkdir()
    (tmp_path / "cvae-mnist" / "0").mkdir()
    (tmp_path / "cvae-mnist" / "notes").mkdir()
    repository = ModelRepository(tmp_path)
    assert [folder.version for folder in repository.versions()] == ["2", "9", "10"]
    assert repository.newest().version == "10"


def test_fingerprint_changes_when_any_file_changes(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "1")
    repository = ModelRepository(tmp_path)
    before = repository.newest().fingerprint
    (folder / "model.onnx").write_bytes(b"replaced")
    replaced = repository.newest().fingerprint
    assert replaced != before
    (folder / "encoder.onnx").write_bytes(b"a second graph")
    assert repository.newest().fingerprint != replaced


@pytest.mark.parametrize(
    ("breakage", "file_name", "problem"),
    [
        ("sha_mismatch", "model.onnx", "does not match onnx_sha256"),
        ("bad_json", "model.json", "not valid JSON"),
        ("missing_key", "model.json", "missing key 'latent_dim'"),
        ("missing_onnx", "model.onnx", "file is missing"),
    ],
)
def test_broken_version_names_file_and_problem(
    tmp_path: Path, breakage: str, file_name: str, problem: str
) -> None:
    folder = write_version(tmp_path, "1", breakage=breakage)
    with pytest.raises(ModelRepositoryError) as raised:
        read_spec(folder)
    message = str(raised.value)
    assert str(folder / file_name) in message
    assert problem in message


def test_version_in_json_must_match_its_folder(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "3")
    document = json.loads((folder / "model.json").read_text())
    document["version"] = "4"
    (folder / "model.json").write_text(json.dumps(document))
    with pytest.raises(ModelRepositoryError, match="version '4' does not match its folder '3'"):
        read_spec(folder)


def test_bad_image_shape_is_refused(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "1", spec=DecoderSpec())
    document = json.loads((folder / "model.json").read_text())
    document["image_shape"] = [28]
    (folder / "model.json").write_text(json.dumps(document))
    with pytest.raises(ModelRepositoryError, match=r"image_shape must be \[H, W\]"):
        read_spec(folder)


def test_missing_repository_and_empty_model_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelRepositoryError, match="model repository folder does not exist"):
        ModelRepository(tmp_path / "nowhere").newest()
    (tmp_path / "cvae-mnist").mkdir()
    with pytest.raises(ModelRepositoryError, match=r"no version folder"):
        ModelRepository(tmp_path).newest()


def test_several_models_need_a_name(tmp_path: Path) -> None:
    write_version(tmp_path, "1", name="a")
    write_version(tmp_path, "1", name="b")
    with pytest.raises(ModelRepositoryError, match=r"several models \(a, b\); pass --model-name"):
        ModelRepository(tmp_path).newest()
    assert ModelRepository(tmp_path, "b").newest().path == tmp_path / "b" / "1"


@pytest.mark.parametrize(
    ("layout", "problem"),
    [("cvae-model/2", "format 'cvae-model/2'; this server reads 'cvae-model/1'"), (7, "format 7")],
)
def test_an_unknown_model_json_format_is_refused(tmp_path: Path, layout: str, problem: str) -> None:
    folder = write_version(tmp_path, "1")
    document = json.loads((folder / "model.json").read_text())
    document["format"] = layout
    (folder / "model.json").write_text(json.dumps(document))
    with pytest.raises(ModelRepositoryError, match=problem):
        read_spec(folder)


_SHIPPED_VERSIONS = [
    ("cvae-mnist", "1"),
    ("cvae-mnist", "2"),
    ("cvae-mnist", "3"),
    ("cvae-mnist", "4"),
    ("cvae-mnist", "5"),
    ("cvae-mnist-fast", "1"),
]
_DECODER_ALONE = {("cvae-mnist", "1"), ("cvae-mnist", "2")}
"""Published before the exporter wrote encoders and cleaned graphs: their bytes never change."""
_NO_POSTERIOR = _DECODER_ALONE | {("cvae-mnist", "3")}
"""Published before the exporter wrote a flow prior's posterior sampler."""


def test_the_list_of_shipped_versions_is_complete() -> None:
    found = sorted((p.parent.parent.name, p.parent.name) for p in _SHIPPED.glob("*/*/model.json"))
    assert found == sorted(_SHIPPED_VERSIONS)


@pytest.mark.parametrize(("name", "version"), _SHIPPED_VERSIONS)
def test_shipped_versions_read_back_into_their_own_bytes(name: str, version: str) -> None:
    """The writer and the reader agree: model_document rebuilds each shipped model.json exactly."""
    folder = _SHIPPED / name / version
    spec = read_spec(folder)
    assert (spec.name, spec.version, spec.onnx_path) == (name, version, folder / "model.onnx")
    rebuilt = model_document(
        name=spec.name,
        version=spec.version,
        latent_dim=spec.latent_dim,
        num_classes=spec.num_classes,
        class_names=spec.class_names,
        image_shape=spec.image_shape,
        decoder=spec.decoder,
        opset=spec.document["opset"],
        training_config=spec.document["training_config"],
        metrics=spec.document["metrics"],
        created_at=spec.document["created_at"],
        encoder=spec.encoder,
        posterior=spec.posterior,
    )
    text = json.dumps(rebuilt, indent=2) + "\n"
    assert text.encode() == (folder / "model.json").read_bytes()
    # decoders alone in cvae-mnist 1 and 2; later versions ship an encoder too, and beside a
    # flow prior's encoder a posterior sampler (exported since cvae-mnist 3 was published)
    assert (spec.encoder is None) == ((name, version) in _DECODER_ALONE)
    assert (spec.posterior is None) == ((name, version) in _NO_POSTERIOR)
    optional = (spec.encoder, spec.posterior)
    assert spec.graphs == (spec.decoder, *(graph for graph in optional if graph is not None))


@pytest.mark.parametrize(
    ("name", "version"), [entry for entry in _SHIPPED_VERSIONS if entry not in _DECODER_ALONE]
)
def test_shipped_graphs_name_no_path_of_the_machine_that_built_them(
    name: str, version: str
) -> None:
    """What tests/export checks of a fresh export holds for the published files (the two
    oldest versions predate it and stay as published)."""
    folder = _SHIPPED / name / version
    for path in folder.glob("*.onnx"):
        raw = path.read_bytes()
        assert b"site-packages" not in raw and b'File "/' not in raw, path
        assert not re.search(rb"/[\w./-]+\.py", raw), path
    training_config = json.dumps(read_spec(folder).document["training_config"])
    assert not re.search(r'"/(work|home|root|tmp|usr)/', training_config), folder


def _add_encoder(folder: Path, graph: bytes, sha256: str | None = None) -> None:
    (folder / "encoder.onnx").write_bytes(graph)
    document = json.loads((folder / "model.json").read_text())
    document[ENCODER] = {
        "file": "encoder.onnx",
        "onnx_sha256": sha256 or hashlib.sha256(graph).hexdigest(),
        "inputs": {"image": "x", "label": "label"},
        "outputs": {"mean": "mu", "log_variance": "logvar"},
    }
    (folder / "model.json").write_text(json.dumps(document))


def test_an_encoder_graph_is_described_and_checked_like_the_decoder(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "1")
    _add_encoder(folder, b"encoder graph bytes")
    spec = read_spec(folder)
    assert spec.encoder == GraphSpec(
        role=ENCODER,
        file="encoder.onnx",
        sha256=hashlib.sha256(b"encoder graph bytes").hexdigest(),
        inputs={"image": "x", "label": "label"},
        outputs={"mean": "mu", "log_variance": "logvar"},
    )
    assert [spec.path_of(graph).name for graph in spec.graphs] == ["model.onnx", "encoder.onnx"]
    _add_encoder(folder, b"encoder graph bytes", sha256="0" * 64)
    with pytest.raises(ModelRepositoryError, match=r"encoder.onnx: sha256 .* does not match"):
        read_spec(folder)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"file": "../model.onnx"}, "encoder file '../model.onnx' is not a plain file name"),
        ({"outputs": {"mean": "mu"}}, "missing key 'log_variance'"),
    ],
)
def test_a_bad_encoder_entry_is_refused(tmp_path: Path, change: dict, problem: str) -> None:
    folder = write_version(tmp_path, "1")
    _add_encoder(folder, b"graph")
    document = json.loads((folder / "model.json").read_text())
    document[ENCODER].update(change)
    (folder / "model.json").write_text(json.dumps(document))
    with pytest.raises(ModelRepositoryError, match=problem):
        read_spec(folder)


def _add_posterior(folder: Path, graph: bytes, file: str = "posterior.onnx") -> None:
    (folder / file).write_bytes(graph)
    document = json.loads((folder / "model.json").read_text())
    document[POSTERIOR] = {
        "file": file,
        "onnx_sha256": hashlib.sha256(graph).hexdigest(),
        "inputs": {"image": "x", "label": "label", "noise": "eps"},
        "outputs": {"latent": "z", "log_density": "log_q"},
    }
    (folder / "model.json").write_text(json.dumps(document))


def test_a_posterior_sampler_is_read_beside_its_encoder(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "1")
    _add_encoder(folder, b"encoder graph bytes")
    _add_posterior(folder, b"posterior graph bytes")
    spec = read_spec(folder)
    assert spec.posterior == GraphSpec(
        role=POSTERIOR,
        file="posterior.onnx",
        sha256=hashlib.sha256(b"posterior graph bytes").hexdigest(),
        inputs={"image": "x", "label": "label", "noise": "eps"},
        outputs={"latent": "z", "log_density": "log_q"},
    )
    names = [spec.path_of(graph).name for graph in spec.graphs]
    assert names == ["model.onnx", "encoder.onnx", "posterior.onnx"]
    (folder / "posterior.onnx").write_bytes(b"changed")
    with pytest.raises(ModelRepositoryError, match=r"posterior.onnx: sha256 .* does not match"):
        read_spec(folder)


def test_a_posterior_sampler_needs_an_encoder_and_a_file_of_its_own(tmp_path: Path) -> None:
    alone = write_version(tmp_path / "alone", "1")
    _add_posterior(alone, b"graph")
    with pytest.raises(ModelRepositoryError, match="a 'posterior' graph needs an 'encoder'"):
        read_spec(alone)
    shared = write_version(tmp_path / "shared", "1")
    _add_encoder(shared, b"graph")
    _add_posterior(shared, b"graph", file="encoder.onnx")
    with pytest.raises(ModelRepositoryError, match=r"the posterior shares 'encoder\.onnx'"):
        read_spec(shared)


def test_model_names_lists_every_model(tmp_path: Path) -> None:
    write_version(tmp_path, "1", name="b")
    write_version(tmp_path, "1", name="a")
    (tmp_path / ".staging").mkdir()
    assert ModelRepository(tmp_path).model_names() == ["a", "b"]


def test_only_ascii_digit_names_without_a_leading_zero_are_versions(tmp_path: Path) -> None:
    write_version(tmp_path, "3")
    for name in ("²", "٣", "03", "1" * 19, "+4", " 5"):
        (tmp_path / "cvae-mnist" / name).mkdir()
    assert [folder.version for folder in ModelRepository(tmp_path).versions()] == ["3"]


def test_other_files_of_a_version_must_be_in_its_integrity_record(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "1")
    (folder / "notes.txt").write_text("a file model.json does not name")
    with pytest.raises(ModelRepositoryError) as raised:
        read_spec(folder)
    assert str(raised.value).startswith(f"{folder / 'notes.txt'}: not in model.json's integrity")
    document = json.loads((folder / "model.json").read_text())
    document["files"] = {"notes.txt": hashlib.sha256(b"other bytes").hexdigest()}
    (folder / "model.json").write_text(json.dumps(document))
    with pytest.raises(ModelRepositoryError) as raised:
        read_spec(folder)
    assert "notes.txt: sha256" in str(raised.value) and "does not match" in str(raised.value)
    digest = hashlib.sha256((folder / "notes.txt").read_bytes()).hexdigest()
    document["files"] = {"notes.txt": digest}
    (folder / "model.json").write_text(json.dumps(document))
    assert read_spec(folder).files == {"notes.txt": digest}


def test_newest_readable_spec_skips_newer_versions_that_do_not_read(tmp_path: Path) -> None:
    write_version(tmp_path, "1")
    write_version(tmp_path, "2", breakage="sha_mismatch")
    assert newest_readable_spec(tmp_path).version == "1"
    write_version(tmp_path / "broken", "1", breakage="bad_json")
    with pytest.raises(ModelRepositoryError, match="not valid JSON"):
        newest_readable_spec(tmp_path / "broken")
