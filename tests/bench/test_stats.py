"""bench/stats.py: percentile math and latency summaries."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.stats import percentile, rate, summarize_latencies


def test_percentiles_interpolate_between_closest_ranks() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 90) == pytest.approx(90.1)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0


def test_order_of_the_input_does_not_matter() -> None:
    assert percentile([5, 1, 4, 2, 3], 25) == 2.0


@settings(deadline=None)  # timing on a shared machine is not what is tested
@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200),
    st.floats(0, 100),
)
def test_percentile_agrees_with_numpys_linear_method(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(np.percentile(values, q), rel=1e-9, abs=1e-9)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentile([1.0], 101)
    with pytest.raises(ValueError, match="no latencies"):
        summarize_latencies([])


def test_summary_of_latencies() -> None:
    summary = summarize_latencies([1.0, 2.0, 3.0, 4.0, 100.0])
    assert summary.count == 5
    assert summary.mean_ms == pytest.approx(22.0)
    assert summary.p50_ms == 3.0
    assert summary.p90_ms == pytest.approx(61.6)
    assert summary.max_ms == 100.0


def test_rate_of_nothing_timed_is_zero() -> None:
    assert rate(10, 0) == 0.0
    assert rate(10, 2.0) == 5.0
