"""Lease service over real gRPC: Grant, Revoke, KeepAlive, TimeToLive, List, expiry."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest

from coord.v1 import kv_pb2, lease_pb2

from .conftest import eventually
from .helpers import expect_error, session

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_grant_revoke_and_list(cluster):
    lease = cluster.lease()
    kv = cluster.kv()
    g = await lease.Grant(lease_pb2.LeaseGrantRequest(ttl=30))
    assert g.id > 0 and g.ttl == 30 and g.header.member_id == cluster.node.id
    chosen = await lease.Grant(lease_pb2.LeaseGrantRequest(ttl=60, id=4242))
    assert chosen.id == 4242
    listed = await lease.List(lease_pb2.LeaseListRequest())
    assert [(x.id, x.granted_ttl) for x in listed.leases] == sorted([(g.id, 30), (4242, 60)])

    await kv.Put(kv_pb2.PutRequest(key=b"a", value=b"1", lease=g.id))
    rev = (await kv.Put(kv_pb2.PutRequest(key=b"b", value=b"2", lease=g.id))).header.revision
    revoked = await lease.Revoke(lease_pb2.LeaseRevokeRequest(id=g.id))
    assert revoked.header.revision == rev + 1  # both keys deleted in one revision
    left = await kv.Range(kv_pb2.RangeRequest(key=b"a", range_end=b"c"))
    assert left.count == 0
    listed = await lease.List(lease_pb2.LeaseListRequest())
    assert [x.id for x in listed.leases] == [4242]


async def test_grant_errors(cluster):
    lease = cluster.lease()
    await expect_error(lease.Grant(lease_pb2.LeaseGrantRequest(ttl=0)), INVALID, "ttl")
    await expect_error(lease.Grant(lease_pb2.LeaseGrantRequest(ttl=-5)), INVALID)
    await expect_error(lease.Grant(lease_pb2.LeaseGrantRequest(ttl=9_000_000_001)), INVALID)
    await expect_error(lease.Grant(lease_pb2.LeaseGrantRequest(ttl=10, id=-1)), INVALID, "negative")
    ok = await lease.Grant(lease_pb2.LeaseGrantRequest(ttl=9_000_000_000, id=7))
    assert ok.ttl == 9_000_000_000
    await expect_error(lease.Grant(lease_pb2.LeaseGrantRequest(ttl=10, id=7)), grpc.StatusCode.FAILED_PRECONDITION)
    await expect_error(lease.Revoke(lease_pb2.LeaseRevokeRequest(id=999)), grpc.StatusCode.NOT_FOUND)
    await expect_error(lease.Revoke(lease_pb2.LeaseRevokeRequest(id=0)), grpc.StatusCode.NOT_FOUND)


async def test_ttl_raised_to_the_minimum(cluster):
    member = cluster.member  # the Lease service's view of its member
    lease = cluster.lease()
    assert (await lease.Grant(lease_pb2.LeaseGrantRequest(ttl=1))).ttl == 1  # 1.5 x 300 ms -> 1 s
    # Pretend the base election timeout is 3 s: the minimum becomes ceil(4.5) = 5 s.
    member.config = dataclasses.replace(member.config, election_ticks=int(3.0 / member.config.tick_interval))
    assert (await lease.Grant(lease_pb2.LeaseGrantRequest(ttl=1))).ttl == 5
    assert (await lease.Grant(lease_pb2.LeaseGrantRequest(ttl=7))).ttl == 7


async def test_keepalive_stream(cluster):
    lease = cluster.lease()
    g = await lease.Grant(lease_pb2.LeaseGrantRequest(ttl=20))
    call = lease.KeepAlive()
    for _ in range(3):
        await call.write(lease_pb2.LeaseKeepAliveRequest(id=g.id))
        resp = await asyncio.wait_for(call.read(), 10)
        assert resp.id == g.id and resp.ttl == 20 and resp.header.member_id == cluster.node.id
    await call.write(lease_pb2.LeaseKeepAliveRequest(id=31337))  # unknown: ttl 0, stream stays
    resp = await asyncio.wait_for(call.read(), 10)
    assert resp.id == 31337 and resp.ttl == 0
    await call.write(lease_pb2.LeaseKeepAliveRequest(id=g.id))
    resp = await asyncio.wait_for(call.read(), 10)
    assert resp.ttl == 20
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_time_to_live(cluster):
    lease = cluster.lease()
    kv = cluster.kv()
    g = await lease.Grant(lease_pb2.LeaseGrantRequest(ttl=40))
    await kv.Put(kv_pb2.PutRequest(key=b"k2", value=b"", lease=g.id))
    await kv.Put(kv_pb2.PutRequest(key=b"k1", value=b"", lease=g.id))
    ttl = await lease.TimeToLive(lease_pb2.LeaseTimeToLiveRequest(id=g.id))
    assert ttl.id == g.id and ttl.granted_ttl == 40 and 38 <= ttl.ttl <= 40 and not ttl.keys
    with_keys = await lease.TimeToLive(lease_pb2.LeaseTimeToLiveRequest(id=g.id, attachments=True))
    assert list(with_keys.keys) == [b"k1", b"k2"]
    await expect_error(lease.TimeToLive(lease_pb2.LeaseTimeToLiveRequest(id=555)), grpc.StatusCode.NOT_FOUND)


async def test_lease_expires_and_deletes_its_keys(cluster):
    lease = cluster.lease()
    kv = cluster.kv()
    g = await lease.Grant(lease_pb2.LeaseGrantRequest(ttl=1))
    await kv.Put(kv_pb2.PutRequest(key=b"ephemeral", value=b"x", lease=g.id))

    async def gone() -> bool:
        return (await kv.Range(kv_pb2.RangeRequest(key=b"ephemeral"))).count == 0

    await eventually(gone, timeout=15, what="the lease to expire")
    await expect_error(lease.TimeToLive(lease_pb2.LeaseTimeToLiveRequest(id=g.id)), grpc.StatusCode.NOT_FOUND)
    call = lease.KeepAlive()
    await call.write(lease_pb2.LeaseKeepAliveRequest(id=g.id))
    assert (await asyncio.wait_for(call.read(), 10)).ttl == 0
    call.cancel()


async def test_grant_and_revoke_are_exactly_once(cluster):
    lease = cluster.lease()
    first = await lease.Grant(lease_pb2.LeaseGrantRequest(ttl=30), metadata=session("c", 1))
    again = await lease.Grant(lease_pb2.LeaseGrantRequest(ttl=30), metadata=session("c", 1))
    assert first.id == again.id
    assert len((await lease.List(lease_pb2.LeaseListRequest())).leases) == 1
    await lease.Revoke(lease_pb2.LeaseRevokeRequest(id=first.id), metadata=session("c", 2))
    # the retry gets the first answer, not NOT_FOUND
    await lease.Revoke(lease_pb2.LeaseRevokeRequest(id=first.id), metadata=session("c", 2))


@pytest.mark.cluster(size=3)
async def test_a_keepalive_stream_outlives_an_election(cluster):
    """services/lease.py Rule 4: a renewal that reaches a follower just after the leader
    stopped (its forward fails, then no leader is known) waits for the election and is
    answered by the new leader; the stream goes on."""
    leader = await cluster.wait_leader()
    follower = cluster.followers()[0]
    lease = cluster.lease(follower)
    g = await lease.Grant(lease_pb2.LeaseGrantRequest(ttl=30))
    call = lease.KeepAlive()
    await call.write(lease_pb2.LeaseKeepAliveRequest(id=g.id))
    assert (await asyncio.wait_for(call.read(), 10)).ttl == 30
    await cluster._stop_member(leader)
    cluster.members.remove(leader)
    await call.write(lease_pb2.LeaseKeepAliveRequest(id=g.id))
    resp = await asyncio.wait_for(call.read(), 15)
    assert resp.id == g.id and resp.ttl == 30
    new = await cluster.wait_leader()
    assert new is not leader
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_an_expiry_storm_has_one_entry_in_flight(cluster):
    """node.py ``_expiry_done``: 1,200 leases expiring together are revoked in several
    LeaseExpire entries (lease_timer.EXPIRE_CHUNK each), one at a time, so they never pile
    up ahead of clients' writes; all of them expire."""
    node = cluster.node
    propose_internal = node._propose_internal  # noqa: SLF001 - observing the expiry entries
    in_flight, most, entries = 0, 0, 0

    def observed(command):
        nonlocal in_flight, most, entries
        fut = propose_internal(command)
        if not command.HasField("lease_expire"):
            return fut
        # Each entry counts as in flight until 0.1 s after it applied: a slow cluster.
        slow = asyncio.get_running_loop().create_future()
        in_flight += 1
        entries += 1
        most = max(most, in_flight)

        def landed(_):
            def done():
                nonlocal in_flight
                in_flight -= 1
                slow.set_result(None)

            asyncio.get_running_loop().call_later(0.1, done)

        fut.add_done_callback(landed)
        return slow

    node._propose_internal = observed  # noqa: SLF001
    lease = cluster.lease()
    grants = []
    for _ in range(12):
        grants += await asyncio.gather(*(lease.Grant(lease_pb2.LeaseGrantRequest(ttl=1)) for _ in range(100)))

    async def all_gone() -> bool:
        listed = await lease.List(lease_pb2.LeaseListRequest())
        return not {g.id for g in grants} & {item.id for item in listed.leases}

    await eventually(all_gone, timeout=30, what="every lease to expire")
    assert entries >= 3, entries
    assert most == 1, f"{most} LeaseExpire entries were in flight at once"
