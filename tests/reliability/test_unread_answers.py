"""Answers a client never reads are counted in --stream-memory-mib until it takes them (issue 14,
found by the red team: a raw HTTP/2 client with a zero window asked for 1,000 answers of 1,024
images on two connections, and the server kept all of them: +586 MiB, without bound)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from cvae.v1 import generator_pb2 as pb
from tests.reliability.memory import resident_mib
from tests.reliability.test_hostile_clients import GENERATE, victim_is_served
from tests.service.rawh2 import RawConnection, grpc_frame
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(240)
_STATUS_RESOURCE_EXHAUSTED = "8"
_BUDGET_MIB = 32


def test_answers_nobody_reads_stay_within_the_memory_budget(repository: Path) -> None:
    request = pb.GenerateRequest(labels=[1] * 1024, seed=1, encoding=pb.UINT8)
    frame = grpc_frame(request.SerializeToString())
    with ServerProcess(repository, "--stream-memory-mib", str(_BUDGET_MIB)) as server:
        assert server.process is not None
        before = resident_mib(server.process.pid)
        with RawConnection("127.0.0.1", server.port, window=0) as attacker:
            attacker.pump(0.2)
            calls = []
            for _ in range(20):  # 200 answers of ~0.9 MB: over five times the budget
                for _ in range(10):
                    calls.append(attacker.open_call(GENERATE))
                    attacker.send(calls[-1], frame, end_stream=True)
                attacker.flush()
                attacker.pump(0.3)  # a queue of 4096 images takes the next round
            attacker.pump(2)
            refused = [s for s in calls if attacker.streams[s].status == _STATUS_RESOURCE_EXHAUSTED]
            grown = resident_mib(server.process.pid) - before
            counted = server.metric("cvae_refusals_total", 'reason="stream_memory"')
            assert counted >= 1, "no answer was refused: unread answers are not counted"
            assert any(
                "--stream-memory-mib" in attacker.streams[s].headers["grpc-message"]
                for s in refused
            )
            assert grown < 8 * _BUDGET_MIB, grown
        # The client left: what it held is free again.
        deadline = time.monotonic() + 60
        while True:
            try:
                victim_is_served(server)
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                assert time.monotonic() < deadline, "the budget stayed held"
                time.sleep(0.5)
