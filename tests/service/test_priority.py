"""Decoder threads below the event loop's CPU priority: per thread, inherited, in the server."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cvae.v1 import generator_pb2 as pb
from service.options import runtime_options
from service.priority import MAX_NICENESS, call_in_lowered_thread, lower_this_thread
from service.runtime import load_runtime
from service.settings import ServiceSettings
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")


def thread_niceness(pid: int) -> dict[int, int]:
    """Nice value of every thread of `pid`, from /proc (field 19 of stat)."""
    values = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended while we looked
            continue
        values[int(task.name)] = int(fields[16])
    return values


def _in_thread(function):  # type: ignore[no-untyped-def]
    result = []
    thread = threading.Thread(target=lambda: result.append(function()))
    thread.start()
    thread.join()
    return result[0]


def test_lowers_only_the_calling_thread() -> None:
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def lowered() -> int:
        lower_this_thread(3)
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    assert _in_thread(lowered) == min(base + 3, MAX_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base


def test_niceness_is_capped_and_zero_changes_nothing() -> None:
    def lowered(amount: int) -> int:
        lower_this_thread(amount)
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert _in_thread(lambda: lowered(50)) == MAX_NICENESS
    assert _in_thread(lambda: lowered(0)) == base


def test_threads_created_in_a_lowered_thread_inherit_it() -> None:
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def child_niceness() -> int:
        return _in_thread(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    assert call_in_lowered_thread(4, child_niceness) == min(base + 4, MAX_NICENESS)


def test_call_in_lowered_thread_returns_and_raises() -> None:
    assert call_in_lowered_thread(2, lambda: 42) == 42
    with pytest.raises(ZeroDivisionError):
        call_in_lowered_thread(2, lambda: 1 // 0)


def test_onnxruntime_workers_inherit_the_lowered_priority(shared_repo: Path) -> None:
    before = set(thread_niceness(os.getpid()))
    runtime = load_runtime(
        shared_repo / "cvae-mnist" / "1",
        runtime_options(ServiceSettings(intra_op_threads=2, decoder_niceness=7)),
    )
    runtime.run(np.zeros((64, runtime.spec.latent_dim), np.float32), np.zeros(64, np.int64))
    new_threads = {tid: nice for tid, nice in thread_niceness(os.getpid()).items()
                   if tid not in before}  # fmt: skip
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert new_threads, "onnxruntime started no worker thread for 2 intra-op threads"
    assert set(new_threads.values()) == {min(base + 7, MAX_NICENESS)}


def test_server_decodes_below_the_event_loop(shared_repo: Path) -> None:
    with ServerProcess(shared_repo, "--intra-op-threads", "2") as server:
        assert server.process is not None
        server.stub.Generate(pb.GenerateRequest(labels=[1] * 64, seed=3), timeout=30)
        niceness = thread_niceness(server.process.pid)
    base = niceness[server.process.pid]  # the main thread runs the event loop
    lowered = [tid for tid, nice in niceness.items() if nice == min(base + 10, MAX_NICENESS)]
    # the decoder thread and onnxruntime's second intra-op thread
    assert len(lowered) >= 2, niceness
