"""bench/profile.py: reading py-spy's collapsed stacks (format of `py-spy record --format raw`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.profile import StackProfile, group_cpu_seconds, group_rss_mib

_PREFIX = (
    'process 23272:"python -m cvae serve";thread (0x7f4a): MainThread;<module> (cvae/__main__.py:7)'
)
_LOOP = f"{_PREFIX};run (asyncio/runners.py:190)"
_RAW = "\n".join(
    [
        f"{_LOOP};select (selectors.py:468) 70",
        f"{_LOOP};Handle._run (asyncio/events.py:80);to_uint8 (service/codec.py:41) 20",
        f"{_LOOP};Handle._run (asyncio/events.py:84);to_uint8 (service/codec.py:44) 5",
        'process 23272:"python -m cvae serve";thread (0x7f4b): decoder_0;'
        "Thread._bootstrap (threading.py:1002);"
        "_worker (concurrent/futures/thread.py:83);"
        "Session.run (onnxruntime/capi/onnxruntime_inference_collection.py:266) 5",
        "garbage line without a count",
    ]
)


def test_line_numbers_and_process_frames_are_folded_away() -> None:
    profile = StackProfile.parse(_RAW)
    assert profile.samples == 100
    assert all(
        not frame.startswith(("process ", "thread ("))
        for _, frames in profile.stacks
        for frame in frames
    )
    assert profile.self_shares(top=2) == [
        ("select (selectors.py)", 0.70),
        ("to_uint8 (service/codec.py)", 0.25),
    ]


def test_inclusive_shares_count_each_frame_once_per_stack() -> None:
    inclusive = dict(StackProfile.parse(_RAW).inclusive_shares())
    assert inclusive["Handle._run (asyncio/events.py)"] == pytest.approx(0.25)
    assert inclusive["_worker (concurrent/futures/thread.py)"] == pytest.approx(0.05)


def test_frames_every_stack_passes_through_are_left_out_of_the_inclusive_table() -> None:
    inclusive = dict(StackProfile.parse(_RAW).inclusive_shares())
    assert "<module> (cvae/__main__.py)" not in inclusive
    assert "run (asyncio/runners.py)" not in inclusive
    assert "Thread._bootstrap (threading.py)" not in inclusive


def test_threads_are_told_apart_and_their_busy_share_is_samples_over_possible() -> None:
    busy = StackProfile.parse(_RAW).thread_busy(rate=100, seconds=1)
    assert busy == {"MainThread (pid 23272)": 0.95, "decoder_0 (pid 23272)": 0.05}


def test_native_frames_without_symbols_are_grouped_by_library() -> None:
    raw = (
        "thread (0x1): MainThread;Handle._run (asyncio/events.py:80);"
        "0x7f4a7ee67739 (grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so) 3\n"
        "thread (0x1): MainThread;Handle._run (asyncio/events.py:80);"
        "0x7f4a7eee7b92 (grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so);sendmsg (libc.so.6) 1"
    )
    profile = StackProfile.parse(raw)
    assert profile.self_shares() == [
        ("[native] (cygrpc.cpython-311-x86_64-linux-gnu.so)", 0.75),
        ("sendmsg (libc.so.6)", 0.25),
    ]
    assert profile.thread_busy(rate=4, seconds=1) == {"MainThread": 1.0}


def test_an_empty_profile_has_no_shares() -> None:
    assert StackProfile.parse("").self_shares() == []


def test_cpu_and_memory_of_this_process_group_are_read_from_proc() -> None:
    group = os.getpgrp()
    sum(range(200_000))  # some CPU of our own
    assert group_cpu_seconds(group) > 0
    assert group_rss_mib(group) > 1


def test_children_in_their_own_process_group_count_with_their_parent() -> None:
    # A server (its own session and group) whose worker moves to a group of its own.
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER_WITH_WORKER], stdout=subprocess.PIPE, start_new_session=True
    )
    assert server.stdout is not None
    worker = int(server.stdout.readline())
    try:
        deadline = time.monotonic() + 30
        while os.getpgid(worker) != worker:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        server_alone = _rss_mib(server.pid)
        worker_alone = group_rss_mib(worker)
        assert worker_alone > 1
        assert group_rss_mib(server.pid) >= server_alone + 0.9 * worker_alone
        assert group_cpu_seconds(server.pid) >= group_cpu_seconds(worker)
    finally:
        os.kill(worker, signal.SIGKILL)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


_SERVER_WITH_WORKER = """
import subprocess, sys, time
code = "import os, time; os.setpgid(0, 0); time.sleep(60)"
worker = subprocess.Popen([sys.executable, "-c", code])
print(worker.pid, flush=True)
time.sleep(60)
"""


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")
