"""The training loop: seeded, resumable, validated every epoch, best and last checkpoints.

It knows the model only through its interface: `model(x, label) -> (logits, mu, logvar, kl)`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from training import distributed
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import TrainConfig, config_to_dict
from training.data import load_mnist
from training.distributed import Runtime
from training.label_guidance import LabelGuidance
from training.loss import negative_elbo
from training.model import CVAE
from training.plots import save_loss_curve, save_sample_grid

_LOGGER = logging.getLogger(__name__)

BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
METRICS_FILE = "metrics.json"
LOSS_CURVE_FILE = "loss_curve.png"
SAMPLES_FILE = "samples.png"
_VALID_BATCH = 1000


@dataclass
class _Tensors:
    images: torch.Tensor  # (N, 1, H, W) float32 in [0, 1]
    labels: torch.Tensor  # (N,) int64


def _as_tensors(
    split: tuple[np.ndarray, np.ndarray], subset: int, shape: tuple[int, int], device: str = "cpu"
) -> _Tensors:
    images, labels = split
    if subset:
        images, labels = images[:subset], labels[:subset]
    return _Tensors(
        torch.from_numpy(np.ascontiguousarray(images)).view(-1, 1, *shape).to(device),
        torch.from_numpy(np.ascontiguousarray(labels)).to(device),
    )


class _Schedules:
    """Learning rate (per step, via torch's schedulers) and KL weight (per step, linear warm-up)."""

    def __init__(self, config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
        total = config.epochs * steps_per_epoch
        self.warmup_steps = config.kl_warmup_epochs * steps_per_epoch
        self.scheduler: torch.optim.lr_scheduler.LRScheduler
        if config.lr_schedule == "onecycle":
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=config.lr, total_steps=total, pct_start=0.15
            )
        elif config.lr_schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

        self.guidance_warmup_steps = config.label_guidance_warmup_epochs * steps_per_epoch
        self.guidance = config.label_guidance

    def kl_weight(self, step: int) -> float:
        return 1.0 if self.warmup_steps <= 0 else min(1.0, step / self.warmup_steps)

    def guidance_weight(self, step: int) -> float:
        if self.guidance_warmup_steps <= 0:
            return self.guidance
        return self.guidance * min(1.0, step / self.guidance_warmup_steps)


@torch.no_grad()
def evaluate_elbo(model: CVAE, data: _Tensors, seed: int = 0) -> dict[str, float]:
    """Mean negative ELBO (KL weight 1), recon and KL in nats per image; one z per image."""
    was_training = model.training
    model.eval()
    totals = {"neg_elbo": 0.0, "recon": 0.0, "kl": 0.0}
    on_gpu = [data.images.device.index] if data.images.is_cuda else []
    with torch.random.fork_rng(devices=on_gpu):  # the training noise streams stay untouched
        torch.manual_seed(seed)
        for start in range(0, len(data.labels), _VALID_BATCH):
            x = data.images[start : start + _VALID_BATCH]
            label = data.labels[start : start + _VALID_BATCH]
            logits, mu, logvar, kl_per_image = model(x, label)
            loss, recon, kl = negative_elbo(logits, x, mu, logvar, kl_per_image=kl_per_image)
            for key, value in (("neg_elbo", loss), ("recon", recon), ("kl", kl)):
                totals[key] += float(value) * len(label)
    model.train(was_training)
    return {key: value / len(data.labels) for key, value in totals.items()}


class Trainer:
    """Runs `config` into `out_dir`: checkpoints, metrics.json, loss curve and sample grid.

    Under torchrun every rank trains its shard of each global batch (training/distributed.py);
    rank 0 alone validates, logs, checkpoints and draws.
    """

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | Path,
        progress: bool = True,
        runtime: Runtime | None = None,
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.runtime = runtime or Runtime()
        self.progress = progress and self.runtime.is_main
        self.rank_batch = self.runtime.share(config.batch_size)
        self.rank_guidance_samples = self.runtime.share(
            config.label_guidance_samples, "label_guidance_samples"
        )
        threads = distributed.threads_per_process(config.num_threads, self.runtime.local_world_size)
        torch.set_num_threads(threads)
        torch.manual_seed(config.seed)
        splits = load_mnist(config.data_source)
        shape, device = config.model.image_shape, self.runtime.device
        self.train_data = _as_tensors(splits.train, config.train_subset, shape, device)
        self.valid_data = _as_tensors(splits.valid, config.valid_subset, shape, device)
        self.model = CVAE(config.model).to(device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.steps_per_epoch = math.ceil(len(self.train_data.labels) / config.batch_size)
        self.schedules = _Schedules(config, self.optimizer, self.steps_per_epoch)
        self.guidance = (
            LabelGuidance(config.model.num_classes, config.model.image_shape, config.lr)
            if config.label_guidance > 0
            else None
        )
        self.world = distributed.describe(self.runtime, config.batch_size, config.lr, threads)
        self._train_model = distributed.wrap(self.model, self.runtime)  # DDP under torchrun
        if self.guidance is not None:
            self.guidance.classifier.to(device)
            distributed.average_gradients_of(self.guidance.classifier, self.runtime)
        distributed.seed_rank(config.seed, self.runtime)
        if self.runtime.is_main:
            _LOGGER.info(
                "%d process(es) on %s (%s), %d thread(s) each: global batch %d = %d x %d, "
                "peak lr %g, %d steps per epoch",
                self.runtime.world_size, self.runtime.device, self.runtime.backend or "no group",
                threads, config.batch_size, self.runtime.world_size, self.rank_batch, config.lr,
                self.steps_per_epoch,
            )  # fmt: skip
        self.epoch = 0  # epochs completed
        self.history: list[dict[str, float]] = []
        self.best_valid = math.inf
        self.train_seconds = 0.0

    @classmethod
    def resume(
        cls, out_dir: str | Path, progress: bool = True, runtime: Runtime | None = None
    ) -> Trainer:
        """Continue the run saved in `out_dir/last.pt` where it stopped, with any world size
        (every rank's CPU random stream continues too where the saved run had that rank)."""
        model, config, extra = load_checkpoint(Path(out_dir) / LAST_CHECKPOINT)
        trainer = cls(config, out_dir, progress, runtime)
        trainer.model.load_state_dict(model.state_dict())
        trainer.optimizer.load_state_dict(extra["optimizer"])
        trainer.schedules.scheduler.load_state_dict(extra["scheduler"])
        trainer.epoch = int(extra["epoch"])
        trainer.history = list(extra["history"])
        trainer.best_valid = float(extra["best_valid_neg_elbo"])
        trainer.train_seconds = float(extra["train_seconds"])
        states = extra.get("torch_rng_states", [extra["torch_rng_state"]])
        if trainer.runtime.rank < len(states):
            torch.set_rng_state(states[trainer.runtime.rank])
        else:  # more ranks than were saved: a fresh stream of its own
            distributed.seed_rank(config.seed, trainer.runtime, trainer.epoch)
        if trainer.runtime.device_type == "cuda":  # CUDA streams are not saved
            torch.cuda.manual_seed(config.seed + trainer.runtime.rank + 7919 * trainer.epoch)
        if trainer.guidance is not None:
            trainer.guidance.load_state_dict(extra["guidance"])
        if trainer.runtime.is_main:
            _LOGGER.info(
                "resuming %s after epoch %d of %d (saved by %d process(es), resumed by %d)",
                out_dir, trainer.epoch, config.epochs,
                extra.get("world", {}).get("world_size", 1), trainer.runtime.world_size,
            )  # fmt: skip
        return trainer

    def run(self, stop_after_epoch: int | None = None) -> dict[str, Any]:
        """Train to the configured epochs (or stop early, resumable, after `stop_after_epoch`)."""
        self.model.train()
        last_epoch = self.config.epochs if stop_after_epoch is None else stop_after_epoch
        while self.epoch < min(last_epoch, self.config.epochs):
            started, cpu_started = time.perf_counter(), time.process_time()
            train_stats = self._train_one_epoch()
            seconds = time.perf_counter() - started
            train_stats["cpu_seconds"] = distributed.sum_over_ranks(
                torch.tensor([time.process_time() - cpu_started], dtype=torch.float64),
                self.runtime,
            ).item()  # every rank's CPU
            self.train_seconds += seconds
            self.epoch += 1
            rng_states = distributed.gather(torch.get_rng_state(), self.runtime)
            if not self.runtime.is_main:
                continue  # rank 0 alone validates, logs and checkpoints
            valid_stats = evaluate_elbo(self.model, self.valid_data, seed=self.config.seed)
            row = {"epoch": self.epoch, "seconds": seconds, **train_stats}
            row.update({f"valid_{key}": value for key, value in valid_stats.items()})
            self.history.append(row)
            _LOGGER.info(
                "epoch %d/%d  train %.2f  valid -ELBO %.2f (recon %.2f, KL %.2f)  %.1f s",
                self.epoch, self.config.epochs, train_stats["loss"], valid_stats["neg_elbo"],
                valid_stats["recon"], valid_stats["kl"], seconds,
            )  # fmt: skip
            if valid_stats["neg_elbo"] < self.best_valid:
                self.best_valid = valid_stats["neg_elbo"]
                save_checkpoint(
                    self.out_dir / BEST_CHECKPOINT,
                    self.model,
                    self.config,
                    {**row, "world": self.world},
                )
            self._save_last(rng_states)
        distributed.barrier(self.runtime)
        return self._write_reports() if self.runtime.is_main else {}

    def _train_one_epoch(self) -> dict[str, float]:
        config = self.config
        # One permutation per epoch for all ranks, the same a single process uses; this rank's
        # share of it (all of it on one process).
        order = distributed.epoch_order(
            len(self.train_data.labels), config.seed * 100_003, self.epoch, self.runtime
        ).to(self.runtime.device)
        keys = ("loss", "recon", "kl", "guidance")
        sums = torch.zeros(len(keys), dtype=torch.float64, device=self.runtime.device)
        count = 0
        bar = tqdm(
            range(self.steps_per_epoch),
            desc=f"epoch {self.epoch + 1}/{config.epochs}",
            disable=not self.progress,
            leave=False,
        )
        for batch_index in bar:
            index = order[batch_index * self.rank_batch : (batch_index + 1) * self.rank_batch]
            x, label = self.train_data.images[index], self.train_data.labels[index]
            step = self.epoch * self.steps_per_epoch + batch_index
            with self._autocast():
                logits, mu, logvar, kl_per_image = self._train_model(x, label)
            guidance = self._guidance_loss(x, label)
            loss, recon, kl = negative_elbo(
                logits.float(), x, mu.float(), logvar.float(),
                self.schedules.kl_weight(step), config.free_bits,
                kl_per_image if self.model.prior is not None else None,
            )  # fmt: skip
            loss = loss + self.schedules.guidance_weight(step) * guidance
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
            self.optimizer.step()
            self.schedules.scheduler.step()
            sums += torch.stack([loss, recon, kl, guidance]).detach().double() * len(label)
            count += len(label)
            if self.progress and batch_index % 20 == 0:
                mean = (sums / count).tolist()
                bar.set_postfix(loss=f"{mean[0]:.2f}", kl=f"{mean[2]:.2f}")
        totals = distributed.sum_over_ranks(
            torch.cat([sums.cpu(), torch.tensor([count], dtype=torch.float64)]), self.runtime
        ).tolist()  # the global batch's means on every rank
        stats = {key: value / totals[-1] for key, value in zip(keys, totals, strict=False)}
        stats["lr"] = self.optimizer.param_groups[0]["lr"]
        stats["kl_weight"] = self.schedules.kl_weight(step)
        return stats

    def _autocast(self) -> torch.autocast:
        """bfloat16 autocast of the forward passes when configured (on CPU or CUDA alike: no loss
        scaling needed); a no-op for float32."""
        return torch.autocast(
            self.runtime.device_type,
            dtype=torch.bfloat16,
            enabled=self.config.compute_dtype == "bfloat16",
        )

    def _guidance_loss(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Fit the guidance classifier on the real batch, then score decoded prior samples."""
        if self.guidance is None:
            return torch.zeros((), device=self.runtime.device)
        fit_epochs = self.config.label_guidance_fit_epochs
        if fit_epochs == 0 or self.epoch < fit_epochs:
            self.guidance.fit_step(x, label)
        count = self.rank_guidance_samples  # all ranks together draw label_guidance_samples
        device = self.runtime.device
        z = torch.randn(count, self.config.model.latent_dim, device=device)  # (S, latent)
        wanted = torch.randint(self.config.model.num_classes, (count,), device=device)
        with self._autocast():
            images = self.model.served_decoder()(z, wanted)
            loss = self.guidance.sample_loss(images, wanted, self.config.label_guidance_confidence)
            return loss.float()

    def _save_last(self, rng_states: list[torch.Tensor]) -> None:
        save_checkpoint(
            self.out_dir / LAST_CHECKPOINT,
            self.model,
            self.config,
            {
                "epoch": self.epoch,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedules.scheduler.state_dict(),
                "history": self.history,
                "best_valid_neg_elbo": self.best_valid,
                "train_seconds": self.train_seconds,
                "torch_rng_state": rng_states[0],
                "torch_rng_states": rng_states,  # one per rank
                "world": self.world,
                **({"guidance": self.guidance.state_dict()} if self.guidance else {}),
            },
        )

    def _write_reports(self) -> dict[str, Any]:
        best_model, _, best_extra = load_checkpoint(self.out_dir / BEST_CHECKPOINT)
        metrics = {
            "best_epoch": best_extra["epoch"],
            "best_valid_neg_elbo": self.best_valid,
            "train_seconds": self.train_seconds,
            "seconds_per_epoch": self.train_seconds / max(1, len(self.history)),
            "train_cpu_seconds": sum(row["cpu_seconds"] for row in self.history),
            "num_threads": self.config.num_threads,
            "world": self.world,
            "train_config": config_to_dict(self.config),
            "history": self.history,
        }
        (self.out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        save_loss_curve(self.history, self.out_dir / LOSS_CURVE_FILE)
        save_sample_grid(best_model, self.out_dir / SAMPLES_FILE, seed=self.config.seed)
        _LOGGER.info(
            "best valid -ELBO %.2f at epoch %d; %.0f s of training; wrote %s",
            self.best_valid, metrics["best_epoch"], self.train_seconds, self.out_dir,
        )  # fmt: skip
        return metrics
