"""training/trainer.py: a one-epoch smoke run on a subset, its outputs, and exact resumption."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.trainer import Trainer


def test_one_epoch_on_a_subset_writes_checkpoints_metrics_and_pictures(
    tmp_path: Path, tiny_train_config: TrainConfig
) -> None:
    metrics = Trainer(tiny_train_config, tmp_path, progress=False).run()
    for name in ("best.pt", "last.pt", "metrics.json", "loss_curve.png", "samples.png"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["best_epoch"] == 1 and len(saved["history"]) == 1
    row = saved["history"][0]
    assert all(math.isfinite(row[key]) for key in ("loss", "recon", "kl", "valid_neg_elbo"))
    assert row["kl"] >= 0 and row["valid_kl"] >= 0
    assert math.isclose(row["valid_neg_elbo"], row["valid_recon"] + row["valid_kl"], rel_tol=1e-6)
    assert metrics["best_valid_neg_elbo"] == row["valid_neg_elbo"]
    _model, config, _ = load_checkpoint(tmp_path / "best.pt")
    assert config == tiny_train_config
    with Image.open(tmp_path / "samples.png") as grid:  # one row of 28-pixel tiles per label
        assert grid.height == 10 * 28 * 2 and grid.width == 10 * 28 * 2


def test_training_is_reproducible_and_resume_continues_exactly(
    tmp_path: Path, tiny_train_config: TrainConfig
) -> None:
    config = replace(tiny_train_config, epochs=2, label_guidance=0.5)  # guidance state resumes too
    Trainer(config, tmp_path / "straight", progress=False).run()

    Trainer(config, tmp_path / "resumed", progress=False).run(stop_after_epoch=1)
    resumed = Trainer.resume(tmp_path / "resumed", progress=False)
    assert resumed.epoch == 1 and resumed.config == config
    resumed.run()

    straight, _, straight_extra = load_checkpoint(tmp_path / "straight" / "last.pt")
    continued, _, continued_extra = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert continued_extra["epoch"] == 2
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, continued.state_dict()[name]), name
    assert [row["valid_neg_elbo"] for row in straight_extra["history"]] == [
        row["valid_neg_elbo"] for row in continued_extra["history"]
    ]


def test_label_guidance_adds_a_finite_classifier_term(
    tmp_path: Path, tiny_train_config: TrainConfig
) -> None:
    config = replace(tiny_train_config, label_guidance=1.0, label_guidance_warmup_epochs=0.0)
    Trainer(config, tmp_path, progress=False).run()
    row = json.loads((tmp_path / "metrics.json").read_text())["history"][0]
    assert math.isfinite(row["guidance"]) and row["guidance"] > 0
    assert row["loss"] > row["recon"] + row["kl"]  # the guidance term is in the optimised loss


def test_bfloat16_compute_trains_a_float32_model(
    tmp_path: Path, tiny_train_config: TrainConfig
) -> None:
    config = replace(tiny_train_config, compute_dtype="bfloat16", label_guidance=1.0)
    Trainer(config, tmp_path, progress=False).run()
    row = json.loads((tmp_path / "metrics.json").read_text())["history"][0]
    assert all(math.isfinite(row[key]) for key in ("loss", "recon", "kl", "guidance"))
    model, saved, _ = load_checkpoint(tmp_path / "best.pt")
    assert saved.compute_dtype == "bfloat16"
    assert {tensor.dtype for tensor in model.state_dict().values()} == {torch.float32}


def test_guidance_classifier_stops_fitting_after_its_epochs(
    tmp_path: Path, tiny_train_config: TrainConfig
) -> None:
    config = replace(tiny_train_config, epochs=2, label_guidance=1.0, label_guidance_fit_epochs=1)
    trainer = Trainer(config, tmp_path, progress=False)
    assert trainer.guidance is not None
    trainer.run(stop_after_epoch=1)
    after_first = {k: v.clone() for k, v in trainer.guidance.classifier.state_dict().items()}
    trainer.run()
    after_second = trainer.guidance.classifier.state_dict()
    assert all(torch.equal(after_first[k], after_second[k]) for k in after_first)
    fitted = Trainer(replace(config, label_guidance_fit_epochs=0), tmp_path / "b", progress=False)
    assert fitted.guidance is not None
    fitted.run(stop_after_epoch=1)
    before = {k: v.clone() for k, v in fitted.guidance.classifier.state_dict().items()}
    fitted.run()
    assert not all(
        torch.equal(before[k], v) for k, v in fitted.guidance.classifier.state_dict().items()
    )
