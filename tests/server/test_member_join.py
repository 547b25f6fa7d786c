"""A real learner joins through MemberAdd, catches up from a snapshot (the leader's log is
compacted), is promoted through MemberPromote; a watch opened on it before it caught up
sees every revision exactly once across the snapshot install."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from coord.v1 import cluster_pb2, kv_pb2

from .conftest import eventually


@pytest.mark.cluster(snapshot_entries=20, snapshot_catchup_entries=5)
async def test_learner_joins_from_a_snapshot_and_is_promoted(cluster):
    leader = cluster.members[0]
    kv = leader.kv()
    revs = [(await kv.Put(kv_pb2.PutRequest(key=b"s/%d" % i, value=b"%d" % i))).header.revision for i in range(30)]
    st = await leader.cluster().Status(cluster_pb2.ClusterStatusRequest())
    assert st.snapshot_index > 0 and st.snapshot_term > 0 and st.snapshot_size_bytes > 0
    assert st.log_first_index > 1  # compacted: a newcomer needs the snapshot

    new = await cluster.add_member("joiner", start=False)
    # Watch on the newcomer while its state is still empty (revision 1) ...
    call = new.kv().Watch()
    await call.write(kv_pb2.WatchRequest(create_request=kv_pb2.WatchCreateRequest(key=b"s/", range_end=b"s0")))
    created = await asyncio.wait_for(call.read(), 10)
    assert created.created and created.header.revision == 1
    # ... then let it install the leader's snapshot and follow the log.
    await cluster.start_node(new)
    live = (await kv.Put(kv_pb2.PutRequest(key=b"s/live", value=b"!"))).header.revision
    seen: list[int] = []
    while len(seen) < len(revs) + 1:
        resp = await asyncio.wait_for(call.read(), 10)
        assert not resp.canceled, resp
        seen.extend(e.kv.mod_revision for e in resp.events)
    assert seen == revs + [live]
    assert new.storage.snapshot().meta.index > 0  # it did install a snapshot
    call.cancel()

    async def promoted() -> bool:
        try:
            await leader.cluster().MemberPromote(cluster_pb2.ClusterMemberPromoteRequest(id=new.id), timeout=5)
            return True
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
            return False

    await eventually(promoted, 15, "the learner to catch up and be promoted")
    listing = await new.cluster().MemberList(cluster_pb2.ClusterMemberListRequest(linearizable=True))
    assert {m.id: m.is_learner for m in listing.members} == {leader.id: False, new.id: False}
    # two voters now: writes need both, and still work
    put = await new.kv().Put(kv_pb2.PutRequest(key=b"after", value=b"x"))
    got = await new.kv().Range(kv_pb2.RangeRequest(key=b"after"))
    assert got.kvs[0].mod_revision == put.header.revision
