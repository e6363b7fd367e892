"""Retry policy and budget: exponential backoff with full jitter, bounded by the call's deadline."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc

from cvae.client.errors import DeadlineExceededError, error_from_rpc

_LOGGER = logging.getLogger(__name__)

# CANCELLED that reaches the client as an RpcError was not the caller's doing (a caller's own
# cancellation surfaces as KeyboardInterrupt or asyncio.CancelledError): it is the server's
# overload guard (gRPC core refuses calls beyond --max-pending-rpcs with CANCELLED) or a drain.
_DEFAULT_RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    }
)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often a failed call is tried again."""

    max_attempts: int = 5
    """Tries in all, the first included; 1 turns retries off."""
    initial_backoff_s: float = 0.1
    """Upper bound of the first wait."""
    max_backoff_s: float = 5.0
    """No wait is longer than this."""
    multiplier: float = 2.0
    """Growth of the wait's upper bound per attempt."""
    retryable_codes: frozenset[grpc.StatusCode] = field(default=_DEFAULT_RETRYABLE)
    """Status codes worth another try; never INVALID_ARGUMENT (NOT_FOUND: see below)."""
    retry_unloaded_version: bool = True
    """NOT_FOUND for a request that pins model_version is tried again: during a rollout or a
    publish, another replica may serve that version already (round_robin sends the next try
    elsewhere) and this one loads it at its next repository scan. Unpinned calls never get
    NOT_FOUND; a version that no replica will ever load fails after max_attempts."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")

    def is_retryable(self, code: grpc.StatusCode, pinned_version: bool = False) -> bool:
        """Whether to try again after `code`; `pinned_version`: the request named a version."""
        if code is grpc.StatusCode.NOT_FOUND and pinned_version:
            return self.retry_unloaded_version
        return code in self.retryable_codes

    def backoffs(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits before attempts 2..max_attempts: uniform in [0, min(cap, initial·mult^k)]."""
        rng = rng or random.Random()
        ceiling = self.initial_backoff_s
        for _ in range(self.max_attempts - 1):
            yield rng.uniform(0.0, min(self.max_backoff_s, ceiling))
            ceiling *= self.multiplier


NO_RETRY = RetryPolicy(max_attempts=1)


class RetryBudget:
    """One call's retry state: its deadline, its remaining waits and the decision to give up.

    Pure (no sleeping, no network): the sync and asyncio clients drive one each per call and
    differ only in how they sleep. `clock` is a monotonic clock in seconds.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        timeout_s: float,
        target: str,
        *,
        pinned_version: bool = False,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._target = target
        self._pinned = pinned_version
        self._clock = clock
        self._deadline = clock() + timeout_s
        self._backoffs = policy.backoffs(rng)

    def remaining_s(self) -> float:
        """The seconds the next attempt may take; DeadlineExceededError when none are left."""
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            raise DeadlineExceededError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline", self._target)
        return remaining

    def wait_after(self, rpc_error: grpc.RpcError) -> float:
        """The seconds to wait before the next attempt, or the typed error when it is final:
        a code not worth retrying, no attempts left, or a wait that would end past the deadline."""
        error = error_from_rpc(rpc_error, self._target)
        if not self._policy.is_retryable(error.code, self._pinned):
            raise error from None  # the typed error carries code and details
        wait = next(self._backoffs, None)
        if wait is None or self._clock() + wait >= self._deadline:
            raise error from None
        _LOGGER.info("retrying in %.3fs after %s", wait, error)
        return wait
