"""Keep the server's resident memory near its baseline after big requests (glibc only), without
paying for fresh pages on every call.

glibc, left alone, raises its mmap and trim thresholds after each big free, so that later big
buffers (request messages, decoded labels, responses) come from the heap and stay resident after
use: 60 varied big calls left the server 118 MiB above its baseline. Both thresholds fixed at
128 KiB brought that to 17 MiB, but made every buffer over 128 KiB a mapping of its own, faulted
in page by page and unmapped when freed: ~800 page faults per 256-image float32 Encode, ~8,800
per 1,024-image float32 Generate, and Encode served ~8% fewer images per second. So now:

- one malloc arena: glibc's malloc_trim does not return the free top of a thread's own arena, and
  onnxruntime's, gRPC's and the executor's threads all free big buffers;
- buffers up to `_THRESHOLD_BYTES` come from the heap (every message of a call within the
  1,024-image request limit), and its free top is trimmed beyond `_TRIM_BYTES`, so calls in a
  row reuse pages instead of faulting them in (tests/reliability/test_memory.py counts them);
- once no call has started or ended for `IDLE_TRIM_S`, all free memory goes back to the kernel
  (`trim_when_idle`), open calls or not (a stream held open forever cannot keep it): after those
  60 calls and a pause, the server is back within ~30 MiB of its baseline (onnxruntime's arena
  keeps the biggest batch's tensors), as it was with the 128 KiB thresholds.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

_LOGGER = logging.getLogger(__name__)
_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_THRESHOLD_BYTES = 4 << 20  # 5,000 uint8 images, 1,300 float32 ones
_TRIM_BYTES = 64 << 20  # a 1,024-image float32 Generate frees ~25 MB at once
_ARENAS = 1
IDLE_TRIM_S = 1.0  # how long without any call before free memory goes back to the kernel


@functools.cache
def _glibc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    return libc


def tune_malloc() -> bool:
    """Set glibc's arenas and thresholds (above), before the threads start. Returns False where
    there is no glibc."""
    libc = _glibc()
    if libc is None:
        return False
    done = bool(libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD_BYTES))
    done = bool(libc.mallopt(_M_ARENA_MAX, _ARENAS)) and done
    done = bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES)) and done
    if not done:
        _LOGGER.debug("mallopt refused a setting; memory may stay high after big calls")
    return done


def release_free_memory() -> float:
    """Hand every arena's free pages back to the kernel (glibc's malloc_trim); the seconds it
    took, or 0.0 where there is no glibc."""
    libc = _glibc()
    if libc is None:
        return 0.0
    started = time.perf_counter()
    libc.malloc_trim(0)
    return time.perf_counter() - started


async def trim_when_idle(
    changes: Callable[[], int],
    idle_s: float = IDLE_TRIM_S,
    release: Callable[[], float] = release_free_memory,
) -> None:
    """Forever: once `changes()` (calls entered plus calls left) has moved and then stood still
    for `idle_s`, release the free memory, once per such pause."""
    seen, trimmed = changes(), True
    while True:
        await asyncio.sleep(idle_s)
        now = changes()
        if now != seen:  # a call began or ended within the last idle_s
            seen, trimmed = now, False
        elif not trimmed:
            seconds = release()
            trimmed = True
            _LOGGER.debug("idle: free memory returned to the kernel in %.1f ms", 1e3 * seconds)
