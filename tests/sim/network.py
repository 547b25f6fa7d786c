"""The simulated network: per-link blocking, loss, duplication, delay and reordering.

Rule 1: every decision is drawn from the simulator's one ``random.Random``.
Rule 2: a blocked link ``(a, b)`` drops messages from ``a`` to ``b`` both when they are
        sent and when they would be delivered (a partition also cuts what is in flight).
        A symmetric partition blocks both directions, a one-way fault only one.
Rule 3: delays are in simulator time units; random delays reorder messages, and a few
        messages take a long detour (stale messages arriving late).
"""

from __future__ import annotations

import random
from collections.abc import Iterable


class Network:
    def __init__(self, rng: random.Random, tick_units: int) -> None:
        self.rng = rng
        self.tick_units = tick_units
        self.blocked: set[tuple[int, int]] = set()
        self.drop = 0.0
        """Probability that a message is lost."""
        self.duplicate = 0.0
        """Probability that a message is delivered twice."""
        self.long_delay = 0.0
        """Probability that a message is delayed by up to several ticks."""

    # -- faults ------------------------------------------------------------------------

    def is_blocked(self, src: int, dst: int) -> bool:
        return (src, dst) in self.blocked

    def partition(self, side_a: Iterable[int], side_b: Iterable[int]) -> None:
        """Cut every link between the two sides, both ways."""
        side_b = list(side_b)
        for a in side_a:
            for b in side_b:
                self.blocked.add((a, b))
                self.blocked.add((b, a))

    def cut_one_way(self, src: int, dst: int) -> None:
        self.blocked.add((src, dst))

    def heal(self) -> None:
        self.blocked.clear()

    def calm(self) -> None:
        """No loss, no duplication, no long delays (partitions are separate: ``heal``)."""
        self.drop = self.duplicate = self.long_delay = 0.0

    # -- delivery ----------------------------------------------------------------------

    def delays(self, src: int, dst: int) -> list[int]:
        """Delivery delays for one message: [] if it is lost, two values if duplicated."""
        rng = self.rng
        if (src, dst) in self.blocked or (self.drop and rng.random() < self.drop):
            return []
        first = self._delay()
        if self.duplicate and rng.random() < self.duplicate:
            return [first, self._delay()]
        return [first]

    def _delay(self) -> int:
        # int(random() * n) rather than randint: this runs for every message.
        random = self.rng.random
        if self.long_delay and random() < self.long_delay:
            return self.tick_units + int(random() * 5 * self.tick_units)
        return 1 + int(random() * (self.tick_units // 2))
