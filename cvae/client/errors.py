"""Typed errors for the generation service: each carries the gRPC status code and message."""

from __future__ import annotations

import grpc


class GeneratorError(Exception):
    """A call to the generation service failed; `code` and `details` come from the server."""

    def __init__(self, code: grpc.StatusCode, details: str, target: str = "") -> None:
        self.code = code
        self.details = details
        self.target = target
        where = f" ({target})" if target else ""
        super().__init__(f"{code.name}{where}: {details}")


class InvalidArgumentError(GeneratorError):
    """The request was refused as malformed; the message names the field."""


class NotFoundError(GeneratorError):
    """The requested model version is not loaded on the server."""


class ResourceExhaustedError(GeneratorError):
    """The server's queue was full; retried with backoff by default."""


class UnavailableError(GeneratorError):
    """The server is unreachable, starting, or draining; retried with backoff by default."""


class FailedPreconditionError(GeneratorError):
    """The model version cannot do this, e.g. Score on a version that ships no encoder."""


class DeadlineExceededError(GeneratorError):
    """The call did not finish before its deadline."""


class CancelledError(GeneratorError):
    """The call was cancelled."""


_ERROR_BY_CODE: dict[grpc.StatusCode, type[GeneratorError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.CANCELLED: CancelledError,
}


def error_from_status(code: grpc.StatusCode, details: str, target: str = "") -> GeneratorError:
    """The typed error for a status code (GeneratorError for codes without their own class)."""
    return _ERROR_BY_CODE.get(code, GeneratorError)(code, details, target)


def error_from_rpc(error: grpc.RpcError, target: str = "") -> GeneratorError:
    """Turn a grpc.RpcError (sync or aio) into the matching typed error."""
    code_method = getattr(error, "code", None)
    details_method = getattr(error, "details", None)
    code = code_method() if callable(code_method) else grpc.StatusCode.UNKNOWN
    details = details_method() if callable(details_method) else str(error)
    return error_from_status(code or grpc.StatusCode.UNKNOWN, details or "", target)
