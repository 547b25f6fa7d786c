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
        policy = GcPolicy(check_seconds=0.01, floor=0)
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
