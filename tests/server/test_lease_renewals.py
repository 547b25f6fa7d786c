"""Batched lease renewals (services/lease_renewals.py) over real gRPC: many renewals on one
stream behind one read barrier, answered in order; ``ids`` requests; their errors; a
follower forwarding a whole batch in one call."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from coord.v1 import lease_pb2
from coord_server.state.limits import MAX_KEEPALIVE_IDS

from .helpers import expect_error

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _count_barriers(node: Any) -> list[int]:
    """Count the leadership confirmations (quorum rounds) the services of member ``node``
    (its NodeMember) serve renewals with
    from now on."""
    calls = [0]
    original = node.leadership_confirmed

    def counted() -> Any:
        calls[0] += 1
        return original()

    node.leadership_confirmed = counted
    return calls


async def _grant(cluster: Any, count: int, ttl: int = 30) -> list[int]:
    lease = cluster.lease()
    granted = await asyncio.gather(*(lease.Grant(lease_pb2.LeaseGrantRequest(ttl=ttl)) for _ in range(count)))
    return [g.id for g in granted]


async def test_many_renewals_on_one_stream_share_few_barriers(cluster):
    ids = await _grant(cluster, 50)
    barriers = _count_barriers(cluster.member)
    call = cluster.lease().KeepAlive()
    order = [ids[i % len(ids)] for i in range(2000)] + [987654]  # the last: no such lease
    for lease_id in order:
        await call.write(lease_pb2.LeaseKeepAliveRequest(id=lease_id))
    answers = [await asyncio.wait_for(call.read(), 30) for _ in order]
    assert [a.id for a in answers] == order  # one answer per request, in order
    assert [a.ttl for a in answers] == [30] * 2000 + [0]
    assert all(a.header.member_id == cluster.node.id for a in answers)
    # One barrier per batch, not per renewal (the first request may go alone).
    assert 1 <= barriers[0] <= 100, barriers[0]
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF


async def test_ids_renew_many_leases_in_one_request(cluster):
    ids = await _grant(cluster, 20, ttl=40)
    barriers = _count_barriers(cluster.member)
    call = cluster.lease().KeepAlive()
    asked = ids + [424242]
    await call.write(lease_pb2.LeaseKeepAliveRequest(ids=asked))
    await call.write(lease_pb2.LeaseKeepAliveRequest(id=ids[0]))  # mixed on one stream
    batch = await asyncio.wait_for(call.read(), 10)
    single = await asyncio.wait_for(call.read(), 10)
    assert list(batch.ids) == asked and list(batch.ttls) == [40] * 20 + [0]
    assert batch.id == 0 and batch.ttl == 0
    assert single.id == ids[0] and single.ttl == 40 and not single.ids
    assert barriers[0] <= 2
    call.cancel()


async def test_bad_keepalive_requests_end_the_stream_with_invalid_argument(cluster):
    (lease_id,) = await _grant(cluster, 1)
    for bad in (
        lease_pb2.LeaseKeepAliveRequest(id=lease_id, ids=[lease_id]),
        lease_pb2.LeaseKeepAliveRequest(ids=[lease_id] * (MAX_KEEPALIVE_IDS + 1)),
    ):
        call = cluster.lease().KeepAlive()
        await call.write(lease_pb2.LeaseKeepAliveRequest(id=lease_id))
        await call.write(bad)
        first = await asyncio.wait_for(call.read(), 10)
        assert first.id == lease_id and first.ttl == 30  # what came before is answered
        await expect_error(call.read(), INVALID)
    # The lease is untouched by the refusals.
    ttl = await cluster.lease().TimeToLive(lease_pb2.LeaseTimeToLiveRequest(id=lease_id))
    assert ttl.ttl > 0


@pytest.mark.cluster(size=3)
async def test_a_follower_forwards_a_batch_in_one_call(cluster):
    leader = await cluster.wait_leader()
    follower = cluster.followers()[0]
    granted = await asyncio.gather(*(leader.lease().Grant(lease_pb2.LeaseGrantRequest(ttl=30)) for _ in range(30)))
    ids = [g.id for g in granted]
    assert follower.node is not None and leader.node is not None
    forwards = [0]
    original = follower.node.transport.forward

    async def counted(*args: Any) -> bytes:
        forwards[0] += 1
        return await original(*args)  # type: ignore[no-any-return]

    follower.node.transport.forward = counted
    call = follower.lease().KeepAlive()
    order = [ids[i % len(ids)] for i in range(600)]
    for lease_id in order:
        await call.write(lease_pb2.LeaseKeepAliveRequest(id=lease_id))
    answers = [await asyncio.wait_for(call.read(), 30) for _ in order]
    assert [(a.id, a.ttl) for a in answers] == [(i, 30) for i in order]
    assert all(a.header.member_id == follower.node.id for a in answers)
    assert 1 <= forwards[0] <= 60, forwards[0]
    # Renewed on the leader's clock: nearly a full TTL left.
    assert all(leader.node.lease_timers.remaining(i) > 25 for i in ids)
    call.cancel()
