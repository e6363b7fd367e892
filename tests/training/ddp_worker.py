"""A torchrun worker for the multi-process tests: trains a tiny config, then every rank saves the
weights it ends with (rank 0's checkpoints alone cannot show that the ranks agree).

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/training/ddp_worker.py \
        OUT [--resume] [--epochs N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training import distributed
from training.config import ModelConfig, TrainConfig
from training.trainer import Trainer


def config(epochs: int = 3) -> TrainConfig:
    """32 steps an epoch of a tiny model, label guidance on (its classifier is averaged too)."""
    return TrainConfig(
        model=ModelConfig(
            latent_dim=4, encoder_channels=(4, 8), encoder_hidden=16, decoder_channels=(8, 4, 4)
        ),
        epochs=epochs,
        batch_size=32,
        train_subset=1024,
        valid_subset=500,
        label_guidance=1.0,
        label_guidance_samples=8,
        label_guidance_fit_epochs=2,
        compute_dtype="float32",
        num_threads=2,
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    runtime = distributed.start("cpu", timeout_s=60)
    try:
        if args.resume:
            trainer = Trainer.resume(args.out, progress=False, runtime=runtime)
        else:
            trainer = Trainer(config(args.epochs), args.out, progress=False, runtime=runtime)
        trainer.run()
        assert trainer.guidance is not None
        torch.save(
            {
                "model": trainer.model.state_dict(),
                "classifier": trainer.guidance.classifier.state_dict(),
                "rng": torch.get_rng_state(),
            },
            args.out / f"rank-{runtime.rank}.pt",
        )
    finally:
        distributed.stop(runtime)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
