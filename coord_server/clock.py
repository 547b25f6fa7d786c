"""The clock a member reads and sets timers on, injected so that a test (a fake clock) or
the simulator (a loop with virtual time, tests/sim/realnode.py) decides what time it is.

Rule 1: every part of the node reads time through a ``Clock`` and arms timers through it;
        nothing below the server calls ``time.monotonic`` or the loop directly.
Rule 2: ``LoopClock`` is the running event loop's clock (monotonic), looked up at each
        call, so one can be built before the loop runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    """A pending callback; ``cancel`` stops it if it has not run."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Seconds on a monotonic scale and one-shot timers."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class LoopClock:
    """The running event loop's clock (Rule 2)."""

    def time(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)


LOOP_CLOCK = LoopClock()
