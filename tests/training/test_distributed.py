"""training/distributed.py in one process: device and backend choice, the torchrun environment,
the shards of an epoch and the launcher's command line (the CUDA path is checked for its choices
only: no GPU here)."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from cvae.cli import build_parser
from training import distributed
from training.cli import train_arguments
from training.distributed import DistributedError, Runtime


@pytest.mark.parametrize(
    ("choice", "gpus", "local_rank", "expected"),
    [
        ("cpu", 0, 0, "cpu"),
        ("cpu", 4, 3, "cpu"),
        ("auto", 0, 1, "cpu"),
        ("auto", 2, 1, "cuda:1"),
        ("cuda", 1, 0, "cuda:0"),
        ("cuda", 8, 5, "cuda:5"),
    ],
)
def test_device_follows_the_choice_and_the_local_rank(
    choice: str, gpus: int, local_rank: int, expected: str
) -> None:
    device = distributed.select_device(choice, gpus, local_rank)
    assert device == expected
    assert distributed.select_backend(device) == ("nccl" if expected != "cpu" else "gloo")


def test_cuda_without_a_gpu_or_with_too_few_gpus_is_refused() -> None:
    with pytest.raises(DistributedError, match="no CUDA device"):
        distributed.select_device("cuda", 0, 0)
    with pytest.raises(DistributedError, match="has no GPU of its own"):
        distributed.select_device("cuda", 2, 2)
    with pytest.raises(DistributedError, match="device is one of"):
        distributed.select_device("tpu", 0, 0)


def test_world_comes_from_torchruns_environment() -> None:
    assert distributed.world_from_env({}) == (0, 1, 0, 1)
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert distributed.world_from_env(env) == (3, 4, 1, 2)
    with pytest.raises(DistributedError, match="inconsistent"):
        distributed.world_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_a_plain_process_is_a_world_of_one_on_the_cpu() -> None:
    runtime = distributed.start("cpu")
    assert runtime == Runtime()
    assert runtime.is_main and not runtime.distributed and runtime.backend is None
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, runtime) is model


def test_the_global_batch_is_shared_by_the_processes() -> None:
    assert Runtime(rank=1, world_size=4, local_world_size=4).share(128) == 32
    assert Runtime().share(7) == 7
    with pytest.raises(DistributedError, match=r"batch_size 128 .* not divisible by the 3"):
        Runtime(world_size=3, local_world_size=3).share(128)


def test_threads_are_the_nodes_budget_split_over_its_processes() -> None:
    assert distributed.threads_per_process(2, 1) == 2
    assert distributed.threads_per_process(2, 2) == 1
    assert distributed.threads_per_process(8, 3) == 2
    assert distributed.threads_per_process(1, 4) == 1


@pytest.mark.parametrize(("size", "world_size"), [(256, 2), (1000, 4), (1001, 2), (7, 3)])
def test_the_ranks_batches_together_are_the_single_process_batches(
    size: int, world_size: int
) -> None:
    """Per-rank batch k of every rank, joined, is global batch k of one process (up to the
    padding DistributedSampler adds when the ranks cannot get equal shares)."""
    global_batch = 4 * world_size
    single = distributed.epoch_order(size, 7, 3, Runtime())
    shards = [
        distributed.epoch_order(size, 7, 3, Runtime(rank, world_size, 0, world_size))
        for rank in range(world_size)
    ]
    rank_batch = global_batch // world_size
    steps = math.ceil(size / global_batch)
    assert {math.ceil(len(shard) / rank_batch) for shard in shards} == {steps}
    padded = torch.cat([single, single[: len(shards[0]) * world_size - size]])
    for step in range(steps):
        joined = torch.cat([s[step * rank_batch : (step + 1) * rank_batch] for s in shards])
        expected = padded[step * global_batch : (step + 1) * global_batch]
        assert sorted(joined.tolist()) == sorted(expected.tolist()), step


def test_one_process_keeps_the_permutation_it_always_had() -> None:
    """The order of a single-process run did not change with sharding (same seeds, same model)."""
    seed, epoch = 5 * 100_003, 2
    expected = torch.randperm(300, generator=torch.Generator().manual_seed(seed + epoch))
    assert torch.equal(distributed.epoch_order(300, seed, epoch, Runtime()), expected)


def test_each_epoch_and_seed_gets_its_own_order() -> None:
    orders = {
        tuple(distributed.epoch_order(50, seed * 100_003, epoch, Runtime()).tolist())
        for seed in (0, 1)  # as the trainer spaces them: the sampler adds the epoch to the seed
        for epoch in (0, 1)
    }
    assert len(orders) == 4


def _train_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["train", *argv])


def test_the_launcher_runs_torchrun_with_the_workers_arguments() -> None:
    args = _train_args(
        "--nproc-per-node", "2", "--out", "runs/x", "--epochs", "3", "--lr", "0.0005",
        "--encoder-channels", "8,16", "--no-progress", "--device", "cpu",
    )  # fmt: skip
    worker = train_arguments(args)
    command = distributed.launcher_command(args.nproc_per_node, worker)
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    assert command[6:8] == ["-m", "cvae"]
    assert "--nproc-per-node" not in worker
    again = build_parser().parse_args(worker)  # the worker parses what it is given alike
    for name in ("out", "device", "no_progress", "cfg_epochs", "cfg_lr", "cfg_encoder_channels"):
        assert getattr(again, name) == getattr(args, name), name
    assert not hasattr(again, "cfg_batch_size")  # unset flags stay unset
    with pytest.raises(DistributedError):
        distributed.launcher_command(0, worker)
