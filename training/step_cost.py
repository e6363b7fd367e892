"""Milliseconds per training step of the default model, for the choices that set training speed.

    python -m training.step_cost [--steps 40] [--rounds 2]

Each row runs in its own process (OpenMP reads its wait policy when torch loads) on real MNIST
batches: float32 or bfloat16 autocast, the guidance classifier still fitting or already fixed,
and how OpenMP threads wait. Rounds alternate the rows, so a busy spell hits all of them; the
table shows the median. Timings on a shared machine are noisy: compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence

# (label, TrainConfig overrides, environment)
_ROWS: tuple[tuple[str, dict[str, object], dict[str, str]], ...] = (
    ("float32, classifier fitting, passive wait", {"compute_dtype": "float32"},
     {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("float32, classifier fitting, short spin", {"compute_dtype": "float32"},
     {"GOMP_SPINCOUNT": "10000"}),
    ("bfloat16, classifier fitting, short spin", {}, {"GOMP_SPINCOUNT": "10000"}),
    ("bfloat16, classifier fixed, short spin", {"label_guidance_fit_epochs": 1},
     {"GOMP_SPINCOUNT": "10000"}),
    ("bfloat16, classifier fixed, passive wait", {"label_guidance_fit_epochs": 1},
     {"OMP_WAIT_POLICY": "PASSIVE"}),
)  # fmt: skip


def _measure(overrides: dict[str, object], steps: int) -> float:
    """In this process: ms per step over `steps` steps after a warm-up epoch of the same size."""
    from training.config import TrainConfig
    from training.trainer import Trainer

    config = TrainConfig(train_subset=steps * 128, valid_subset=100, epochs=2, **overrides)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="cvae-step-cost-") as run_dir:
        trainer = Trainer(config, run_dir, progress=False)
        trainer.run(stop_after_epoch=1)  # warm-up; afterwards a fixed classifier stops fitting
        trainer.run()
    return float(trainer.history[-1]["seconds"]) / trainer.steps_per_epoch * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--row", type=int, help=argparse.SUPPRESS)  # internal: one measurement
    args = parser.parse_args(argv)
    if args.row is not None:
        sys.stdout.write(json.dumps(_measure(_ROWS[args.row][1], args.steps)) + "\n")
        return 0
    times: dict[int, list[float]] = {index: [] for index in range(len(_ROWS))}
    for round_index in range(args.rounds):
        for index, (label, _, env) in enumerate(_ROWS):
            clean = {
                k: v
                for k, v in os.environ.items()
                if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
            }
            command = [sys.executable, "-m", "training.step_cost", "--row", str(index),
                       "--steps", str(args.steps)]  # fmt: skip
            output = subprocess.run(
                command, env={**clean, **env}, capture_output=True, text=True, check=True
            ).stdout
            times[index].append(float(output.strip().splitlines()[-1]))
            sys.stderr.write(f"round {round_index + 1}: {label}: {times[index][-1]:.1f} ms\n")
    sys.stdout.write("| configuration | ms per step (median) |\n|---|---:|\n")
    for index, (label, _, _) in enumerate(_ROWS):
        sys.stdout.write(f"| {label} | {statistics.median(times[index]):.1f} |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
