"""A markdown table of training runs: what each changed from the default config, and its scores.

    python -m training.runs_table runs/experiments/*
    python -m training.runs_table --usefulness runs/experiments/*   # CAS, both judges, P/R

Each run folder holds `metrics.json` from `cvae train` and `eval/metrics.json` from `cvae evaluate`
(a folder with `eval/metrics.json` alone, e.g. `cvae evaluate --onnx`, gives a usefulness row).
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


def _pair(first: float, second: float | None, scale: float, digits: int) -> str:
    shown = f"{scale * first:.{digits}f}"
    return shown if second is None else f"{shown} / {scale * second:.{digits}f}"


def usefulness_row(run: Path) -> list[str]:
    scores = json.loads((run / "eval" / "metrics.json").read_text())
    second = scores.get("second_classifier", {})
    cas = "—"
    if "cas_accuracy" in scores:
        cas = f"{100 * scores['cas_accuracy']:.2f} ± {100 * scores['cas_accuracy_std']:.2f}"
    gap = f"{scores['cas_gap_points']:.2f}" if "cas_gap_points" in scores else "—"
    elbo = scores.get("test_negative_elbo")
    return [
        run.name,
        cas,
        f"{100 * scores['cas_real_accuracy']:.2f}" if "cas_real_accuracy" in scores else "—",
        gap,
        str(scores.get("cas_worst_label", "—")),
        _pair(scores["label_accuracy"], second.get("label_accuracy"), 100, 2),
        _pair(scores["label_accuracy_worst"], second.get("label_accuracy_worst"), 100, 1),
        _pair(scores["frechet_ratio"], second.get("frechet_ratio"), 1, 1),
        f"{scores['precision']:.3f}" if "precision" in scores else "—",
        f"{scores['recall']:.3f}" if "recall" in scores else "—",
        "—" if elbo is None else f"{elbo:.2f}",
    ]


def usefulness_table(runs: Sequence[Path]) -> str:
    header = [
        "run",
        "CAS % (mean ± sd)",
        "real-trained %",
        "CAS gap pt",
        "weakest CAS digit",
        "label acc % (1st / 2nd judge)",
        "worst label % (1st / 2nd)",
        "Fréchet × floor (1st / 2nd)",
        "precision",
        "recall",
        "test −ELBO",
    ]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(usefulness_row(run)) + " |" for run in runs]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (train + eval outputs)")
    parser.add_argument(
        "--usefulness",
        action="store_true",
        help="the CAS, second-judge and precision/recall table instead",
    )
    args = parser.parse_args(argv)
    missing = [str(run) for run in args.runs if not (run / "eval" / "metrics.json").is_file()]
    if missing:
        parser.error(f"not evaluated yet (no eval/metrics.json): {', '.join(missing)}")
    table = usefulness_table(args.runs) if args.usefulness else runs_table(args.runs)
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
