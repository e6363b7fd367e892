"""Keep the server's resident memory near its baseline after big requests (glibc only)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

_LOGGER = logging.getLogger(__name__)
_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_THRESHOLD_BYTES = 128 * 1024


def return_big_buffers_to_os() -> bool:
    """Serve allocations over 128 KiB from their own mappings and trim the heap above 128 KiB.

    glibc raises its mmap and trim thresholds after each big free, so that later big buffers
    (request messages, decoded labels, responses) come from the heap and stay resident after
    use: 60 varied big calls left the server 118 MiB above its baseline, 65 MiB with the mmap
    threshold fixed, 17 MiB with both (as MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_
    would). Returns False where there is no glibc.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD_BYTES))
    done = bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD_BYTES)) and done
    if not done:
        _LOGGER.debug("mallopt(M_MMAP_THRESHOLD) refused; memory may stay high after big calls")
    return done
