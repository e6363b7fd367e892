"""Domain errors carrying their gRPC status code (by name); the servicer maps them in one place.

No grpc import here: `cvae serve --workers N` checks the repository (ModelLoadError) in a
supervisor that must not load grpc before it starts its workers.
"""

from __future__ import annotations

from modelrepo import ModelRepositoryError

_SHOWN_CHARS = 40


def brief(value: object) -> str:
    """repr(value), cut short: error details echo client input, and must stay small."""
    text = repr(value)
    if len(text) <= _SHOWN_CHARS:
        return text
    return f"{text[:_SHOWN_CHARS]}... ({len(text)} characters)"


class ServiceError(Exception):
    """An error to report to the caller with status `code` and this message."""

    code: str = "INTERNAL"  # a grpc.StatusCode name


class InvalidArgument(ServiceError):
    """The request itself is wrong; the message names the field and the allowed range."""

    code = "INVALID_ARGUMENT"


class VersionNotFound(ServiceError):
    """The request pins a model version this server has not loaded."""

    code = "NOT_FOUND"


class Overloaded(ServiceError):
    """Refused for lack of room or time: the caller should back off and retry.

    `reason` says which (REFUSAL_REASONS); each is counted on its own, so that an alert on a
    full queue is not paged by callers whose deadline is shorter than the work ahead of them.
    """

    code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        assert reason in REFUSAL_REASONS, reason
        self.reason = reason


# Why a call was refused with RESOURCE_EXHAUSTED (cvae_refusals_total{reason}; service/README.md).
QUEUE_FULL = "queue_full"  # the bounded queue has no room for the request's images
DEADLINE_TOO_SHORT = "deadline_too_short"  # its deadline would pass behind the queued work
CONCURRENCY_LIMIT = "concurrency_limit"  # --max-concurrent-rpcs data-plane calls are running
MESSAGE_TIMEOUT = "message_timeout"  # the request message did not arrive in --message-timeout-s
STREAM_MEMORY = "stream_memory"  # open streams hold --stream-memory-mib already
WRITE_STALLED = "write_stalled"  # a stream's client did not read (--stream-write-timeout-s)
WATCH_LIMIT = "watch_limit"  # --max-health-watches health Watch streams are open
REFLECTION_LIMIT = "reflection_limit"  # --max-reflection-streams reflection streams are open
REFUSAL_REASONS = (
    QUEUE_FULL, DEADLINE_TOO_SHORT, CONCURRENCY_LIMIT, MESSAGE_TIMEOUT, STREAM_MEMORY,
    WRITE_STALLED, WATCH_LIMIT, REFLECTION_LIMIT,
)  # fmt: skip


class NotReady(ServiceError):
    """No model is loaded yet, or the server is shutting down."""

    code = "UNAVAILABLE"


class DeadlineExpired(ServiceError):
    """The caller's deadline passed before the work ran; it was dropped, not computed."""

    code = "DEADLINE_EXCEEDED"


class ModelNotFound(ServiceError):
    """The request names a model this server does not serve."""

    code = "NOT_FOUND"


class CallEnded(ServiceError):
    """The caller ended the call (cancelled, went away, or its deadline passed) while the server
    was still working on it, e.g. writing a stream message: there is no one left to answer.

    `code` is what the call is counted as: DEADLINE_EXCEEDED once its deadline has passed,
    CANCELLED otherwise.
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


# A model version cannot be served; the message names the file and the problem. One class with
# the repository's own: reading model.json and checking the graph against it raise it too.
ModelLoadError = ModelRepositoryError
