"""Retry policy: exponential backoff with full jitter, bounded by the call's deadline."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc

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
