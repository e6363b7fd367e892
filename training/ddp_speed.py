"""Training steps per second on this machine: 1 process x 2 threads vs 2 processes x 1 thread.

    python -m training.ddp_speed [--steps 40] [--rounds 2]

Each row is a real `cvae train` of the default model (2 epochs of `--steps` global batches of 128;
the second, warm epoch is timed), the 2-process row through `cvae train --nproc-per-node 2` (gloo,
DDP). Both have the same --num-threads 2, which the processes of a node share. CPU is every
process's CPU time over the epoch's wall time (cores kept busy). Rounds alternate the rows, so a
busy spell hits both; the table shows medians. Compare rows of one run, not runs of two days.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

_ROWS = (("1 process x 2 threads", None), ("2 processes x 1 thread", 2))


def _measure(nproc: int | None, steps: int, out: Path) -> tuple[float, float]:
    """(steps per second, CPU cores busy) of the second epoch of one run."""
    command = [
        sys.executable, "-m", "cvae", "--log-level", "WARNING", "train", "--out", str(out),
        "--epochs", "2", "--train-subset", str(steps * 128), "--valid-subset", "100",
        "--num-threads", "2", "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    if nproc is not None:
        command += ["--nproc-per-node", str(nproc)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    row = json.loads((out / "metrics.json").read_text())["history"][-1]
    return steps / row["seconds"], row["cpu_seconds"] / row["seconds"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="global batches per epoch (40)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each row (2)")
    args = parser.parse_args(argv)
    results: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in _ROWS}
    with tempfile.TemporaryDirectory(prefix="cvae-ddp-speed-") as folder:
        for round_index in range(args.rounds):
            for label, nproc in _ROWS:
                out = Path(folder) / f"{round_index}-{nproc or 1}"
                results[label].append(_measure(nproc, args.steps, out))
                rate, cpu = results[label][-1]
                sys.stderr.write(f"round {round_index + 1}: {label}: {rate:.2f} steps/s, ")
                sys.stderr.write(f"{cpu:.2f} cores\n")
    sys.stdout.write("| layout | steps/s (median) | CPU cores busy (median) | runs |\n")
    sys.stdout.write("|---|---:|---:|---:|\n")
    for label, rows in results.items():
        rate = statistics.median(r for r, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        sys.stdout.write(f"| {label} | {rate:.2f} | {cpu:.2f} | {len(rows)} |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
