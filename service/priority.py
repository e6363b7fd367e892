"""Decoder threads run at a lower CPU priority than the event loop.

Under load the decoder keeps every core busy; at equal priority the event loop then waits for
its turn before it can refuse an excess call, answer a health check or hand out finished
images. Lowering only the decoder threads' priority (Linux's nice value is per thread) lets the
loop run the moment it has work, while the decoder still gets every cycle the loop leaves idle.

Threads inherit the nice value of the thread that creates them, so onnxruntime's intra-op pool
is created from a lowered thread (`call_in_lowered_thread`) and inherits it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

_LOGGER = logging.getLogger(__name__)
MAX_NICENESS = 19
_Result = TypeVar("_Result")


def lower_this_thread(niceness: int) -> None:
    """Add `niceness` to the calling thread's nice value (Linux only; elsewhere nothing)."""
    if niceness <= 0 or sys.platform != "linux":
        return
    thread_id = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread_id)
        os.setpriority(os.PRIO_PROCESS, thread_id, min(MAX_NICENESS, current + niceness))
    except OSError as error:  # e.g. a sandbox that forbids it: run at the normal priority
        _LOGGER.warning("cannot lower decoder thread priority: %s", error)


def call_in_lowered_thread(niceness: int, function: Callable[[], _Result]) -> _Result:
    """`function()` in a new thread lowered by `niceness`: threads it creates inherit that."""
    if niceness <= 0:
        return function()
    outcome: list[_Result] = []
    failure: list[BaseException] = []

    def target() -> None:
        lower_this_thread(niceness)
        try:
            outcome.append(function())
        except BaseException as error:  # handed back to the caller below
            failure.append(error)

    # A daemon: a load abandoned inside it (service/reload.py) must not hold up the exit.
    thread = threading.Thread(target=target, name="lowered-priority", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
