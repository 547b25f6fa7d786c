"""A clock for unit tests: time moves only when the test says (``advance``), and timers
fire then, in deadline order."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """coord_server.clock.Clock, driven by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self._timers: list[tuple[float, int, FakeTimer, Callable[[], None]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer()
        heapq.heappush(self._timers, (self.now + delay, next(self._seq), timer, callback))
        return timer

    @property
    def pending(self) -> int:
        return sum(1 for _, _, t, _ in self._timers if not t.cancelled)

    def advance(self, seconds: float) -> None:
        """Move time on, firing every timer due by then."""
        until = self.now + seconds
        while self._timers and self._timers[0][0] <= until:
            when, _, timer, callback = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not timer.cancelled:
                callback()
        self.now = until
