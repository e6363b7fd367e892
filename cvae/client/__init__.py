"""Typed Python client of the generation service (sync and asyncio); no torch needed.

from cvae.client import Client
with Client("localhost:50051") as client:
    result = client.generate([3, 1, 4], seed=7)   # result.images: uint8 [3, 28, 28]
    scores = client.score(result.images)          # bounds on log p(x|y): float32 [3, 10]
"""

from cvae.client.aio import AsyncClient
from cvae.client.channel import TlsConfig
from cvae.client.errors import (
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    GeneratorError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
from cvae.client.images import EncodeResult, ScoreResult
from cvae.client.retry import NO_RETRY, RetryPolicy
from cvae.client.sync import Client
from cvae.client.types import Encoding, GenerateResult, ModelInfo

__all__ = [
    "NO_RETRY",
    "AsyncClient",
    "CancelledError",
    "Client",
    "DeadlineExceededError",
    "EncodeResult",
    "Encoding",
    "FailedPreconditionError",
    "GenerateResult",
    "GeneratorError",
    "InvalidArgumentError",
    "ModelInfo",
    "NotFoundError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "ScoreResult",
    "TlsConfig",
    "UnavailableError",
]
