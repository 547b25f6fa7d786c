"""Lease renewals in batches: many KeepAlive requests confirmed by one leadership check.

A client keeps all its leases on one KeepAlive stream. Answering its requests one at a
time, each behind its own quorum round, caps a stream at a few hundred renewals per
second; here every request that arrived while the previous batch was being confirmed is
confirmed by the next single round.

Rule 1: a renewal is applied only after a read barrier (a ReadIndex quorum round) begun
        after the renewal arrived, so no deposed leader promises a TTL (lease_timer.py
        Rule 2). One barrier serves the whole batch.
Rule 2: answers keep the order of the requests on the stream, one response per request
        (``id`` -> ``id``/``ttl``, ``ids`` -> ``ids``/``ttls``); a lease that does not
        exist or already expired answers TTL 0 and the stream goes on.
Rule 3: ``renew_one`` is the one place that decides a single lease's renewal, so a
        per-lease check (who may renew it) slots in there and applies to every path: the
        leader's own streams and the batches followers forward.
Rule 4: a follower forwards a whole batch to the leader as one Raft.Forward call (a
        LeaseKeepAliveRequest with ``ids``), and refuses an answer that does not match it
        (an older leader that ignores ``ids``) with UNAVAILABLE: the client then reconnects.
Rule 5: a stream reads ahead at most ``MAX_QUEUED_IDS`` renewals; beyond that it stops
        reading until the batch in hand is answered (gRPC flow control pushes back).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from coord.raft.v1 import raft_pb2
from coord.v1 import lease_pb2
from coord_server.errors import Unavailable
from coord_server.lease_timer import LeaseTimers
from coord_server.state.limits import MAX_KEEPALIVE_IDS
from coord_server.state.validation import validate_lease_keepalive

MAX_BATCH_IDS = MAX_KEEPALIVE_IDS
"""The most renewals one barrier confirms (whole requests; one request alone may carry up
to MAX_KEEPALIVE_IDS). Also the most a follower forwards in one call."""

MAX_QUEUED_IDS = 4 * MAX_KEEPALIVE_IDS
"""How far one stream reads ahead of its answers (Rule 5)."""

Renew = Callable[[list[int]], Awaitable[list[int]]]


def renew_one(timers: LeaseTimers, lease_id: int) -> int:
    """Renew one lease on the leader after its batch's barrier: the TTL granted, 0 when it
    does not exist or already expired (Rule 3)."""
    ttl = timers.keepalive(lease_id)
    return 0 if ttl is None else ttl


async def renew_on_leader(node: Any, lease_ids: Sequence[int]) -> list[int]:
    """The new TTL of each of ``lease_ids``, in order, renewed on this member, which must
    lead (Unavailable otherwise), behind one barrier (Rule 1)."""
    if not node.is_leader:
        raise Unavailable("keepalives go to the leader", node.leader_address())
    await node.read_barrier()
    timers = node.lease_timers
    if not node.is_leader or not timers.active:
        raise Unavailable("leadership changed during the keepalive", node.leader_address())
    return [renew_one(timers, lease_id) for lease_id in lease_ids]


async def forward_renewals(node: Any, lease_ids: list[int], timeout: float) -> list[int]:
    """Renew ``lease_ids`` at the leader through one Forward call (Rule 4)."""
    leader = node.leader_id
    if not leader:
        raise Unavailable("no leader is elected yet; retry shortly")
    request = lease_pb2.LeaseKeepAliveRequest(ids=lease_ids)
    payload = await node.transport.forward(leader, raft_pb2.FORWARD_KIND_LEASE_KEEP_ALIVE, request.SerializeToString(), timeout)
    response = lease_pb2.LeaseKeepAliveResponse.FromString(payload)
    if list(response.ids) != lease_ids or len(response.ttls) != len(lease_ids):
        raise Unavailable("the leader did not answer the batched renewal; reconnect to it", node.leader_address())
    return list(response.ttls)


async def answer_on_leader(node: Any, request: lease_pb2.LeaseKeepAliveRequest) -> lease_pb2.LeaseKeepAliveResponse:
    """One request (``id`` or ``ids``) answered on the leader: a forwarded one (Rule 4)."""
    validate_lease_keepalive(request)
    if request.ids:
        ids = list(request.ids)
        return lease_pb2.LeaseKeepAliveResponse(ids=ids, ttls=await renew_on_leader(node, ids))
    (ttl,) = await renew_on_leader(node, [request.id])
    return lease_pb2.LeaseKeepAliveResponse(id=request.id, ttl=ttl)


async def answer_stream(
    requests: AsyncIterator[lease_pb2.LeaseKeepAliveRequest], renew: Renew
) -> AsyncIterator[lease_pb2.LeaseKeepAliveResponse]:
    """Answer one KeepAlive stream in batches (Rules 1, 2, 5): requests are read ahead
    while a batch is being confirmed; ``renew(ids)`` confirms one batch. Responses come
    without headers (the caller stamps them). An invalid request ends the stream with its
    error once every request before it is answered."""
    pending: deque[lease_pb2.LeaseKeepAliveRequest] = deque()
    queued = 0
    arrived = asyncio.Event()
    room = asyncio.Event()
    room.set()

    async def read() -> None:
        nonlocal queued
        try:
            async for request in requests:
                validate_lease_keepalive(request)
                pending.append(request)
                queued += len(request.ids) or 1
                arrived.set()
                if queued >= MAX_QUEUED_IDS:
                    room.clear()
                    await room.wait()
        finally:
            arrived.set()

    reader = asyncio.get_running_loop().create_task(read(), name="keepalive-reader")
    try:
        while True:
            if not pending:
                if reader.done():
                    reader.result()  # the stream's end, or the invalid request's error
                    return
                arrived.clear()
                await arrived.wait()
                continue
            batch, ids = _take_batch(pending)
            queued -= len(ids)
            room.set()
            ttls = await renew(ids)
            at = 0
            for request in batch:
                if request.ids:
                    n = len(request.ids)
                    yield lease_pb2.LeaseKeepAliveResponse(ids=request.ids, ttls=ttls[at : at + n])
                    at += n
                else:
                    yield lease_pb2.LeaseKeepAliveResponse(id=request.id, ttl=ttls[at])
                    at += 1
    finally:
        reader.cancel()


def _take_batch(
    pending: deque[lease_pb2.LeaseKeepAliveRequest],
) -> tuple[list[lease_pb2.LeaseKeepAliveRequest], list[int]]:
    """Whole requests from the front of ``pending``, at most MAX_BATCH_IDS renewals (at
    least one request), and their lease IDs in order."""
    batch: list[lease_pb2.LeaseKeepAliveRequest] = []
    ids: list[int] = []
    while pending:
        request = pending[0]
        n = len(request.ids) or 1
        if batch and len(ids) + n > MAX_BATCH_IDS:
            break
        pending.popleft()
        batch.append(request)
        if request.ids:
            ids.extend(request.ids)
        else:
            ids.append(request.id)
    return batch, ids
