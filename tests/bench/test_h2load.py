"""bench/h2load.py: reading what h2load printed and logged (output captured from real runs)."""

from __future__ import annotations

import pytest

from bench.h2load import (
    H2loadError,
    RequestLog,
    parse_requests_line,
    split_concurrency,
    summarize,
)

# `h2load -c 4 -m 16 -D 3 ...` against Triton, verbatim.
_STDOUT = """
finished in 3.00s, 1749.67 req/s, 5.35MB/s
requests: 5249 total, 5313 started, 5249 done, 5249 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 5249 2xx, 0 3xx, 0 4xx, 0 5xx
"""
# `--log-file` rows: start µs since epoch, HTTP status, µs to the end of the response.
_LOG = (
    "1795683998182372\t200\t13000\n"
    "1795683998195464\t200\t1822\n"
    "1795683998197319\t200\t139\n"
    "1795683998197470\t-1\t114\n"
    "1795683998197653\t200\t60\n"
)


def test_the_requests_summary_line_is_read() -> None:
    assert parse_requests_line(_STDOUT) == {
        "total": 5249,
        "started": 5313,
        "done": 5249,
        "succeeded": 5249,
        "failed": 0,
        "errored": 0,
    }


def test_output_without_a_summary_is_an_error() -> None:
    with pytest.raises(H2loadError, match="no 'requests:' summary"):
        parse_requests_line("connect failed")


def test_only_http_200_rows_count_and_the_span_runs_to_the_last_end() -> None:
    log = RequestLog.parse(_LOG)
    result = summarize(log, images_per_request=256)
    assert result.requests_ok == 4
    assert result.requests_failed == 1
    # first start ...182372 to the latest end ...197653 + 60 = ...197713
    assert result.seconds == pytest.approx((197713 - 182372) / 1e6)
    assert result.images_per_s == pytest.approx(4 * 256 / result.seconds)
    assert result.latency.max_ms == pytest.approx(13.0)
    assert result.latency.p50_ms == pytest.approx((1.822 + 0.139) / 2)


def test_a_run_where_nothing_succeeded_is_an_error() -> None:
    with pytest.raises(H2loadError, match="no request succeeded"):
        summarize(RequestLog.parse("1795683998182372\t-1\t0\n"), 1)


def test_an_unreadable_log_is_an_error() -> None:
    with pytest.raises(H2loadError, match="unreadable"):
        RequestLog.parse("not\ta\tnumber\n")


@pytest.mark.parametrize(
    ("concurrency", "expected"),
    [
        (1, (1, 1)),
        (2, (2, 1)),
        (4, (4, 1)),
        (16, (4, 4)),
        (64, (4, 16)),
        (256, (4, 64)),
        (6, (3, 2)),
    ],
)
def test_concurrency_splits_into_connections_times_streams(
    concurrency: int, expected: tuple[int, int]
) -> None:
    connections, streams = split_concurrency(concurrency)
    assert (connections, streams) == expected
    assert connections * streams == concurrency
