"""Batched lease renewals (services/lease_renewals.py) over real gRPC: many renewals on one
stream behind one read barrier, answered in order; ``ids`` requests; their errors; a
follower forwarding a whole batch in one call."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from coord.v1 import lease_pb2
from coord_server.state.limits import MAX_KEEPALIVE_IDS

from coord_server.errors import Unavailable

from .conftest import eventually
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


async def test_a_renewal_waits_until_the_ready_loop_has_set_up_a_new_term(cluster):
    """The core becomes leader of a new term at once (a message from the transport steps
    it), but the term's floor (its first entry) and fresh lease clocks are set by the
    Ready loop: a renewal in that gap is refused Unavailable, which the client retries,
    rather than released against the previous term's floor (node.py leadership_confirmed)."""
    node = cluster.node
    [lease_id] = await _grant(cluster, 1)
    term = node.core.term
    node.core.become_follower(term, 0)  # deposed...
    node.core.campaign()  # ...and elected again, all before the Ready loop runs
    assert node.is_leader and node.core.term > term
    fut = node.leadership_confirmed()
    assert fut.done()
    with pytest.raises(Unavailable, match="leadership is starting"):
        fut.result()
    # The next Ready cycle sets the term up (no soft-state change marks it): renewals go on.
    await eventually(lambda: node.lease_timers.active and node._term_first_index_term == node.core.term)
    call = cluster.lease().KeepAlive()
    await call.write(lease_pb2.LeaseKeepAliveRequest(id=lease_id))
    answer = await asyncio.wait_for(call.read(), 30)
    assert (answer.id, answer.ttl) == (lease_id, 30)
    await call.done_writing()


async def test_only_real_stalls_stop_the_lease_clocks_and_only_up_to_the_cap(cluster):
    """lease_timer.py Rule 7 through the node's ticker: a loop held up for less than a
    heartbeat interval (ordinary load) does not postpone leases, or they would age slower
    than real time; a long stall does, but by at most one election timeout per leadership."""
    node = cluster.node
    await eventually(lambda: node.lease_timers.active)
    calls: list[float] = []
    original = node.lease_timers.postpone

    def recorded(seconds: float) -> None:
        calls.append(seconds)
        original(seconds)

    node.lease_timers.postpone = recorded  # type: ignore[method-assign]
    stall = node.config.tick_interval * node.config.heartbeat_ticks
    for _ in range(5):
        time.sleep(stall * 0.9)  # more than CATCH_UP_TICKS ticks, less than a heartbeat
        await asyncio.sleep(0.05)
    assert all(seconds >= stall for seconds in calls), calls
    timeout = node.config.election_timeout
    for _ in range(3):
        seen = len(calls)
        time.sleep(timeout)  # the loop is held up
        await eventually(lambda seen=seen: len(calls) > seen, what="the stall postponed")
    assert node.lease_timers.postponed == pytest.approx(timeout)
