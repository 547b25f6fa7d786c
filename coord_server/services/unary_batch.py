"""Unary writes and reads in batches: what one KV.Pipeline message gets, for calls that
each carry one operation (generated stubs in any language, grpcurl, the HTTP surface).

Why: a member pays per batch, not per operation, for most of a write: the Ready cycle,
the WAL append and fsync, the append messages and each follower's own fsync and
acknowledgement; a read pays a ReadIndex round of heartbeats. Pipeline operations arrive
many to a message and share those. Unary calls arrive one per handler task, spread over
loop iterations, so the node proposes whatever came since its last Ready: a few
entries a batch where the Pipeline's come twenty or more (bench/unary.py).

Rule 1: while a batch of this member's unary KV writes is in flight (proposed or
        forwarded, not yet answered), new ones wait here; when it is answered,
        everything that waited goes to the node as the next batch (one proposal batch,
        or on a follower one Forward call). With nothing in flight a write goes at
        once, so a lone call pays no delay.
Rule 2: linearizable KV reads likewise: those that come while this member's ReadIndex
        round is in flight share the next round.
Rule 3: one batch (``MAX_IN_FLIGHT``) in flight at once: more batches in flight cost
        more server CPU per operation (measured with bench/unary.py). A batch not
        answered within its longest timeout frees its slot anyway (the node fails its
        operations on its own).
Rule 4: only the KV service batches. Lock, lease, election and ring calls come in
        sequences (an acquire, then its release), where waiting for the member's
        previous batch only adds a commit round (batched lock cycles were slower at the
        same CPU per cycle). A leader does not hold the batches followers forward
        either: they were batched at the follower.
Rule 5: each operation keeps its own deadline and outcome; one that gave up while
        waiting here (its call was cancelled, or its deadline passed) is never
        submitted. Deadlines are kept per window, with one timer set for the earliest:
        a timer per call (``asyncio.timeout``, or ``call_later``) cost about a quarter
        of the unary Put handler's own CPU.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from coord_server.errors import DeadlineExceeded
from coord_server.member import Proposer

from .common import PROPOSAL_PENDING

READ_PENDING = "the read could be confirmed with a quorum"
"""What a read that timed out waited for (DeadlineExceeded's message)."""

MAX_IN_FLIGHT = 1
"""Batches of unary writes (or read rounds) in flight at once per member."""


class _Window:
    """One kind of operation (writes or reads): queued items, batches in flight."""

    def __init__(self, start: Callable[[list[Any]], list[asyncio.Future[Any]]], max_in_flight: int) -> None:
        self.start = start
        self.max_in_flight = max_in_flight
        self.queued: list[tuple[Any, asyncio.Future[Any], float]] = []
        self.in_flight = 0
        self.scheduled = False
        self.deadlines: dict[asyncio.Future[Any], tuple[float, str]] = {}
        """Every unanswered operation's future: (its deadline in loop time, what it waits for)."""
        self.sweep: asyncio.TimerHandle | None = None
        self.sweep_at = math.inf

    def add(self, item: Any, timeout: float, pending: str) -> asyncio.Future[Any]:
        """A future of ``item``'s outcome, failed with DeadlineExceeded (saying what was
        ``pending``) once ``timeout`` seconds passed without one (Rule 5)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        deadline = loop.time() + timeout
        self.deadlines[fut] = (deadline, pending)
        if deadline < self.sweep_at:
            self._sweep_at(loop, deadline)
        self.queued.append((item, fut, timeout))
        if not self.scheduled and self.in_flight < self.max_in_flight:
            # Everything that arrives in this loop iteration goes together.
            self.scheduled = True
            loop.call_soon(self.flush)
        return fut

    def flush(self) -> None:
        self.scheduled = False
        if self.in_flight >= self.max_in_flight:
            return
        batch = []
        for queued in self.queued:
            if queued[1].done():
                self.forget(queued[1])
            else:
                batch.append(queued)
        self.queued = []
        if not batch:
            return
        self.in_flight += 1
        loop = asyncio.get_running_loop()
        try:
            inner = self.start([(item, timeout) for item, _, timeout in batch])
        except BaseException as exc:  # noqa: BLE001 - every waiter gets the failure
            self.in_flight -= 1
            for _, fut, _ in batch:
                self.forget(fut)
                if not fut.done():
                    fut.set_exception(exc)
            raise
        state = _BatchState(self, len(inner))
        state.timer = loop.call_later(max(t for _, _, t in batch), state.release)
        for (_, outer, _), fut in zip(batch, inner):
            fut.add_done_callback(state.done_callback(outer))

    def forget(self, fut: asyncio.Future[Any]) -> None:
        """``fut`` was answered or gave up: its deadline no longer counts."""
        deadlines = self.deadlines
        deadlines.pop(fut, None)
        if not deadlines and self.sweep is not None:
            self.sweep.cancel()
            self.sweep = None
            self.sweep_at = math.inf

    def _sweep_at(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self.sweep is not None:
            self.sweep.cancel()
        self.sweep = loop.call_at(when, self._expire_due)
        self.sweep_at = when

    def _expire_due(self) -> None:
        """Fail the operations whose deadline passed (Rule 5); wake again at the next one."""
        self.sweep = None
        self.sweep_at = math.inf
        loop = asyncio.get_running_loop()
        now = loop.time()
        following = math.inf
        for fut, (deadline, pending) in list(self.deadlines.items()):
            if fut.done():
                del self.deadlines[fut]
            elif deadline <= now:
                del self.deadlines[fut]
                fut.set_exception(DeadlineExceeded(f"the deadline passed before {pending}"))
            else:
                following = min(following, deadline)
        if following < math.inf:
            self._sweep_at(loop, following)

    def released(self) -> None:
        self.in_flight -= 1
        if self.queued and not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)


class _BatchState:
    """Counts a batch's answered operations; frees its in-flight slot once."""

    def __init__(self, window: _Window, count: int) -> None:
        self.window = window
        self.left = count
        self.freed = False
        self.timer: asyncio.TimerHandle | None = None

    def done_callback(self, outer: asyncio.Future[Any]) -> Callable[[asyncio.Future[Any]], None]:
        forget = self.window.forget

        def copy(inner: asyncio.Future[Any]) -> None:
            forget(outer)
            if not outer.done():
                if inner.cancelled():
                    outer.cancel()
                elif inner.exception() is not None:
                    outer.set_exception(inner.exception())  # type: ignore[arg-type]
                else:
                    outer.set_result(inner.result())
            elif not inner.cancelled():
                inner.exception()  # retrieved: nobody else will
            self.left -= 1
            if self.left == 0:
                self.release()

        return copy

    def release(self) -> None:
        if self.freed:
            return
        self.freed = True
        if self.timer is not None:
            self.timer.cancel()
        self.window.released()


class UnaryBatcher:
    """The unary services' way to the node for writes and linearizable read points."""

    def __init__(self, node: Proposer, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.node = node
        self.writes = _Window(self._submit_writes, max_in_flight)
        self.reads = _Window(self._start_reads, max_in_flight)

    def submit(self, data: bytes, timeout: float) -> asyncio.Future[Any]:
        """A future of the CommandResult for serialized command ``data`` (Rule 1),
        DeadlineExceeded after ``timeout`` seconds (Rule 5)."""
        return self.writes.add(data, timeout, PROPOSAL_PENDING)

    def read_barrier(self, timeout: float) -> asyncio.Future[Any]:
        """A future resolved at a linearizable read point (Rule 2), DeadlineExceeded
        after ``timeout`` seconds (Rule 5)."""
        return self.reads.add(None, timeout, READ_PENDING)

    def _submit_writes(self, batch: list[tuple[bytes, float]]) -> list[asyncio.Future[Any]]:
        submit = self.node.submit
        return [submit(data, timeout) for data, timeout in batch]

    def _start_reads(self, batch: list[tuple[None, float]]) -> list[asyncio.Future[Any]]:
        barrier = self.node.read_barrier_future()
        return [barrier] * len(batch)
