"""--max-concurrent-rpcs: data-plane calls beyond the limit are refused (service/guard.py), the
rest succeed.

The accepted calls are streams that the client stops reading: under HTTP/2 flow control they
stay open in the server for as long as the test wants, so the limit is full without any timing.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from cvae.v1 import generator_pb2 as pb
from tests.service.serverproc import ServerProcess

LIMIT = 3


def test_calls_beyond_the_limit_get_resource_exhausted_and_accepted_ones_finish(
    shared_repo: Path,
) -> None:
    with ServerProcess(shared_repo, "--max-concurrent-rpcs", str(LIMIT)) as server:
        stub = server.stub
        job = pb.GenerateRequest(labels=[1] * 100_000, seed=7, chunk_size=64)
        streams = [stub.GenerateStream(job, timeout=60) for _ in range(LIMIT)]
        for stream in streams:  # each is accepted and running: its first chunk arrived
            assert next(stream).offset == 0

        for _ in range(5):
            with pytest.raises(grpc.RpcError) as refused:
                stub.Generate(pb.GenerateRequest(labels=[3], seed=1), timeout=10)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        for stream in streams:  # the accepted calls go on untouched
            assert next(stream).offset == 64
            stream.cancel()
        server.wait_serving(timeout=30)  # slots free again once the cancels are seen
        answer = stub.Generate(pb.GenerateRequest(labels=[3, 4], seed=1), timeout=10)
        assert list(answer.labels) == [3, 4]
