"""The components' options, derived from ServiceSettings here and nowhere else.

BatchingPolicy, RuntimeOptions and RequestLimits carry no defaults of their own: a test or bench
that wants "the server as shipped, but with X" builds `ServiceSettings(X=...)` and derives the
options from it (or `dataclasses.replace`s one field of a derived option).
"""

from __future__ import annotations

import os

from service.batcher import BatchingPolicy
from service.runtime import RuntimeOptions
from service.servicer import RequestLimits
from service.settings import ServiceSettings


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def batching_policy(settings: ServiceSettings) -> BatchingPolicy:
    return BatchingPolicy(
        max_batch=settings.max_batch,
        max_delay_ms=settings.max_delay_ms,
        batching=settings.batching,
        queue_size=settings.queue_size,
        decoder_slots=settings.decoder_slots,
        decoder_niceness=settings.decoder_niceness,
        decoder_slice=settings.decoder_slice,
    )


def runtime_options(settings: ServiceSettings) -> RuntimeOptions:
    """intra_op_threads 0 shares the CPU budget among every decoder call that may run at once."""
    shares = settings.workers * settings.decoder_slots
    threads = settings.intra_op_threads or max(1, (settings.cpus or usable_cpus()) // shares)
    return RuntimeOptions(
        intra_op_threads=threads,
        niceness=settings.decoder_niceness,
        max_batch=settings.max_batch,
        max_model_bytes=settings.max_model_bytes,
    )


def request_limits(settings: ServiceSettings) -> RequestLimits:
    return RequestLimits(
        max_images_per_request=settings.max_images_per_request,
        max_images_per_stream=settings.max_images_per_stream,
        stream_chunk_size=settings.stream_chunk_size,
        stream_memory_bytes=int(settings.stream_memory_mib * (1 << 20)),
        max_message_bytes=settings.max_message_bytes,
        stream_write_timeout_s=settings.stream_write_timeout_s,
    )
