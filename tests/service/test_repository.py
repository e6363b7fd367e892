"""ModelRepository and read_spec: versions in order; each broken file named with its problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.errors import ModelLoadError
from service.repository import ModelRepository, read_spec
from tests.service.modelrepo import DecoderSpec, write_version


def test_reads_model_json_into_a_spec(model_repo: Path) -> None:
    spec = read_spec(model_repo / "cvae-mnist" / "1")
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


def test_fingerprint_changes_when_a_file_changes(model_repo: Path) -> None:
    repository = ModelRepository(model_repo)
    before = repository.newest().fingerprint
    (model_repo / "cvae-mnist" / "1" / "model.onnx").write_bytes(b"replaced")
    assert repository.newest().fingerprint != before


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
    with pytest.raises(ModelLoadError) as raised:
        read_spec(folder)
    message = str(raised.value)
    assert str(folder / file_name) in message
    assert problem in message


def test_version_in_json_must_match_its_folder(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "3")
    document = json.loads((folder / "model.json").read_text())
    document["version"] = "4"
    (folder / "model.json").write_text(json.dumps(document))
    with pytest.raises(ModelLoadError, match="version '4' does not match its folder '3'"):
        read_spec(folder)


def test_bad_image_shape_is_refused(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "1", spec=DecoderSpec())
    document = json.loads((folder / "model.json").read_text())
    document["image_shape"] = [28]
    (folder / "model.json").write_text(json.dumps(document))
    with pytest.raises(ModelLoadError, match=r"image_shape must be \[H, W\]"):
        read_spec(folder)


def test_missing_repository_and_empty_model_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model repository folder does not exist"):
        ModelRepository(tmp_path / "nowhere").newest()
    (tmp_path / "cvae-mnist").mkdir()
    with pytest.raises(ModelLoadError, match=r"no version folder"):
        ModelRepository(tmp_path).newest()


def test_several_models_need_a_name(tmp_path: Path) -> None:
    write_version(tmp_path, "1", name="a")
    write_version(tmp_path, "1", name="b")
    with pytest.raises(ModelLoadError, match=r"several models \(a, b\); pass --model-name"):
        ModelRepository(tmp_path).newest()
    assert ModelRepository(tmp_path, "b").newest().path == tmp_path / "b" / "1"
