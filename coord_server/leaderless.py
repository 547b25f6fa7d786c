"""Requests held while no leader is known (an election, or a pre-vote by a follower that
missed heartbeats on a busy machine).

Rule 1: a request is held for up to ``hold`` seconds (two election timeouts) rather than
        failed at once; ``retry_all`` gives each back to its dispatcher as soon as a leader
        is known.
Rule 2: ``expire`` (called each tick) fails with Unavailable those held too long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from coord_server.clock import Clock
from coord_server.errors import CoordError, Unavailable


class Leaderless:
    """The requests parked until a leader is known."""

    def __init__(self, clock: Clock, hold: float) -> None:
        self._clock = clock
        self.hold = hold
        self._parked: list[tuple[float, asyncio.Future[Any], Callable[[], None]]] = []

    def __bool__(self) -> bool:
        return bool(self._parked)

    def __len__(self) -> int:
        return len(self._parked)

    def park(self, fut: asyncio.Future[Any], retry: Callable[[], None]) -> None:
        """Hold ``fut``; ``retry`` dispatches it again once a leader is known (Rule 1)."""
        self._parked.append((self._clock.time() + self.hold, fut, retry))

    def retry_all(self) -> None:
        parked, self._parked = self._parked, []
        for _, _, retry in parked:
            retry()

    def expire(self) -> None:
        """Rule 2."""
        now = self._clock.time()
        keep = []
        for expires, fut, retry in self._parked:
            if fut.done():
                continue
            if expires <= now:
                fut.set_exception(Unavailable("no leader is elected yet; retry shortly"))
            else:
                keep.append((expires, fut, retry))
        self._parked = keep

    def fail_all(self, error: CoordError) -> None:
        for _, fut, _ in self._parked:
            if not fut.done():
                fut.set_exception(error)
        self._parked.clear()
