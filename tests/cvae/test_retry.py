"""Backoff: exponential ceilings, full jitter, a bounded number of tries."""

from __future__ import annotations

import random

import grpc
import pytest

from cvae.client import RetryPolicy
from cvae.client.errors import (
    InvalidArgumentError,
    ResourceExhaustedError,
    UnavailableError,
    error_from_status,
)


def test_backoffs_grow_exponentially_within_the_cap() -> None:
    policy = RetryPolicy(max_attempts=6, initial_backoff_s=0.1, max_backoff_s=0.5, multiplier=2)
    waits = list(policy.backoffs(random.Random(1)))
    assert len(waits) == 5
    ceilings = [0.1, 0.2, 0.4, 0.5, 0.5]
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(waits, ceilings, strict=True))
    # jitter: not all equal to the ceiling
    assert waits != ceilings


def test_only_transient_codes_are_retried_by_default() -> None:
    policy = RetryPolicy()
    assert policy.is_retryable(grpc.StatusCode.UNAVAILABLE)
    assert policy.is_retryable(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert policy.is_retryable(grpc.StatusCode.CANCELLED)  # the server's overload guard
    assert not policy.is_retryable(grpc.StatusCode.INVALID_ARGUMENT)
    assert not policy.is_retryable(grpc.StatusCode.NOT_FOUND)


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(multiplier=0.5)


def test_typed_errors_carry_code_and_message() -> None:
    error = error_from_status(
        grpc.StatusCode.INVALID_ARGUMENT, "labels[2]=12 not in [0, 10)", "h:1"
    )
    assert isinstance(error, InvalidArgumentError)
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "labels[2]" in str(error)
    assert isinstance(error_from_status(grpc.StatusCode.UNAVAILABLE, ""), UnavailableError)
    assert isinstance(
        error_from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, ""), ResourceExhaustedError
    )
