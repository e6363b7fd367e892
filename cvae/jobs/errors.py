"""One-line explanations of the failures `cvae generate` expects (anything else is a bug)."""

from __future__ import annotations

from cvae.client import GeneratorError, UnavailableError
from cvae.jobs.atomic import OutputError


def describe_failure(error: BaseException, server: str) -> str | None:
    """A message for the user, or None when the error is unexpected and should propagate."""
    if isinstance(error, UnavailableError):
        return f"cannot reach the generation service at {server}: {error.details}"
    if isinstance(error, GeneratorError):
        return f"the generation service at {server} refused: {error}"
    if isinstance(error, OutputError):
        return str(error)
    if isinstance(error, OSError):
        return f"{error.filename or ''}: {error.strerror or error}".lstrip(": ")
    if isinstance(error, ValueError):
        return str(error)
    return None
