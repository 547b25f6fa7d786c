"""How a member uses CPython's cyclic garbage collector.

Why: a full (generation 2) collection walks every container object in the process and
stops everything while it does: heartbeats, reads and writes. Measured during a load
run (3 members on 2 cores), those pauses grew with the store, from 18 ms at 50,000
tracked objects to 178 ms at 147,000. In one bench run that put linearizable gets' p99
at 147 ms against etcd's 87 ms. A larger store would pause long enough to cost the
leader its leadership.

Rule 1: the objects alive at start (modules, the recovered state) and those surviving
        each full collection are frozen (``gc.freeze``): later collections skip them, so
        a full collection walks only what survived since the previous one. In the same
        run: 0.3-17 ms instead of 18-178 ms.
Rule 2: a frozen object is never collected as part of a cycle. A cycle that was alive
        when frozen and became garbage later stays until the frozen set has doubled
        since the last complete collection (and passed FULL_COLLECTION_FLOOR); then
        everything is unfrozen and collected once. That is one long pause per doubling
        of the heap, where CPython alone pauses as long every 25% of growth.
Rule 3: freezing happens on the event loop, at most once per CHECK_SECONDS, never inside
        the collector's callback (which may run on any thread).
Rule 4: Rule 2's complete collection walks every object, about 0.6-1 s per million on a
        busy 2-core machine: on a leader that is an election. It runs only when
        ``may_pause()`` says so (the server: this member is not the leader of a
        multi-member cluster) or while the frozen set is under LEADER_PAUSE_OBJECTS. A
        leader of a large store defers it until it follows; the cost is that cyclic
        garbage frozen meanwhile stays until then (measured: a few hundred objects).
        A follower waits a random delay of up to SPREAD_SECONDS first: the followers
        reach each doubling at the same moment (they apply the same entries), and both
        pausing at once would cost the leader its quorum (CheckQuorum) all the same.
Rule 5: every collection longer than SLOW_COLLECTION_SECONDS is logged (from the loop,
        Rule 3), so a stall in the loop-lag log can be matched to the collector.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("coord.gc")

CHECK_SECONDS = 1.0
FULL_COLLECTION_FLOOR = 200_000
"""Frozen objects below which Rule 2's complete collection never runs."""
LEADER_PAUSE_OBJECTS = 150_000
"""Frozen objects under which a complete collection is short enough (tens of ms) to run
whatever ``may_pause`` says (Rule 4)."""
SLOW_COLLECTION_SECONDS = 0.1
SPREAD_SECONDS = 120.0


class GcPolicy:
    """Rules 1-3 for one process; ``start`` on the member's event loop, ``stop`` at the
    end."""

    def __init__(
        self,
        check_seconds: float = CHECK_SECONDS,
        floor: int = FULL_COLLECTION_FLOOR,
        may_pause: Callable[[], bool] = lambda: True,
        pause_objects: int = LEADER_PAUSE_OBJECTS,
        spread_seconds: float = SPREAD_SECONDS,
    ) -> None:
        self.pause_objects = pause_objects
        self.spread_seconds = spread_seconds
        self.check_seconds = check_seconds
        self.floor = floor
        self.may_pause = may_pause
        self.deferred = 0
        """Complete collections put off by Rule 4 (for tests and logs)."""
        self._collection_started = 0.0
        self._pause_at: float | None = None
        self._rng = random.Random()
        self._slow: list[tuple[int, float]] = []
        self.full_collections = 0
        """Complete collections made by Rule 2 (for tests and logs)."""
        self._frozen_after_full = 0
        self._frozen = 0
        """Objects frozen now (counted as they are frozen: gc.get_freeze_count() walks them)."""
        self._due = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        self._frozen = self._frozen_after_full = gc.get_freeze_count()
        gc.callbacks.append(self._on_collection)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gc-policy")

    async def stop(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._collection_started = time.perf_counter()
            return
        took = time.perf_counter() - self._collection_started
        if took >= SLOW_COLLECTION_SECONDS:
            self._slow.append((int(info.get("generation", -1)), took))
        if info.get("generation") == 2:
            self._due = True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.check_seconds)
            while self._slow:
                generation, took = self._slow.pop(0)
                log.warning("garbage collection of generation %d took %.0f ms", generation, took * 1000)
            if self._due:
                self._due = False
                self.freeze()

    def freeze(self) -> None:
        """Rule 1, then Rule 2 if that doubled the frozen set."""
        # gc.get_freeze_count() walks the whole frozen set (tens of ms a second on the
        # loop at a million objects): count what this freeze adds instead, the young
        # generations, which hold only what survived since the last freeze.
        self._frozen += sum(len(gc.get_objects(generation)) for generation in range(3))
        gc.freeze()
        frozen = self._frozen
        if frozen > max(2 * self._frozen_after_full, self.floor):
            if frozen > self.pause_objects:
                if not self.may_pause():
                    self.deferred += 1
                    self._pause_at = None
                    return
                now = time.monotonic()
                if self._pause_at is None:
                    self._pause_at = now + self._rng.uniform(0, self.spread_seconds)
                if now < self._pause_at:
                    return
            self._pause_at = None
            started = time.perf_counter()
            gc.unfreeze()
            collected = gc.collect()
            gc.freeze()
            self._frozen = self._frozen_after_full = gc.get_freeze_count()
            self.full_collections += 1
            log.info(
                "complete garbage collection: %d objects freed, %d kept, %.0f ms",
                collected, self._frozen_after_full, (time.perf_counter() - started) * 1000,
            )
