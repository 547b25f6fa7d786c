"""A follower's writes on their way to the leader.

Rule 1: every write a follower receives in one loop iteration travels to the leader in one
        Forward call (the leader's per-call cost is paid once); the batch goes to whoever
        leads when it leaves.
Rule 2: the leader answers one CommandResult per write, in order; any failure of the call
        (or a short answer) fails every write of the batch with that error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from coord.raft.v1 import command_pb2, raft_pb2
from coord_server.clock import Clock
from coord_server.errors import CoordError, Unavailable

DEFAULT_FORWARD_TIMEOUT = 30.0
"""Seconds a forwarded write may take when its caller gave no deadline."""

ForwardCall = Callable[[int, int, bytes, "float | None"], Awaitable[bytes]]
"""transport.forward(leader, kind, payload, timeout) -> the leader's answer."""


class Forwarder:
    """Batches a follower's writes to the leader (Rules 1, 2)."""

    def __init__(self, clock: Clock, leader: Callable[[], int], forward: ForwardCall) -> None:
        self._clock = clock
        self._leader = leader
        self._forward = forward
        self._batch: list[tuple[bytes, asyncio.Future[Any], float]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, data: bytes, fut: asyncio.Future[Any], timeout: float | None) -> None:
        deadline = self._clock.time() + (timeout if timeout is not None else DEFAULT_FORWARD_TIMEOUT)
        self._batch.append((data, fut, deadline))
        if len(self._batch) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(self._leader(), batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, leader: int, batch: list[tuple[bytes, asyncio.Future[Any], float]]) -> None:
        if leader == 0:
            error: BaseException = Unavailable("no leader is elected yet; retry shortly")
        else:
            payload = raft_pb2.ForwardBatch(items=[data for data, _, _ in batch]).SerializeToString()
            timeout = max(0.0, max(d for _, _, d in batch) - self._clock.time())
            try:
                answer = await self._forward(leader, raft_pb2.FORWARD_KIND_PROPOSE_BATCH, payload, timeout)
                items = raft_pb2.ForwardBatch.FromString(answer).items
                if len(items) != len(batch):
                    raise Unavailable(f"the leader answered {len(items)} of {len(batch)} forwarded writes")
                for (_, fut, _), item in zip(batch, items):
                    if not fut.done():
                        fut.set_result(command_pb2.CommandResult.FromString(item))
                return
            except Exception as err:  # noqa: BLE001 - every waiter gets the failure
                error = err
        for _, fut, _ in batch:
            if not fut.done():
                fut.set_exception(error)

    def fail_all(self, error: CoordError) -> None:
        """Writes not yet sent fail with ``error`` (those in flight end with their call)."""
        for _, fut, _ in self._batch:
            if not fut.done():
                fut.set_exception(error)
        self._batch.clear()
