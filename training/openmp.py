"""How torch's OpenMP threads wait: a short spin, then sleep. Call before torch is imported.

Measured on this 2-core machine (one training epoch of the default model, ms per step):
sleeping at once (OMP_WAIT_POLICY=PASSIVE) 63-71 quiet and 312 beside one busy process; a short
spin (GOMP_SPINCOUNT=10000) 48 quiet and 244 beside it. libgomp's default long spin was as fast
when quiet but many times slower when several jobs shared the cores. A value the user set wins.
"""

from __future__ import annotations

import os

SPIN_COUNT = "10000"


def configure_openmp_waiting() -> None:
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
