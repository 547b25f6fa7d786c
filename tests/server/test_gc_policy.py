"""coord_server/gc_policy.py: what survives is frozen after full collections, and a cycle
that dies while frozen is collected once the frozen set has doubled."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from coord_server.gc_policy import GcPolicy


class Node:
    """A cycle: collectable only by the cyclic collector."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


async def _wait_for(condition: object, what: str) -> None:
    for _ in range(500):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_survivors_of_a_full_collection_are_frozen_and_cycles_come_back_at_a_doubling() -> None:
    async def main() -> None:
        policy = GcPolicy(check_seconds=0.01, floor=0, spread_seconds=0)
        policy.start()
        try:
            base = gc.get_freeze_count()
            assert base > 0, "what was alive at start is frozen"
            cycle = Node()
            dead = weakref.ref(cycle)
            gc.collect()  # a full collection: its survivors get frozen
            await _wait_for(lambda: gc.get_freeze_count() > base, "the survivors to be frozen")
            del cycle
            gc.collect()
            assert dead() is not None, "a frozen cycle is not collected"
            keep = [[i] for i in range(2 * gc.get_freeze_count())]  # the heap doubles
            gc.collect()
            await _wait_for(lambda: policy.full_collections == 1, "the complete collection")
            assert dead() is None, "the complete collection freed the dead cycle"
            assert gc.get_freeze_count() >= len(keep)
        finally:
            await policy.stop()
        assert policy._on_collection not in gc.callbacks

    asyncio.run(main())


def test_a_leader_defers_the_complete_collection_of_a_large_heap() -> None:
    async def main() -> None:
        leading = [True]
        policy = GcPolicy(check_seconds=0.01, floor=0, may_pause=lambda: not leading[0], pause_objects=0,
                          spread_seconds=0)
        policy.start()
        try:
            keep = [[i] for i in range(2 * gc.get_freeze_count())]  # the heap doubles
            gc.collect()
            await _wait_for(lambda: policy.deferred >= 1, "the collection to be deferred")
            assert policy.full_collections == 0, "no complete collection while leading"
            leading[0] = False
            gc.collect()
            await _wait_for(lambda: policy.full_collections == 1, "the complete collection once following")
            assert gc.get_freeze_count() >= len(keep)
        finally:
            await policy.stop()

    asyncio.run(main())
