"""bench/profile.py: reading py-spy's collapsed stacks (format of `py-spy record --format raw`)."""

from __future__ import annotations

import os

import pytest

from bench.profile import StackProfile, group_cpu_seconds, group_rss_mib

_PREFIX = 'process 23272:"python -m cvae serve";<module> (cvae/__main__.py:7)'
_LOOP = f"{_PREFIX};run (asyncio/runners.py:190)"
_RAW = "\n".join(
    [
        f"{_LOOP};select (selectors.py:468) 70",
        f"{_LOOP};Handle._run (asyncio/events.py:80);to_uint8 (service/codec.py:41) 20",
        f"{_LOOP};Handle._run (asyncio/events.py:84);to_uint8 (service/codec.py:44) 5",
        'process 23272:"python -m cvae serve";Thread._bootstrap (threading.py:1002);'
        "_worker (concurrent/futures/thread.py:83);"
        "Session.run (onnxruntime/capi/onnxruntime_inference_collection.py:266) 5",
        "garbage line without a count",
    ]
)


def test_line_numbers_and_process_frames_are_folded_away() -> None:
    profile = StackProfile.parse(_RAW)
    assert profile.samples == 100
    assert all(not frame.startswith("process ") for stack in profile.stacks for frame in stack)
    assert profile.self_shares(top=2) == [
        ("select (selectors.py)", 0.70),
        ("to_uint8 (service/codec.py)", 0.25),
    ]


def test_inclusive_shares_count_each_frame_once_per_stack() -> None:
    inclusive = dict(StackProfile.parse(_RAW).inclusive_shares())
    assert inclusive["<module> (cvae/__main__.py)"] == pytest.approx(0.95)
    assert inclusive["Handle._run (asyncio/events.py)"] == pytest.approx(0.25)
    assert inclusive["_worker (concurrent/futures/thread.py)"] == pytest.approx(0.05)


def test_an_empty_profile_has_no_shares() -> None:
    assert StackProfile.parse("").self_shares() == []


def test_cpu_and_memory_of_this_process_group_are_read_from_proc() -> None:
    group = os.getpgrp()
    sum(range(200_000))  # some CPU of our own
    assert group_cpu_seconds(group) > 0
    assert group_rss_mib(group) > 1
