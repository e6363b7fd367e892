"""`cvae evaluate` end to end on a small checkpoint and on its exported ONNX version."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from cvae.cli import main
from export.exporter import export_checkpoint
from modelrepo import ModelRepositoryError
from tests.training.evaluate.conftest import SMALL_CAS, SMALL_CLASSIFIER, SMALL_SECOND
from training.evaluate.evaluator import (
    EvaluationError,
    EvaluationSettings,
    evaluate_checkpoint,
    evaluate_onnx,
)


@pytest.fixture(scope="module")
def settings(classifier_cache_dir: Path, small_classifier: object) -> EvaluationSettings:
    """Few samples, a small classifier (accepted at its own level), a short bound."""
    return EvaluationSettings(
        samples_per_label=20,
        iw_samples=16,
        iw_images=10,
        grid_columns=5,
        min_classifier_accuracy=0.8,
        classifier=SMALL_CLASSIFIER,
        second_classifier=SMALL_SECOND,
        cas_classifier=SMALL_CAS,
        cas_samples=500,
        cas_seeds=(0, 1),
        cache_dir=classifier_cache_dir,
        progress=False,
    )


@pytest.fixture(scope="module")
def evaluated(
    tmp_path_factory: pytest.TempPathFactory, small_checkpoint: Path, settings: EvaluationSettings
) -> Path:
    out = tmp_path_factory.mktemp("eval")
    evaluate_checkpoint(small_checkpoint, out, settings)
    return out


def test_writes_metrics_card_and_grid(evaluated: Path, small_checkpoint: Path) -> None:
    assert sorted(path.name for path in evaluated.iterdir()) == [
        "metrics.json",
        "model_card.json",
        "model_card.md",
        "samples.png",
    ]
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert 0.0 <= metrics["label_accuracy"] <= 1.0
    assert set(metrics["label_accuracy_per_label"]) == {str(digit) for digit in range(10)}
    assert metrics["label_accuracy_worst"] == min(metrics["label_accuracy_per_label"].values())
    assert metrics["frechet_ratio"] == pytest.approx(
        metrics["frechet_distance"] / metrics["frechet_floor"]
    )
    assert metrics["test_images"] == 10_000
    assert metrics["test_negative_elbo"] == pytest.approx(
        metrics["test_reconstruction"] + metrics["test_kl"]
    )
    assert (metrics["iw_samples"], metrics["iw_images"]) == (16, 10)
    assert metrics["training_config"]["model"]["latent_dim"] == 4
    assert metrics["model"]["sha256"] == metrics["checkpoint_sha256"]
    assert metrics["classifier"]["train_seconds"] > 0
    second = metrics["second_classifier"]
    assert second["classifier"]["config"]["architecture"] == "strided"
    assert second["label_accuracy_worst"] == min(second["label_accuracy_per_label"].values())
    assert 0.0 <= metrics["precision"] <= 1.0 and 0.0 <= metrics["recall"] <= 1.0
    assert set(metrics["pr_real_check"]) == {"valid", "valid_blur_0.5", "valid_blur_1"}
    assert metrics["cas_train_images"] == 500
    assert [row["seed"] for row in metrics["cas_per_seed"]] == [0, 1]
    assert metrics["cas_gap_points"] == pytest.approx(
        100 * (metrics["cas_real_accuracy"] - metrics["cas_accuracy"])
    )
    assert set(metrics["cas_per_label"]) == {str(digit) for digit in range(10)}


def test_card_reports_the_bars_and_shows_the_grid(evaluated: Path) -> None:
    card = json.loads((evaluated / "model_card.json").read_text())
    bars = {bar["metric"]: bar for bar in card["quality_bars"]}
    assert set(bars) == {
        "cas_gap_points",
        "label_accuracy",
        "label_accuracy_worst",
        "second_classifier.label_accuracy",
        "second_classifier.label_accuracy_worst",
        "frechet_ratio",
        "test_negative_elbo",
    }
    assert bars["test_negative_elbo"]["met"] is False  # an untrained model is far from 88 nats
    assert bars["cas_gap_points"]["met"] is False  # and its samples teach nothing
    markdown = (evaluated / "model_card.md").read_text()
    assert "![prior samples, one row per label](samples.png)" in markdown
    assert "first 10 test images" in markdown
    assert "## Classification Accuracy Score (CAS)" in markdown
    assert "## Precision and recall" in markdown
    scores_table = markdown.split("## Scores")[1].split("##")[0]
    rows = [line for line in scores_table.splitlines() if line.startswith("|")]
    assert rows and all(re.sub(r"\\\|", "", row).count("|") == 3 for row in rows)
    with Image.open(evaluated / "samples.png") as grid:
        assert grid.format == "PNG"
        assert grid.height == (10 * 30 + 2) * 2  # ten rows of 28 px tiles, 2 px gutters, scale 2


def test_evaluation_is_reproducible(
    evaluated: Path, small_checkpoint: Path, settings: EvaluationSettings, tmp_path: Path
) -> None:
    again = evaluate_checkpoint(small_checkpoint, tmp_path, settings)
    first = json.loads((evaluated / "metrics.json").read_text())
    for key in ("label_accuracy", "frechet_distance", "test_negative_elbo", "cas_accuracy"):
        assert again[key] == first[key], key
    assert again["iw_negative_log_likelihood"] == pytest.approx(first["iw_negative_log_likelihood"])
    assert (tmp_path / "samples.png").read_bytes() == (evaluated / "samples.png").read_bytes()


def test_onnx_version_scores_like_its_checkpoint(
    evaluated: Path, small_checkpoint: Path, settings: EvaluationSettings, tmp_path: Path
) -> None:
    folder = export_checkpoint(small_checkpoint, tmp_path / "models", name="small")
    metrics = evaluate_onnx(folder, tmp_path / "eval", settings)
    from_checkpoint = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["model"]["kind"] == "onnx"
    assert metrics["label_accuracy"] == pytest.approx(from_checkpoint["label_accuracy"], abs=0.01)
    assert metrics["frechet_distance"] == pytest.approx(
        from_checkpoint["frechet_distance"], rel=1e-3
    )
    assert "test_negative_elbo" not in metrics


def test_onnx_folder_with_a_wrong_hash_is_refused(
    small_checkpoint: Path, settings: EvaluationSettings, tmp_path: Path
) -> None:
    folder = export_checkpoint(small_checkpoint, tmp_path / "models", name="small")
    description = json.loads((folder / "model.json").read_text())
    description["onnx_sha256"] = "0" * 64
    (folder / "model.json").write_text(json.dumps(description))
    with pytest.raises(ModelRepositoryError, match="does not match onnx_sha256"):
        evaluate_onnx(folder, tmp_path / "eval", settings)


def test_weak_classifier_is_refused(
    small_checkpoint: Path, settings: EvaluationSettings, tmp_path: Path
) -> None:
    strict = dataclasses.replace(settings, min_classifier_accuracy=0.999)
    with pytest.raises(EvaluationError, match="classifier"):
        evaluate_checkpoint(small_checkpoint, tmp_path, strict)
    assert not (tmp_path / "metrics.json").exists()


def test_cli_reports_a_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="does not exist"):
        main(["evaluate", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "eval")])


def test_cli_needs_a_checkpoint_or_an_onnx_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--out", str(tmp_path)])
    assert "checkpoint" in capsys.readouterr().err
