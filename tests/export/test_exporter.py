"""`cvae export`: a complete, self-describing, versioned model folder, or nothing at all."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cvae.cli import main
from export.exporter import MetricsError, export_checkpoint
from modelrepo import ModelRepositoryError
from training.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Path:
    """A repository holding version 1 of 'small', exported once for the read-only tests."""
    root = tmp_path_factory.mktemp("models")
    metrics = root.parent / "metrics.json"
    metrics.write_text(json.dumps({"label_accuracy": 0.5, "frechet_ratio": 9.0}))
    export_checkpoint(checkpoint, root, name="small", metrics_path=metrics)
    return root


def _description(repository: Path) -> dict:
    return json.loads((repository / "small" / "1" / "model.json").read_text())


def test_model_json_describes_the_model(repository: Path, checkpoint: Path) -> None:
    description = _description(repository)
    model, train_config, _ = load_checkpoint(checkpoint)
    assert description["format"] == "cvae-model/1"
    assert description["name"] == "small" and description["version"] == "1"
    assert description["latent_dim"] == model.config.latent_dim
    assert description["num_classes"] == 10
    assert description["class_names"] == [str(digit) for digit in range(10)]
    assert description["image_shape"] == [28, 28]
    assert description["inputs"] == {"latent": "z", "label": "label"}
    assert description["outputs"] == {"image": "image"}
    assert description["opset"] == 18
    assert description["training_config"]["model"]["latent_dim"] == model.config.latent_dim
    assert description["training_config"]["epochs"] == train_config.epochs
    assert description["metrics"] == {"label_accuracy": 0.5, "frechet_ratio": 9.0}
    assert description["created_at"].endswith("Z")


def test_model_json_matches_the_onnx_file(repository: Path) -> None:
    description = _description(repository)
    onnx_path = repository / "small" / "1" / "model.onnx"
    assert description["onnx_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    graph = onnx.load(str(onnx_path))
    onnx.checker.check_model(graph, full_check=True)
    assert [value.name for value in graph.graph.input] == list(description["inputs"].values())
    assert [value.name for value in graph.graph.output] == list(description["outputs"].values())
    assert graph.opset_import[0].version == description["opset"] or any(
        entry.domain == "" and entry.version == description["opset"] for entry in graph.opset_import
    )


def test_metadata_props_carry_the_same_facts(repository: Path) -> None:
    description = _description(repository)
    graph = onnx.load(str(repository / "small" / "1" / "model.onnx"))
    props = {entry.key: entry.value for entry in graph.metadata_props}
    assert set(props) == set(description) - {"onnx_sha256"}
    for key, value in props.items():
        decoded = value if isinstance(description[key], str) else json.loads(value)
        assert decoded == description[key], key


def test_exported_model_runs_and_matches_the_checkpoint(repository: Path, checkpoint: Path) -> None:
    model, _, _ = load_checkpoint(checkpoint)
    session = ort.InferenceSession(str(repository / "small" / "1" / "model.onnx"))
    z = np.random.default_rng(0).standard_normal((7, model.config.latent_dim)).astype(np.float32)
    label = np.arange(7, dtype=np.int64)
    (image,) = session.run(None, {"z": z, "label": label})
    with torch.no_grad():
        expected = model.decoder(torch.from_numpy(z), torch.from_numpy(label)).numpy()
    assert np.abs(image - expected).max() <= 1e-5


def test_existing_version_is_never_overwritten(repository: Path, checkpoint: Path) -> None:
    before = {path.name: path.read_bytes() for path in (repository / "small" / "1").iterdir()}
    with pytest.raises(ModelRepositoryError, match="already exists"):
        export_checkpoint(checkpoint, repository, name="small", version=1)
    after = {path.name: path.read_bytes() for path in (repository / "small" / "1").iterdir()}
    assert after == before


def test_next_export_takes_the_next_version(tmp_path: Path, checkpoint: Path) -> None:
    (tmp_path / "m" / "4").mkdir(parents=True)
    assert export_checkpoint(checkpoint, tmp_path, name="m").name == "5"
    assert sorted(path.name for path in (tmp_path / "m").iterdir()) == ["4", "5"]


def test_metrics_of_another_checkpoint_are_refused(tmp_path: Path, checkpoint: Path) -> None:
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"label_accuracy": 0.9, "checkpoint_sha256": "0" * 64}))
    with pytest.raises(MetricsError, match="scores a checkpoint"):
        export_checkpoint(checkpoint, tmp_path / "models", name="m", metrics_path=metrics)
    assert not (tmp_path / "models" / "m" / "1").exists()


def test_cli_exports_and_reports_bad_input(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = tmp_path / "models"
    assert main(["export", str(checkpoint), "--repository", str(repository), "--name", "c"]) == 0
    assert capsys.readouterr().out.strip() == str(repository / "c" / "1")
    with pytest.raises(SystemExit, match="already exists"):
        main(
            [
                "export",
                str(checkpoint),
                "--repository",
                str(repository),
                "--name",
                "c",
                "--version",
                "1",
            ]
        )
    with pytest.raises(SystemExit, match="does not exist"):
        main(["export", str(tmp_path / "missing.pt"), "--repository", str(repository)])
    with pytest.raises(SystemExit, match="model name"):
        main(["export", str(checkpoint), "--repository", str(repository), "--name", "../escape"])
    assert sorted(path.name for path in (repository / "c").iterdir()) == ["1"]


def test_service_loads_the_exported_version(repository: Path, checkpoint: Path) -> None:
    """The contract end to end: the server's own loader reads, verifies and warms it up."""
    from service.options import runtime_options
    from service.runtime import load_runtime
    from service.settings import ServiceSettings

    runtime = load_runtime(repository / "small" / "1", runtime_options(ServiceSettings()))
    model, _, _ = load_checkpoint(checkpoint)
    assert runtime.spec.latent_dim == model.config.latent_dim
    assert runtime.spec.metrics == {"label_accuracy": 0.5, "frechet_ratio": 9.0}
    z = np.zeros((3, model.config.latent_dim), np.float32)
    images = runtime.run(z, np.array([0, 1, 2], np.int64))
    assert images.shape == (3, 28, 28)
