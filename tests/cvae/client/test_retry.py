"""Backoff and the retry budget: exponential ceilings, full jitter, a bounded number of tries,
no wait past the deadline."""

from __future__ import annotations

import random

import grpc
import pytest

from cvae.client import RetryPolicy
from cvae.client.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
    error_from_status,
)
from cvae.client.retry import RetryBudget


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


class _Status(grpc.RpcError):
    """What a failed call raises: an RpcError with its code and details."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return f"{self._code.name} from the server"


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _budget(
    clock: _Clock,
    timeout_s: float = 10.0,
    max_attempts: int = 5,
    initial_backoff_s: float = 0.5,
    max_backoff_s: float = 0.5,
) -> RetryBudget:
    policy = RetryPolicy(max_attempts, initial_backoff_s, max_backoff_s)
    return RetryBudget(policy, timeout_s, "h:1", rng=random.Random(0), clock=clock)


def test_the_budget_gives_each_attempt_the_time_left_and_refuses_a_spent_deadline() -> None:
    clock = _Clock()
    budget = _budget(clock, timeout_s=10.0)
    assert budget.remaining_s() == 10.0
    clock.now += 9.5
    assert budget.remaining_s() == 0.5
    clock.now += 0.5
    with pytest.raises(DeadlineExceededError):
        budget.remaining_s()


def test_the_budget_waits_after_transient_codes_and_raises_final_ones_typed() -> None:
    budget = _budget(_Clock())
    assert 0 <= budget.wait_after(_Status(grpc.StatusCode.UNAVAILABLE)) <= 0.5
    with pytest.raises(InvalidArgumentError) as caught:
        budget.wait_after(_Status(grpc.StatusCode.INVALID_ARGUMENT))
    assert caught.value.target == "h:1" and "from the server" in caught.value.details


def test_the_budget_gives_up_after_max_attempts() -> None:
    budget = _budget(_Clock(), max_attempts=3)
    for _ in range(2):
        budget.wait_after(_Status(grpc.StatusCode.RESOURCE_EXHAUSTED))
    with pytest.raises(ResourceExhaustedError):
        budget.wait_after(_Status(grpc.StatusCode.RESOURCE_EXHAUSTED))


def test_the_budget_never_waits_past_the_deadline() -> None:
    clock = _Clock()
    budget = _budget(clock, timeout_s=1.0, initial_backoff_s=0.9, max_backoff_s=0.9)
    clock.now += 0.99  # any wait but a tiny one ends after the deadline
    waits = []
    with pytest.raises(UnavailableError):
        while True:
            waits.append(budget.wait_after(_Status(grpc.StatusCode.UNAVAILABLE)))
    assert all(clock.now + wait < 101.0 for wait in waits)


def test_not_found_is_retried_only_for_a_pinned_version() -> None:
    clock = _Clock()
    policy = RetryPolicy(initial_backoff_s=0.1)
    pinned = RetryBudget(policy, 10.0, "h:1", pinned_version=True, clock=clock)
    assert pinned.wait_after(_Status(grpc.StatusCode.NOT_FOUND)) <= 0.1
    with pytest.raises(NotFoundError):
        RetryBudget(policy, 10.0, "h:1", clock=clock).wait_after(_Status(grpc.StatusCode.NOT_FOUND))
