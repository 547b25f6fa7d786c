"""Three in-process members: a client that knows any member is served. Writes, leases and
watches through followers; membership changes answered UNAVAILABLE with `coord-leader`;
leadership transfer; removing the leader."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from coord.v1 import cluster_pb2, kv_pb2, lease_pb2
from coord_server.errors import Code

from .conftest import eventually
from .helpers import expect_error, session, trailing

pytestmark = pytest.mark.cluster(size=3)


async def test_writes_and_reads_through_a_follower(cluster):
    leader = cluster.leader()
    follower = cluster.followers()[0]
    kv = follower.kv()
    put = await kv.Put(kv_pb2.PutRequest(key=b"f", value=b"1"))
    assert put.header.member_id == follower.id  # the answering member
    got = await kv.Range(kv_pb2.RangeRequest(key=b"f"))  # linearizable on a follower
    assert got.kvs[0].value == b"1" and got.header.revision == put.header.revision
    txn = await kv.Txn(kv_pb2.TxnRequest(success=[kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=b"g", value=b"2"))]))
    assert txn.succeeded and txn.responses[0].response_put.header.member_id == follower.id
    # exactly-once across members: a retry at the leader gets the first answer
    req = kv_pb2.PutRequest(key=b"once", value=b"x")
    first = await kv.Put(req, metadata=session("fc", 1))
    retry = await leader.kv().Put(req, metadata=session("fc", 1))
    assert first.header.revision == retry.header.revision
    assert (await leader.kv().Range(kv_pb2.RangeRequest(key=b"once"))).kvs[0].version == 1
    # domain errors come back through the forward with their code
    await expect_error(kv.Put(kv_pb2.PutRequest(key=b"k", lease=999)), grpc.StatusCode.NOT_FOUND)
    await expect_error(kv.Compact(kv_pb2.CompactRequest(revision=10_000)), grpc.StatusCode.OUT_OF_RANGE)


async def test_leases_through_a_follower(cluster):
    follower = cluster.followers()[0]
    lease = follower.lease()
    g = await lease.Grant(lease_pb2.LeaseGrantRequest(ttl=30))
    call = lease.KeepAlive()
    for lease_id, ttl in ((g.id, 30), (777, 0), (g.id, 30)):
        await call.write(lease_pb2.LeaseKeepAliveRequest(id=lease_id))
        resp = await asyncio.wait_for(call.read(), 10)
        assert (resp.id, resp.ttl) == (lease_id, ttl)
        assert resp.header.member_id == follower.id
    call.cancel()
    ttl = await lease.TimeToLive(lease_pb2.LeaseTimeToLiveRequest(id=g.id))
    assert ttl.granted_ttl == 30 and 28 <= ttl.ttl <= 30 and ttl.header.member_id == follower.id
    await expect_error(lease.TimeToLive(lease_pb2.LeaseTimeToLiveRequest(id=777)), grpc.StatusCode.NOT_FOUND)
    listed = await lease.List(lease_pb2.LeaseListRequest())
    assert [x.id for x in listed.leases] == [g.id]
    await lease.Revoke(lease_pb2.LeaseRevokeRequest(id=g.id))


async def test_watch_on_a_follower(cluster):
    leader = cluster.leader()
    follower = cluster.followers()[0]
    call = follower.kv().Watch()
    await call.write(kv_pb2.WatchRequest(create_request=kv_pb2.WatchCreateRequest(key=b"w", prev_kv=True)))
    created = await asyncio.wait_for(call.read(), 10)
    assert created.created and created.header.member_id == follower.id
    r1 = (await leader.kv().Put(kv_pb2.PutRequest(key=b"w", value=b"1"))).header.revision
    r2 = (await leader.kv().Put(kv_pb2.PutRequest(key=b"w", value=b"2"))).header.revision
    events = []
    while len(events) < 2:
        events.extend((await asyncio.wait_for(call.read(), 10)).events)
    assert [(e.kv.mod_revision, e.prev_kv.value) for e in events] == [(r1, b""), (r2, b"1")]
    call.cancel()


async def test_membership_changes_on_a_follower_name_the_leader(cluster):
    leader = cluster.leader()
    follower = cluster.followers()[0]
    c = follower.cluster()
    for call in (
        c.MemberAdd(cluster_pb2.ClusterMemberAddRequest(name="n", peer_address="127.0.0.1:9")),
        c.MemberPromote(cluster_pb2.ClusterMemberPromoteRequest(id=follower.id)),
        c.MemberRemove(cluster_pb2.ClusterMemberRemoveRequest(id=follower.id)),
    ):
        err = await expect_error(call, grpc.StatusCode.UNAVAILABLE)
        assert trailing(err, "coord-leader") == leader.address
    st = await c.Status(cluster_pb2.ClusterStatusRequest())
    assert st.role == cluster_pb2.RAFT_ROLE_FOLLOWER and st.leader == leader.id
    listing = await c.MemberList(cluster_pb2.ClusterMemberListRequest(linearizable=True))
    assert sorted(m.id for m in listing.members) == sorted(m.id for m in cluster.members)


async def test_transfer_leadership_through_a_follower(cluster):
    old = cluster.leader()
    asker, target = cluster.followers()
    resp = await asker.cluster().TransferLeadership(
        cluster_pb2.ClusterTransferLeadershipRequest(target_id=target.id), timeout=10
    )
    assert resp.leader == target.id
    assert (await cluster.wait_leader()).id == target.id
    # and back, choosing automatically, asked at the leader
    back = await target.cluster().TransferLeadership(cluster_pb2.ClusterTransferLeadershipRequest(), timeout=10)
    assert back.leader in (old.id, asker.id)
    assert (await cluster.wait_leader()).id == back.leader
    assert (await cluster.kv().Put(kv_pb2.PutRequest(key=b"after", value=b"x"))).header.revision >= 2


async def test_removing_the_leader_hands_over_first(cluster):
    old = cluster.leader()
    resp = await old.cluster().MemberRemove(cluster_pb2.ClusterMemberRemoveRequest(id=old.id), timeout=15)
    assert old.id not in [m.id for m in resp.members] and len(resp.members) == 2
    rest = [m for m in cluster.members if m is not old]

    def new_leader():
        leaders = [m for m in rest if m.node.is_leader]
        return leaders[0] if leaders else None

    leader = await eventually(new_leader, 10, "a leader among the remaining members")
    put = await leader.kv().Put(kv_pb2.PutRequest(key=b"k", value=b"v"))
    assert put.header.member_id == leader.id


async def test_forwarded_writes_share_one_stream_answered_by_id(cluster):
    leader = cluster.leader()
    follower = cluster.followers()[0]
    kv = follower.kv()
    puts = [kv.Put(kv_pb2.PutRequest(key=b"s%d" % i, value=b"%d" % i)) for i in range(200)]
    answers = await asyncio.gather(*puts)
    revisions = [a.header.revision for a in answers]
    assert len(set(revisions)) == 200  # each answer is its own write's
    for i in (0, 77, 199):
        got = await leader.kv().Range(kv_pb2.RangeRequest(key=b"s%d" % i))
        assert got.kvs[0].value == b"%d" % i and got.kvs[0].mod_revision == revisions[i]
    link = follower.node.transport._peers[leader.id].forwards
    first_call = link.call
    assert first_call is not None
    await kv.Put(kv_pb2.PutRequest(key=b"again", value=b"x"))
    assert link.call is first_call, "one long-lived stream, not a call per request"


async def test_a_broken_forwarding_stream_fails_its_requests_and_reopens(cluster):
    leader = cluster.leader()
    follower = cluster.followers()[0]
    kv = follower.kv()
    await kv.Put(kv_pb2.PutRequest(key=b"warm", value=b"x"))
    link = follower.node.transport._peers[leader.id].forwards
    pending = asyncio.get_running_loop().create_future()
    link.pending[10**9] = pending  # stands for a request in flight
    link.call.cancel()  # the stream breaks
    with pytest.raises(Exception) as failed:
        await asyncio.wait_for(pending, 10)
    assert getattr(failed.value, "code", None) == Code.UNAVAILABLE
    put = await kv.Put(kv_pb2.PutRequest(key=b"after", value=b"y"))  # a new stream
    assert put.header.revision > 0


async def test_forward_from_another_cluster_is_refused(cluster):
    from coord.raft.v1 import raft_pb2, raft_pb2_grpc

    leader = cluster.leader()
    stub = raft_pb2_grpc.RaftStub(leader._channel())
    call = stub.Forward()
    await call.write(raft_pb2.ForwardRequest(cluster_id=leader.node.transport.cluster_id + 1, kind=1, payload=b"", id=1))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in call:
            pass
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await leader.kv().Put(kv_pb2.PutRequest(key=b"still", value=b"ok"))).header.revision > 0
