"""Big calls reuse the server's memory while they run, and it goes back to the kernel once the
server is idle (service/memory.py): measured in page faults and VmRSS of a real server."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from cvae.v1 import generator_pb2 as pb
from service.memory import IDLE_TRIM_S, trim_when_idle
from tests.reliability.memory import page_faults, resident_mib
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(240)
_PAGE = os.sysconf("SC_PAGE_SIZE")
# 1,024 float32 images: a 3.2 MB answer, a big call of normal use (max_images_per_request).
_BIG = pb.GenerateRequest(labels=[3] * 1024, seed=1, encoding=pb.FLOAT32)


def _burst(server: ServerProcess, calls: int) -> None:
    for _ in range(calls):
        server.stub.Generate(_BIG, timeout=60)


def test_big_calls_reuse_buffers_instead_of_faulting_fresh_pages_in(server: ServerProcess) -> None:
    """With glibc's thresholds at 128 KiB, every buffer of such a call was a fresh mapping:
    ~8,800 page faults per call (11 per page of the answer). Reused, a call takes ~10."""
    assert server.process is not None
    _burst(server, 5)  # the heap's high-water mark of this call
    before = page_faults(server.process.pid)
    _burst(server, 20)
    per_call = (page_faults(server.process.pid) - before) / 20
    answer_pages = 1024 * 28 * 28 * 4 // _PAGE
    assert per_call < answer_pages / 4, f"{per_call:.0f} faults per call, {answer_pages} pages"


@pytest.mark.parametrize("held_stream", [False, True], ids=["idle", "a stream held open"])
def test_memory_goes_back_to_the_kernel_after_a_pause_in_calls(
    server: ServerProcess, held_stream: bool
) -> None:
    """Also while a client holds a stream open and reads nothing: it cannot keep the memory."""
    assert server.process is not None
    pid = server.process.pid
    stream = None
    if held_stream:
        stream = server.stub.GenerateStream(
            pb.GenerateRequest(labels=[7] * 200_000, chunk_size=1024), timeout=120
        )
        next(stream)  # open, answering, and then never read again
    _burst(server, 10)
    time.sleep(2 * IDLE_TRIM_S + 0.5)  # a pause: the first burst's free memory is returned
    idle = resident_mib(pid)
    _burst(server, 10)
    busy = resident_mib(pid)
    time.sleep(2 * IDLE_TRIM_S + 0.5)
    after = resident_mib(pid)
    # The burst holds memory (else this test could not fail), and the pause returns it.
    assert busy - idle > 4, (idle, busy, after)  # ~10 MiB seen
    assert after - idle < (busy - idle) / 3, (idle, busy, after)
    if stream is not None:
        assert server.metric("cvae_requests_in_flight") >= 1, "the stream ended: nothing was held"
        stream.cancel()


def test_free_memory_is_returned_once_per_pause_in_calls_starting_or_ending() -> None:
    """The policy of `trim_when_idle` on a real event loop, with a counter the test moves."""
    changes, releases = [0], []

    def release() -> float:
        releases.append(changes[0])
        return 0.0

    async def pause() -> None:
        await asyncio.sleep(1.0)  # four idle periods

    async def scenario() -> None:
        trimmer = asyncio.ensure_future(trim_when_idle(lambda: changes[0], 0.25, release))
        await pause()
        assert releases == [], "no call ran yet: nothing to return"
        changes[0] = 1  # a long call (a stream) starts, and stays open
        await pause()
        assert releases == [1], "one pause: one release, though the call is open"
        await pause()
        assert releases == [1], "still the same pause"
        for _ in range(30):  # calls keep starting and ending: no pause
            changes[0] += 1
            await asyncio.sleep(0.02)  # a tenth of the idle period
        assert releases == [1]
        await pause()
        assert releases == [1, 31]
        trimmer.cancel()

    asyncio.run(scenario())
