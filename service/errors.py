"""Domain errors that carry their gRPC status code; the servicer maps them in one place."""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """An error to report to the caller with `code` and this message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(ServiceError):
    """The request itself is wrong; the message names the field and the allowed range."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class VersionNotFound(ServiceError):
    """The request pins a model version this server has not loaded."""

    code = grpc.StatusCode.NOT_FOUND


class Overloaded(ServiceError):
    """The queue is full: the caller should back off and retry."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotReady(ServiceError):
    """No model is loaded yet, or the server is shutting down."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExpired(ServiceError):
    """The caller's deadline passed before the work ran; it was dropped, not computed."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ModelLoadError(Exception):
    """A model version cannot be served; the message names the file and the problem."""
