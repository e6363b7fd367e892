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
    """The queue is full: the caller should back off and retry."""

    code = "RESOURCE_EXHAUSTED"


class NotReady(ServiceError):
    """No model is loaded yet, or the server is shutting down."""

    code = "UNAVAILABLE"


class DeadlineExpired(ServiceError):
    """The caller's deadline passed before the work ran; it was dropped, not computed."""

    code = "DEADLINE_EXCEEDED"


class ModelNotFound(ServiceError):
    """The request names a model this server does not serve."""

    code = "NOT_FOUND"


# A model version cannot be served; the message names the file and the problem. One class with
# the repository's own: reading model.json and checking the graph against it raise it too.
ModelLoadError = ModelRepositoryError
