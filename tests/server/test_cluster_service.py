"""Cluster service on a one-member cluster: Status, MemberList, membership changes and
their errors, TransferLeadership's errors."""

from __future__ import annotations

import grpc

from coord.v1 import cluster_pb2, kv_pb2

from .helpers import expect_error

FAILED = grpc.StatusCode.FAILED_PRECONDITION
NOT_FOUND = grpc.StatusCode.NOT_FOUND


async def test_status(cluster):
    c = cluster.cluster()
    node = cluster.node
    await cluster.kv().Put(kv_pb2.PutRequest(key=b"a", value=b"1"))
    st = await c.Status(cluster_pb2.ClusterStatusRequest())
    assert st.role == cluster_pb2.RAFT_ROLE_LEADER and st.leader == node.id and not st.is_learner
    assert st.header.raft_term == node.core.term and st.header.revision == 2
    assert st.commit_index >= 3 and st.applied_index == st.commit_index
    assert st.log_first_index == 1 and st.log_last_index == st.commit_index
    assert st.log_entries == st.log_last_index - st.log_first_index + 1
    assert st.log_size_bytes > 0
    assert st.version
    assert st.snapshot_index == 0


async def test_member_list(cluster):
    c = cluster.cluster()
    m = cluster.members[0]
    for linearizable in (False, True):
        listing = await c.MemberList(cluster_pb2.ClusterMemberListRequest(linearizable=linearizable))
        assert [(x.id, x.name, x.peer_address, x.client_address, x.is_learner) for x in listing.members] == [
            (m.id, m.name, m.address, m.address, False)
        ]


async def test_member_add_promote_remove(cluster):
    c = cluster.cluster()
    me = cluster.members[0].id
    await expect_error(c.MemberAdd(cluster_pb2.ClusterMemberAddRequest(name="x", peer_address="")), grpc.StatusCode.INVALID_ARGUMENT)
    await expect_error(
        c.MemberAdd(cluster_pb2.ClusterMemberAddRequest(name="x", peer_address="nohost")), grpc.StatusCode.INVALID_ARGUMENT
    )
    await expect_error(
        c.MemberAdd(cluster_pb2.ClusterMemberAddRequest(name="x", peer_address="h:99999")), grpc.StatusCode.INVALID_ARGUMENT
    )
    await expect_error(
        c.MemberAdd(cluster_pb2.ClusterMemberAddRequest(name="x", peer_address="h:1", client_address="bad")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await expect_error(
        c.MemberAdd(cluster_pb2.ClusterMemberAddRequest(name="x", peer_address=cluster.members[0].address)), FAILED,
        "already used",
    )
    # a learner that will never answer (nothing listens on port 9 here)
    added = await c.MemberAdd(
        cluster_pb2.ClusterMemberAddRequest(name="ghost", peer_address="127.0.0.1:9", client_address="127.0.0.1:9")
    )
    new = added.member
    assert new.id not in (0, me) and new.id < 1 << 63 and new.is_learner and new.name == "ghost"
    assert sorted(x.id for x in added.members) == sorted([me, new.id])
    listing = await c.MemberList(cluster_pb2.ClusterMemberListRequest(linearizable=True))
    assert {x.id: x.is_learner for x in listing.members} == {me: False, new.id: True}

    await expect_error(c.MemberPromote(cluster_pb2.ClusterMemberPromoteRequest(id=new.id)), FAILED, "caught up")
    await expect_error(c.MemberPromote(cluster_pb2.ClusterMemberPromoteRequest(id=me)), FAILED, "already a voter")
    await expect_error(c.MemberPromote(cluster_pb2.ClusterMemberPromoteRequest(id=12345)), NOT_FOUND)
    await expect_error(c.TransferLeadership(cluster_pb2.ClusterTransferLeadershipRequest(target_id=new.id)), FAILED, "learner")

    removed = await c.MemberRemove(cluster_pb2.ClusterMemberRemoveRequest(id=new.id))
    assert [x.id for x in removed.members] == [me]
    await expect_error(c.MemberRemove(cluster_pb2.ClusterMemberRemoveRequest(id=new.id)), NOT_FOUND)
    await expect_error(c.MemberRemove(cluster_pb2.ClusterMemberRemoveRequest(id=me)), FAILED, "last voter")
    # the cluster still works
    assert (await cluster.kv().Put(kv_pb2.PutRequest(key=b"k", value=b"v"))).header.revision == 2


async def test_transfer_leadership_errors(cluster):
    c = cluster.cluster()
    me = cluster.members[0].id
    await expect_error(c.TransferLeadership(cluster_pb2.ClusterTransferLeadershipRequest(target_id=99)), NOT_FOUND)
    await expect_error(c.TransferLeadership(cluster_pb2.ClusterTransferLeadershipRequest(target_id=0)), FAILED, "no other voter")
    same = await c.TransferLeadership(cluster_pb2.ClusterTransferLeadershipRequest(target_id=me))
    assert same.leader == me
