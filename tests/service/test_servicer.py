"""What a real server counts and logs for each way a call ends (the rule in service/servicer.py):
its deadline passed: DEADLINE_EXCEEDED; its client cancelled: CANCELLED; never INTERNAL, never an
ERROR line. Refusals are counted by reason; every known series is there at 0 from the start."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from cvae.v1 import generator_pb2 as pb
from service.errors import REFUSAL_REASONS
from service.servicer import CODES, METHODS
from tests.service.modelrepo import DecoderSpec, write_version
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(240)
_BIG_STREAM = pb.GenerateRequest(
    labels=[4] * 1_000_000, seed=1, chunk_size=256, encoding=pb.FLOAT32
)


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("two") / "models"
    write_version(root, "1", spec=DecoderSpec(seed=1))
    write_version(root, "2", spec=DecoderSpec(seed=2))
    return root


@pytest.fixture(scope="module")
def server(two_versions: Path) -> Iterator[ServerProcess]:
    with ServerProcess(
        two_versions, "--queue-size", "256", "--max-images-per-request", "256"
    ) as up:
        yield up


def _count(server: ServerProcess, method: str, code: str) -> float:
    return server.metric(
        "cvae_requests_total", f'code="{code}",method="{method}",protocol="cvae.v1"'
    )


def _settles(read: Callable[[], float], wanted: float, timeout: float = 30.0) -> float:
    """The value `read` gives once it reaches `wanted` (the server counts a call as it ends)."""
    deadline = time.monotonic() + timeout
    value = read()
    while value < wanted and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


def _error_lines(server: ServerProcess) -> list[str]:
    return [line for line in server.log().splitlines() if " ERROR " in line or "Traceback" in line]


def test_every_known_series_starts_at_zero(server: ServerProcess) -> None:
    text = server.scrape()
    for method in METHODS:
        for code in CODES:
            assert (
                f'cvae_requests_total{{code="{code}",method="{method}",protocol="cvae.v1"}}' in text
            )
        assert (
            f'cvae_request_duration_seconds_count{{method="{method}",protocol="cvae.v1"}}' in text
        )
    assert _count(server, "GenerateStream", "INTERNAL") == 0
    for reason in REFUSAL_REASONS:
        assert f'cvae_refusals_total{{reason="{reason}"}} 0.0' in text
    assert 'cvae_model_reloads_total{outcome="refused"} 0.0' in text


def test_one_version_is_served_of_the_two_loaded(server: ServerProcess) -> None:
    text = server.scrape()
    assert 'cvae_model_info{name="cvae-mnist",version="1"} 1.0' in text
    assert 'cvae_model_info{name="cvae-mnist",version="2"} 1.0' in text
    served = [line for line in text.splitlines() if line.startswith("cvae_served_model_info{")]
    assert served == ['cvae_served_model_info{name="cvae-mnist",version="2"} 1.0']


def test_streams_the_client_cancels_mid_write_are_cancelled_and_log_no_error(
    server: ServerProcess,
) -> None:
    before = _count(server, "GenerateStream", "CANCELLED")
    for pause in (0.0, 0.05, 0.2, 0.5, 1.0):
        call = server.stub.GenerateStream(_BIG_STREAM, timeout=60)
        next(call)
        time.sleep(pause)  # not reading: the server blocks in a write under flow control
        call.cancel()
    read = lambda: _count(server, "GenerateStream", "CANCELLED")  # noqa: E731
    assert _settles(read, before + 5) == before + 5
    assert _count(server, "GenerateStream", "INTERNAL") == 0
    assert _error_lines(server) == []


def test_a_stream_whose_deadline_passes_is_deadline_exceeded_on_both_sides(
    server: ServerProcess,
) -> None:
    before = _count(server, "GenerateStream", "DEADLINE_EXCEEDED")
    before_ended = before + _count(server, "GenerateStream", "CANCELLED")
    for budget in (3.0, 4.0):  # time enough for the first chunk on a loaded machine
        call = server.stub.GenerateStream(_BIG_STREAM, timeout=budget)
        next(call)
        time.sleep(budget + 0.2)  # not reading while the deadline passes
        with pytest.raises(grpc.RpcError) as raised:
            for _ in call:
                pass
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The client's deadline timer resets the stream a little before the server's deadline (which
    # starts when the headers arrive): within 1 s that is still DEADLINE_EXCEEDED. Only a server
    # whose intake lags more than that (a badly overloaded machine) may count one CANCELLED.
    ended = lambda: sum(  # noqa: E731
        _count(server, "GenerateStream", code) for code in ("DEADLINE_EXCEEDED", "CANCELLED")
    )
    assert _settles(ended, before_ended + 2) == before_ended + 2
    assert _count(server, "GenerateStream", "DEADLINE_EXCEEDED") >= before + 1
    assert _count(server, "GenerateStream", "INTERNAL") == 0
    assert _error_lines(server) == []


def test_each_refusal_is_counted_under_its_own_reason(server: ServerProcess) -> None:
    """A queue of 256 images and calls of 256: whoever finds one waiting is refused (queue_full);
    a short deadline behind queued work is refused too (deadline_too_short)."""
    before = {r: server.metric("cvae_refusals_total", f'reason="{r}"') for r in REFUSAL_REASONS}
    seen = {reason: 0 for reason in REFUSAL_REASONS}
    expired = 0  # calls whose client deadline passed first: the server may have refused them

    def call(index: int) -> None:
        nonlocal expired
        request = pb.GenerateRequest(labels=[1] * 256, seed=index, omit_latents=True)
        try:
            server.stub.Generate(request, timeout=0.05 if index % 2 else 30)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                details = error.details() or ""
                seen["queue_full" if "queue full" in details else "deadline_too_short"] += 1
            elif error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                expired += 1

    with ThreadPoolExecutor(16) as pool:
        for _ in range(20):
            list(pool.map(call, range(32)))
            if seen["queue_full"] and seen["deadline_too_short"]:  # the two provoked here
                break
    assert seen["queue_full"] > 0
    # Every refusal a client saw is counted under its reason; a refusal whose answer lost the
    # race with a 50 ms client deadline is counted too, though that client saw DEADLINE_EXCEEDED.
    counted = {
        reason: server.metric("cvae_refusals_total", f'reason="{reason}"') - before[reason]
        for reason in REFUSAL_REASONS
    }
    for reason in REFUSAL_REASONS:
        assert counted[reason] >= seen[reason], reason
    assert sum(counted.values()) - sum(seen.values()) <= expired
