"""Lease renewals in batches: many KeepAlive requests confirmed by one leadership check.

A client keeps all its leases on one KeepAlive stream. Answering its requests one at a
time, each behind its own quorum round, caps a stream at a few hundred renewals per
second; here every request that arrived while the previous batch was being confirmed is
confirmed by the next single round.

Rule 1: a renewal is applied only after a read barrier (a ReadIndex quorum round) begun
        after the renewal arrived, so no deposed leader promises a TTL (lease_timer.py
        Rule 2). One barrier serves the whole batch. It waits for the quorum's answer
        and this leadership's first entry to be applied, not for the read point
        (read_waits.py Rule 5): the leader's lease clocks then hold every grant that any
        leader answered, and renewals must not queue behind a backlog of writes being
        applied. Each renewal is judged by when it reached this member (lease_timer.py
        Rule 6): waiting here for its batch never costs a lease that was alive when it
        arrived. (A forwarded batch counts from
        when the leader received it: members' clocks are not compared.)
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
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from coord.raft.v1 import raft_pb2
from coord.v1 import lease_pb2
from coord_server.errors import Unavailable
from coord_server.lease_timer import LeaseTimers
from coord_server.state.limits import MAX_KEEPALIVE_IDS
from coord_server.state.validation import validate_lease_keepalive
from coord_server.member import Member

MAX_BATCH_IDS = MAX_KEEPALIVE_IDS
"""The most renewals one barrier confirms (whole requests; one request alone may carry up
to MAX_KEEPALIVE_IDS). Also the most a follower forwards in one call."""

MAX_QUEUED_IDS = 4 * MAX_KEEPALIVE_IDS
"""How far one stream reads ahead of its answers (Rule 5)."""

Renew = Callable[[list[int], list[float]], Awaitable[list[int]]]
"""renew(lease IDs, when each arrived by time.monotonic()) -> their new TTLs."""


def renew_one(timers: LeaseTimers, lease_id: int, arrived_at: float | None) -> int:
    """Renew one lease on the leader after its batch's barrier: the TTL granted, 0 when it
    does not exist or had expired when the renewal arrived (Rules 1, 3)."""
    ttl = timers.keepalive(lease_id, arrived_at)
    return 0 if ttl is None else ttl


async def renew_on_leader(node: Member, lease_ids: Sequence[int], arrived: Sequence[float] | None = None) -> list[int]:
    """The new TTL of each of ``lease_ids``, in order, renewed on this member, which must
    lead (Unavailable otherwise), behind one barrier (Rule 1); ``arrived``: when each
    reached this member (default: now)."""
    if not node.is_leader:
        raise Unavailable("keepalives go to the leader", node.leader_address())
    if arrived is None:
        arrived = [time.monotonic()] * len(lease_ids)
    await node.leadership_confirmed()
    timers = node.lease_timers
    if not node.is_leader or not timers.active:
        raise Unavailable("leadership changed during the keepalive", node.leader_address())
    return [renew_one(timers, lease_id, at) for lease_id, at in zip(lease_ids, arrived)]


async def forward_renewals(node: Member, lease_ids: list[int], timeout: float) -> list[int]:
    """Renew ``lease_ids`` at the leader through one Forward call (Rule 4)."""
    leader = node.leader_id
    if not leader:
        raise Unavailable("no leader is elected yet; retry shortly")
    request = lease_pb2.LeaseKeepAliveRequest(ids=lease_ids)
    payload = await node.forward(leader, raft_pb2.FORWARD_KIND_LEASE_KEEP_ALIVE, request.SerializeToString(), timeout)
    response = lease_pb2.LeaseKeepAliveResponse.FromString(payload)
    if list(response.ids) != lease_ids or len(response.ttls) != len(lease_ids):
        raise Unavailable("the leader did not answer the batched renewal; reconnect to it", node.leader_address())
    return list(response.ttls)


async def answer_on_leader(node: Member, request: lease_pb2.LeaseKeepAliveRequest) -> lease_pb2.LeaseKeepAliveResponse:
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
    pending: deque[tuple[lease_pb2.LeaseKeepAliveRequest, float]] = deque()
    queued = 0
    has_requests = asyncio.Event()
    room = asyncio.Event()
    room.set()

    async def read() -> None:
        nonlocal queued
        try:
            async for request in requests:
                validate_lease_keepalive(request)
                pending.append((request, time.monotonic()))
                queued += len(request.ids) or 1
                has_requests.set()
                if queued >= MAX_QUEUED_IDS:
                    room.clear()
                    await room.wait()
        finally:
            has_requests.set()

    reader = asyncio.get_running_loop().create_task(read(), name="keepalive-reader")
    try:
        while True:
            if not pending:
                if reader.done():
                    reader.result()  # the stream's end, or the invalid request's error
                    return
                has_requests.clear()
                await has_requests.wait()
                continue
            batch, ids, arrived = _take_batch(pending)
            queued -= len(ids)
            room.set()
            ttls = await renew(ids, arrived)
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
    pending: deque[tuple[lease_pb2.LeaseKeepAliveRequest, float]],
) -> tuple[list[lease_pb2.LeaseKeepAliveRequest], list[int], list[float]]:
    """Whole requests from the front of ``pending``, at most MAX_BATCH_IDS renewals (at
    least one request), their lease IDs in order, and when each arrived."""
    batch: list[lease_pb2.LeaseKeepAliveRequest] = []
    ids: list[int] = []
    arrived: list[float] = []
    while pending:
        request, at = pending[0]
        n = len(request.ids) or 1
        if batch and len(ids) + n > MAX_BATCH_IDS:
            break
        pending.popleft()
        batch.append(request)
        if request.ids:
            ids.extend(request.ids)
        else:
            ids.append(request.id)
        arrived.extend([at] * n)
    return batch, ids, arrived
