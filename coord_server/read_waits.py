"""Linearizable reads and waits for an applied index (ReadIndex, Raft thesis §6.4).

Rule 1: reads that arrive between two Ready cycles share one ReadIndex round: one quorum
        confirmation, one context (``<member id>:<n>``).
Rule 2: when the round's ReadState comes back, its reads park until the member has applied
        the read point; they are released in index order as ``applied`` moves.
Rule 3: a round of a leadership that was lost will never complete: ``fail_rounds`` fails
        its reads at once, so clients retry now rather than at their deadline.
Rule 4: waiters for an applied index (``applied_future``) share the same release.
Rule 5: a read added with an ``apply_floor`` is released once its round is answered and
        the floor is applied, not parked until the read point is applied: what it guards
        (a lease renewal on the leader's own clocks) needs the quorum's word that this
        member still leads, and must not queue behind a backlog of writes being applied.
        The floor is the leader's first entry of its term: until that is applied, a new
        leader's clocks lack what its predecessor applied and answered (a grant it would
        call unknown, a revoke it would renew).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any

from coord_server.errors import CoordError


class ReadWaits:
    """Reads waiting for a round, for their read point, and waits for an applied index."""

    def __init__(self, member_id: int) -> None:
        self._member_id = member_id
        self._pending: list[asyncio.Future[None]] = []
        self._rounds: dict[bytes, list[asyncio.Future[None]]] = {}
        self._ids = itertools.count(1)
        self._parked: list[tuple[int, int, asyncio.Future[None]]] = []
        self._applied_waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._apply_floors: dict[asyncio.Future[None], int] = {}

    def add(self, fut: asyncio.Future[None], apply_floor: int | None = None) -> None:
        """A read for the next round (Rule 1; Rule 5 with ``apply_floor``); the caller
        wakes the Ready loop."""
        self._pending.append(fut)
        if apply_floor is not None:
            self._apply_floors[fut] = apply_floor

    def start_round(self, read_index: Callable[[bytes], None], on_refused: Callable[[Exception], CoordError],
                    refused: type[Exception]) -> None:
        """Start one round for the reads queued since the last (Rule 1): ``read_index``
        asks the core; if it raises ``refused``, every read fails with ``on_refused(err)``."""
        if not self._pending:
            return
        waiters, self._pending = self._pending, []
        context = f"{self._member_id}:{next(self._ids)}".encode()
        try:
            read_index(context)
        except refused as err:
            failure = on_refused(err)
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(failure)
            return
        self._rounds[context] = waiters

    def release(self, read_states: list[Any], applied: int) -> None:
        """Rounds answered by the core: park their reads at their read point (Rule 2)."""
        for rs in read_states:
            waiters = self._rounds.pop(rs.context, None)
            if waiters is None:
                continue
            for fut in waiters:
                index = self._apply_floors.pop(fut, rs.index)
                heapq.heappush(self._parked, (index, next(self._seq), fut))
        self.wake(applied)

    def applied_future(self, index: int, applied: int) -> asyncio.Future[None]:
        """A future resolved once ``index`` is applied (at once when it is) (Rule 4)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if applied >= index:
            fut.set_result(None)
        else:
            heapq.heappush(self._applied_waiters, (index, next(self._seq), fut))
        return fut

    def wake(self, applied: int) -> None:
        """Release every read and wait whose index is applied (Rules 2, 4)."""
        for heap in (self._parked, self._applied_waiters):
            while heap and heap[0][0] <= applied:
                _, _, fut = heapq.heappop(heap)
                if not fut.done():
                    fut.set_result(None)

    def fail_rounds(self, error: CoordError) -> None:
        """Rule 3."""
        for waiters in self._rounds.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(error)
        self._rounds.clear()
        self._apply_floors = {fut: floor for fut, floor in self._apply_floors.items() if not fut.done()}

    def fail_all(self, error: CoordError) -> None:
        for fut in self._pending:
            if not fut.done():
                fut.set_exception(error)
        self._pending.clear()
        self.fail_rounds(error)
        for heap in (self._parked, self._applied_waiters):
            for _, _, fut in heap:
                if not fut.done():
                    fut.set_exception(error)
            heap.clear()
