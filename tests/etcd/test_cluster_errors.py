"""etcd's errors for Cluster, Maintenance and Lease calls, asserted identically against
coord and real etcd 3.4 (the ``endpoint`` fixture): coord's etcd layer maps coord's own
errors onto etcd's (coord_server/etcd/errors.py), and these cases pin each mapping they
reach to what etcd really answers."""

from __future__ import annotations

import grpc
import pytest

from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.etcdserverpb import rpc_pb2_grpc as etcd_grpc
from tests.etcd.servers import Endpoint

UNKNOWN_ID = 0x1234_5678_9ABC


@pytest.fixture(scope="module")
def channel(endpoint: Endpoint) -> grpc.Channel:
    return grpc.insecure_channel(endpoint.grpc)


def status(call, request) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=20)
    return err.value.code(), err.value.details()


def test_member_errors(channel: grpc.Channel) -> None:
    cluster = etcd_grpc.ClusterStub(channel)
    (me,) = cluster.MemberList(etcd.MemberListRequest(), timeout=20).members
    not_found = (grpc.StatusCode.NOT_FOUND, "etcdserver: member not found")
    assert status(cluster.MemberRemove, etcd.MemberRemoveRequest(ID=UNKNOWN_ID)) == not_found
    assert status(cluster.MemberPromote, etcd.MemberPromoteRequest(ID=UNKNOWN_ID)) == not_found
    assert status(cluster.MemberPromote, etcd.MemberPromoteRequest(ID=me.ID)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: can only promote a learner member")
    assert status(cluster.MemberAdd, etcd.MemberAddRequest(peerURLs=["not a url"], isLearner=True)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: given member URLs are invalid")
    assert status(cluster.MemberAdd, etcd.MemberAddRequest(peerURLs=list(me.peerURLs), isLearner=True)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists")
    assert status(cluster.MemberUpdate, etcd.MemberUpdateRequest(ID=UNKNOWN_ID, peerURLs=["http://127.0.0.1:1"])) == not_found


def test_move_leader_errors(channel: grpc.Channel) -> None:
    maintenance = etcd_grpc.MaintenanceStub(channel)
    bad = (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: bad leader transferee")
    assert status(maintenance.MoveLeader, etcd.MoveLeaderRequest(targetID=0)) == bad
    assert status(maintenance.MoveLeader, etcd.MoveLeaderRequest(targetID=UNKNOWN_ID)) == bad


def test_lease_errors(channel: grpc.Channel) -> None:
    lease = etcd_grpc.LeaseStub(channel)
    granted = lease.LeaseGrant(etcd.LeaseGrantRequest(TTL=60), timeout=20)
    assert status(lease.LeaseGrant, etcd.LeaseGrantRequest(TTL=60, ID=granted.ID)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: lease already exists")
    assert status(lease.LeaseRevoke, etcd.LeaseRevokeRequest(ID=UNKNOWN_ID)) == (
        grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
    lease.LeaseRevoke(etcd.LeaseRevokeRequest(ID=granted.ID), timeout=20)


def test_request_too_large(channel: grpc.Channel) -> None:
    kv = etcd_grpc.KVStub(channel)
    big = etcd.PutRequest(key=b"big", value=b"x" * (1536 * 1024 + 1))
    assert status(kv.Put, big) == (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large")
