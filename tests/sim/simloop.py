"""An asyncio event loop with virtual time, for running the real Node deterministically.

Rule 1: ``loop.time()`` is a number the loop owns. When nothing is ready to run, the loop
        jumps straight to the next timer instead of waiting for it: a simulated second
        costs only the callbacks it runs.
Rule 2: nothing real happens on it: no sockets, no threads (the simulated disk's writer
        "threads" are timers on this loop). Callbacks run in (time, order scheduled)
        order, so one seed gives one run.
Rule 3: ``after_step`` runs after every iteration of the loop (the simulator checks its
        invariants there); ``advance`` lets a blocking call on the loop (an inline fsync
        on a slow disk) take virtual time, as a real one takes real time.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable
from typing import Any


class Deadlock(RuntimeError):
    """Nothing is ready and no timer is armed: every task waits forever."""


class Livelock(RuntimeError):
    """The loop keeps running callbacks while its time stands still."""


class _VirtualSelector(selectors.SelectSelector):
    def __init__(self) -> None:
        super().__init__()
        self.loop: SimLoop | None = None

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise Deadlock("the simulated loop has nothing to run and no timer armed")
        if timeout > 0 and self.loop is not None:
            self.loop.now += timeout
        return []


class SimLoop(asyncio.SelectorEventLoop):
    """A SelectorEventLoop whose clock moves only by Rule 1 and Rule 3."""

    def __init__(self, start: float = 1000.0) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self.now = start
        self.after_step: Callable[[], None] | None = None
        self.steps = 0
        self.max_still_steps = 200_000
        """Steps in a row without time moving before ``Livelock`` is raised."""
        self._still = 0
        self._last_now = start

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Rule 3: a blocking call took ``seconds``."""
        self.now += seconds

    def _run_once(self) -> None:  # type: ignore[override]
        super()._run_once()  # type: ignore[misc]
        self.steps += 1
        if self.now == self._last_now:
            self._still += 1
            if self._still > self.max_still_steps:
                raise Livelock(f"{self._still} loop steps at t={self.now} without time moving")
        else:
            self._still, self._last_now = 0, self.now
        if self.after_step is not None:
            self.after_step()
