"""A markdown table of training runs: what each changed from the default config, and its scores.

    python -m training.runs_table runs/experiments/*

Each run folder holds `metrics.json` from `cvae train` and `eval/metrics.json` from `cvae evaluate`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.config import TrainConfig, config_to_dict

_IGNORED_KEYS = {"num_threads"}  # how it ran, not what it learned


def config_changes(config: dict[str, Any], default: dict[str, Any] | None = None) -> list[str]:
    """`key=value` for every field that differs from the default configuration."""
    default = config_to_dict(TrainConfig()) if default is None else default
    changes = []
    for key, value in config.items():
        if key in _IGNORED_KEYS:
            continue
        if isinstance(value, dict):
            changes += config_changes(value, default.get(key, {}))
        elif default.get(key) != value:
            shown = ",".join(map(str, value)) if isinstance(value, list) else value
            changes.append(f"{key}={shown}")
    return changes


def run_row(run: Path) -> list[str]:
    train = json.loads((run / "metrics.json").read_text())
    scores = json.loads((run / "eval" / "metrics.json").read_text())
    # The run's own record first: a checkpoint from before an option existed is read back with
    # today's default for it, which the evaluator then reports.
    changes = config_changes(train.get("train_config", scores["training_config"]))
    return [
        run.name,
        ", ".join(f"`{change}`" for change in changes) or "(the default)",
        str(len(train["history"])),
        f"{train['train_seconds'] / 60:.1f}",
        f"{train['train_cpu_seconds'] / 60:.1f}",
        f"{scores['test_negative_elbo']:.2f}",
        f"{100 * scores['label_accuracy']:.2f}",
        f"{100 * scores['label_accuracy_worst']:.1f}",
        f"{scores['frechet_ratio']:.1f}",
    ]


def runs_table(runs: Sequence[Path]) -> str:
    header = [
        "run",
        "changes from the default config",
        "epochs run",
        "train min (wall)",
        "train CPU min",
        "test −ELBO",
        "label acc %",
        "worst label %",
        "Fréchet × floor",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
    lines += ["| " + " | ".join(run_row(run)) + " |" for run in runs]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (train + eval outputs)")
    args = parser.parse_args(argv)
    missing = [str(run) for run in args.runs if not (run / "eval" / "metrics.json").is_file()]
    if missing:
        parser.error(f"not evaluated yet (no eval/metrics.json): {', '.join(missing)}")
    sys.stdout.write(runs_table(args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
