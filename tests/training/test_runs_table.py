"""training/runs_table.py: each run's row names what it changed and the evaluator's scores."""

from __future__ import annotations

import json
from pathlib import Path

from training.config import ModelConfig, TrainConfig, config_to_dict
from training.runs_table import config_changes, runs_table


def test_config_changes_lists_only_what_differs_from_the_default() -> None:
    config = config_to_dict(TrainConfig(model=ModelConfig(latent_dim=8), epochs=3, num_threads=1))
    assert config_changes(config) == ["latent_dim=8", "epochs=3"]
    assert config_changes(config_to_dict(TrainConfig())) == []


def test_table_row_carries_the_run_scores(tmp_path: Path) -> None:
    run = tmp_path / "latent-8"
    (run / "eval").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"train_seconds": 600, "train_cpu_seconds": 1200}))
    scores = {
        "training_config": config_to_dict(TrainConfig(model=ModelConfig(latent_dim=8))),
        "test_negative_elbo": 91.234,
        "label_accuracy": 0.98765,
        "label_accuracy_worst": 0.9612,
        "frechet_ratio": 7.04,
    }
    (run / "eval" / "metrics.json").write_text(json.dumps(scores))
    row = runs_table([run]).splitlines()[2]
    assert row == "| latent-8 | `latent_dim=8` | 10.0 | 20.0 | 91.23 | 98.77 | 96.1 | 7.0 |"
