"""File descriptors: take the whole allowance at start, and keep some for what is not a client.

Containers commonly start processes with RLIMIT_NOFILE soft 1024 and a much higher hard limit.
At 1,024 descriptors, ~1,100 idle TCP connections made gRPC's accept() fail with EMFILE: new
clients, /metrics and the reload scan were locked out. `cvae serve` raises its soft limit to the
hard one at start (`raise_open_files_limit`), and gRPC takes at most `connection_cap` connections,
leaving `RESERVED` descriptors to model files, /metrics, the OIP HTTP port, logs and the
workers' pipes.
"""

from __future__ import annotations

import logging

_LOGGER = logging.getLogger(__name__)
RESERVED = 256  # descriptors kept from gRPC's connections
_MIN_CONNECTIONS = 64
_MAX_AUTO_CONNECTIONS = 16384  # with a huge limit: each connection still costs memory


def open_files_limit() -> int | None:
    """The soft RLIMIT_NOFILE, or None where there is none (not Unix)."""
    try:
        import resource
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def raise_open_files_limit() -> int | None:
    """Raise the soft RLIMIT_NOFILE to the hard one; returns the soft limit now in force."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:  # e.g. macOS refuses RLIM_INFINITY
            _LOGGER.debug("RLIMIT_NOFILE stays %d (%s)", soft, error)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def connection_cap(setting: int) -> int:
    """The most connections gRPC may hold: `setting` if given, else what the limit leaves."""
    if setting > 0:
        return setting
    limit = open_files_limit()
    if limit is None:
        return _MAX_AUTO_CONNECTIONS
    return max(_MIN_CONNECTIONS, min(_MAX_AUTO_CONNECTIONS, limit - RESERVED))
