"""torch.distributed for `cvae train`: the device, the process group, DDP and the data shards.

A process that torchrun started (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
MASTER_PORT in its environment) joins the process group: gloo on CPU, NCCL on CUDA. A process
started plainly is a world of one, and nothing here talks to anyone.

`TrainConfig.batch_size` is the global batch: each of N processes takes batch_size / N images a
step, DDP averages the gradients, so the optimiser sees the same batch and learning rate whatever
N is, and a run resumes with any number of processes.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

_LOGGER = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda")
DEFAULT_TIMEOUT_S = 300.0
_SEED_STRIDE = 1_000_003  # ranks > 0 draw their noise from seed * stride + rank (+ epoch on resume)


class DistributedError(RuntimeError):
    """A device or world that cannot run this training."""


# What torch.distributed raises when a peer dies, never joins or a collective times out.
CommunicationError = dist.DistError


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: its rank in the world and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: str = "cpu"  # "cpu" or "cuda:<index>"
    backend: str | None = None  # "gloo" or "nccl" once the process group is up
    timeout_s: float = DEFAULT_TIMEOUT_S  # how long a collective waits for the other ranks

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, validates, checkpoints and draws."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def device_type(self) -> str:
        return self.device.split(":", 1)[0]

    def share(self, total: int, name: str = "batch_size") -> int:
        """This rank's part of a per-step count that all ranks together draw (the batch)."""
        if total % self.world_size:
            raise DistributedError(
                f"{name} {total} (for all processes together) is not divisible by the "
                f"{self.world_size} processes"
            )
        return total // self.world_size


def world_from_env(environ: Mapping[str, str]) -> tuple[int, int, int, int]:
    """(rank, world size, local rank, local world size) as torchrun sets them; (0, 1, 0, 1) else."""
    world_size = int(environ.get("WORLD_SIZE", "1"))
    rank = int(environ.get("RANK", "0"))
    local_rank = int(environ.get("LOCAL_RANK", "0"))
    local_world_size = int(environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    if not (0 <= rank < world_size and 0 <= local_rank < local_world_size <= world_size):
        raise DistributedError(
            f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={world_size} "
            f"LOCAL_RANK={local_rank} LOCAL_WORLD_SIZE={local_world_size}"
        )
    return rank, world_size, local_rank, local_world_size


def select_device(choice: str, cuda_devices: int, local_rank: int) -> str:
    """`--device` and the GPUs this node has -> "cpu" or "cuda:<local rank>"."""
    if choice not in DEVICE_CHOICES:
        raise DistributedError(f"device is one of {', '.join(DEVICE_CHOICES)}, not {choice!r}")
    if choice == "cpu" or (choice == "auto" and cuda_devices == 0):
        return "cpu"
    if cuda_devices == 0:
        raise DistributedError("--device cuda: torch sees no CUDA device on this machine")
    if local_rank >= cuda_devices:
        raise DistributedError(
            f"local rank {local_rank} has no GPU of its own: this node has {cuda_devices}; "
            "start at most that many processes per node"
        )
    return f"cuda:{local_rank}"


def select_backend(device: str) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.startswith("cuda") else "gloo"


def threads_per_process(num_threads: int, local_world_size: int) -> int:
    """`num_threads` is the node's budget: the processes on one node share it (at least 1 each)."""
    return max(1, num_threads // local_world_size)


def start(device_choice: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> Runtime:
    """This process's Runtime; joins the process group when torchrun started several."""
    rank, world_size, local_rank, local_world_size = world_from_env(os.environ)
    cuda_devices = torch.cuda.device_count() if device_choice != "cpu" else 0
    device = select_device(device_choice, cuda_devices, local_rank)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    if world_size == 1:
        return Runtime(device=device)
    backend = select_backend(device)
    dist.init_process_group(
        backend=backend,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
        device_id=torch.device(device) if backend == "nccl" else None,
    )
    return Runtime(rank, world_size, local_rank, local_world_size, device, backend, timeout_s)


def stop(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, runtime: Runtime) -> nn.Module:
    """The module to call for training steps: DDP (gradients averaged over ranks) or the model."""
    if not runtime.distributed:
        return model
    device_ids = [torch.device(runtime.device).index] if runtime.device_type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def average_gradients_of(module: nn.Module, runtime: Runtime) -> None:
    """Average `module`'s gradients over ranks at every backward, for a module DDP does not wrap
    (the guidance classifier, which has its own optimiser); its weights start equal (broadcast)."""
    if not runtime.distributed:
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)
    world_size = runtime.world_size

    def average(parameter: torch.Tensor) -> None:
        assert parameter.grad is not None
        dist.all_reduce(parameter.grad)
        parameter.grad.div_(world_size)

    for parameter in module.parameters():
        parameter.register_post_accumulate_grad_hook(average)


def seed_rank(seed: int, runtime: Runtime, epoch: int = 0) -> None:
    """Give each rank > 0 its own noise (rank 0 keeps the single-process stream)."""
    if runtime.rank > 0 or epoch > 0:
        torch.manual_seed(seed * _SEED_STRIDE + runtime.rank + epoch * runtime.world_size)


def epoch_order(size: int, seed: int, epoch: int, runtime: Runtime) -> torch.Tensor:
    """This rank's image indices for `epoch`, from one permutation per (seed, epoch) for all ranks.

    Rank r takes positions r, r + N, r + 2N... of the permutation, so per-rank batch k of every
    rank together is global batch k of a single process given the same seed.
    """
    sampler: DistributedSampler[int] = DistributedSampler(
        range(size),  # type: ignore[arg-type]  # the sampler needs only len()
        num_replicas=runtime.world_size,
        rank=runtime.rank,
        shuffle=True,
        seed=seed,
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.int64)


def sum_over_ranks(values: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Element-wise sum of a float64 vector over ranks (the vector itself on one process)."""
    if runtime.distributed:
        dist.all_reduce(values)
    return values


def gather(obj: Any, runtime: Runtime) -> list[Any]:
    """One `obj` per rank, in rank order, on every rank."""
    if not runtime.distributed:
        return [obj]
    found: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(found, obj)
    return found


def barrier(runtime: Runtime) -> None:
    """Wait for every rank; on gloo, a rank that never arrives is named in the error."""
    if not runtime.distributed:
        return
    if runtime.backend == "gloo":
        dist.monitored_barrier(timeout=datetime.timedelta(seconds=runtime.timeout_s))
    else:
        dist.barrier()


def launcher_command(nproc_per_node: int, cvae_args: Sequence[str]) -> list[str]:
    """`cvae train --nproc-per-node N ...` as the torchrun command line it stands for, with the
    `cvae` arguments (`train ...`) each worker runs."""
    if nproc_per_node < 1:
        raise DistributedError("--nproc-per-node must be at least 1")
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", str(nproc_per_node), "-m", "cvae", *cvae_args,
    ]  # fmt: skip


def describe(runtime: Runtime, global_batch: int, lr: float, threads: int) -> dict[str, Any]:
    """What the log and the checkpoints state about the world the run trained in."""
    return {
        "world_size": runtime.world_size,
        "backend": runtime.backend,
        "device": runtime.device_type,
        "threads_per_process": threads,
        "per_rank_batch": runtime.share(global_batch),
        "global_batch": global_batch,
        "peak_lr": lr,
    }
