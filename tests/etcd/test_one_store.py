"""One store, two APIs: what is written, leased, watched or compacted through etcd's API
is the same object through coord.v1, and the other way round; and etcd's errors come
with etcd's code and exact message."""

from __future__ import annotations

import queue

import grpc
import pytest

from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.etcdserverpb import rpc_pb2_grpc as etcd_grpc
from coord.v1 import kv_pb2, kv_pb2_grpc, lease_pb2, lease_pb2_grpc
from tests.etcd.servers import Endpoint


@pytest.fixture(scope="module")
def channel(coord: Endpoint) -> grpc.Channel:
    return grpc.insecure_channel(coord.grpc)


def test_keys_written_through_either_api_read_the_same(channel: grpc.Channel) -> None:
    ekv, ckv = etcd_grpc.KVStub(channel), kv_pb2_grpc.KVStub(channel)
    put = ekv.Put(etcd.PutRequest(key=b"os/a", value=b"from-etcd"), timeout=10)
    ckv.Put(kv_pb2.PutRequest(key=b"os/b", value=b"from-coord"), timeout=10)
    via_etcd = ekv.Range(etcd.RangeRequest(key=b"os/", range_end=b"os0"), timeout=10)
    via_coord = ckv.Range(kv_pb2.RangeRequest(key=b"os/", range_end=b"os0"), timeout=10)
    assert [(kv.key, kv.value, kv.mod_revision) for kv in via_etcd.kvs] == [
        (kv.key, kv.value, kv.mod_revision) for kv in via_coord.kvs
    ]
    assert via_etcd.kvs[0].mod_revision == put.header.revision
    assert via_etcd.header.cluster_id == via_coord.header.cluster_id != 0
    assert via_etcd.header.member_id == via_coord.header.member_id != 0
    assert via_etcd.header.raft_term > 0


def test_a_lease_from_one_api_holds_keys_of_the_other(channel: grpc.Channel) -> None:
    lease = lease_pb2_grpc.LeaseStub(channel).Grant(lease_pb2.LeaseGrantRequest(ttl=60), timeout=10)
    ekv = etcd_grpc.KVStub(channel)
    ekv.Put(etcd.PutRequest(key=b"os/leased", value=b"x", lease=lease.id), timeout=10)
    ttl = etcd_grpc.LeaseStub(channel).LeaseTimeToLive(etcd.LeaseTimeToLiveRequest(ID=lease.id, keys=True), timeout=10)
    assert list(ttl.keys) == [b"os/leased"] and ttl.grantedTTL == 60
    etcd_grpc.LeaseStub(channel).LeaseRevoke(etcd.LeaseRevokeRequest(ID=lease.id), timeout=10)
    assert kv_pb2_grpc.KVStub(channel).Range(kv_pb2.RangeRequest(key=b"os/leased"), timeout=10).count == 0


def test_etcd_watch_sees_coord_writes(channel: grpc.Channel) -> None:

    requests: queue.Queue[etcd.WatchRequest | None] = queue.Queue()
    requests.put(etcd.WatchRequest(create_request=etcd.WatchCreateRequest(key=b"os/w", prev_kv=True)))

    def feed():  # type: ignore[no-untyped-def]
        while (item := requests.get()) is not None:
            yield item

    responses = etcd_grpc.WatchStub(channel).Watch(feed(), timeout=20)
    created = next(responses)
    assert created.created
    ckv = kv_pb2_grpc.KVStub(channel)
    ckv.Put(kv_pb2.PutRequest(key=b"os/w", value=b"1"), timeout=10)
    ckv.DeleteRange(kv_pb2.DeleteRangeRequest(key=b"os/w"), timeout=10)
    events = []
    while len(events) < 2:
        events.extend(next(responses).events)
    assert [e.type for e in events] == [0, 1]  # mvccpb PUT, DELETE
    assert events[1].prev_kv.value == b"1"
    requests.put(None)
    responses.cancel()


def test_a_large_revision_comes_in_fragments_when_asked(channel: grpc.Channel) -> None:
    kv = etcd_grpc.KVStub(channel)
    value = b"v" * 60_000
    for i in range(40):
        kv.Put(etcd.PutRequest(key=b"frag/%02d" % i, value=value), timeout=10)
    requests: queue.Queue[etcd.WatchRequest | None] = queue.Queue()
    requests.put(etcd.WatchRequest(create_request=etcd.WatchCreateRequest(
        key=b"frag/", range_end=b"frag0", prev_kv=True, fragment=True)))

    def feed():  # type: ignore[no-untyped-def]
        while (item := requests.get()) is not None:
            yield item

    responses = etcd_grpc.WatchStub(channel).Watch(feed(), timeout=20)
    assert next(responses).created
    kv.DeleteRange(etcd.DeleteRangeRequest(key=b"frag/", range_end=b"frag0"), timeout=10)
    parts = []
    while not parts or parts[-1].fragment:
        parts.append(next(responses))
    requests.put(None)
    responses.cancel()
    assert len(parts) >= 2 and all(p.fragment for p in parts[:-1])
    assert sum(len(p.events) for p in parts) == 40
    assert all(e.prev_kv.value == value for p in parts for e in p.events)


def test_reflection_lists_etcds_services(channel: grpc.Channel) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = {s.name for answer in answers for s in answer.list_services_response.service}
    assert {"etcdserverpb.KV", "etcdserverpb.Watch", "etcdserverpb.Lease", "v3lockpb.Lock",
            "v3electionpb.Election", "coord.v1.KV"} <= names


def _status(call, request):  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    return info.value.code(), info.value.details()


def test_errors_are_etcds(channel: grpc.Channel) -> None:
    kv, lease = etcd_grpc.KVStub(channel), etcd_grpc.LeaseStub(channel)
    invalid, out_of_range = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE
    assert _status(kv.Range, etcd.RangeRequest()) == (invalid, "etcdserver: key is not provided")
    assert _status(kv.Put, etcd.PutRequest(value=b"v")) == (invalid, "etcdserver: key is not provided")
    assert _status(kv.Put, etcd.PutRequest(key=b"e", value=b"v", ignore_value=True)) == (
        invalid, "etcdserver: value is provided")
    assert _status(kv.Put, etcd.PutRequest(key=b"e", lease=5, ignore_lease=True)) == (
        invalid, "etcdserver: lease is provided")
    assert _status(kv.Put, etcd.PutRequest(key=b"nope", ignore_value=True)) == (invalid, "etcdserver: key not found")
    too_many = etcd.TxnRequest(success=[etcd.RequestOp(request_put=etcd.PutRequest(key=b"k%d" % i)) for i in range(129)])
    assert _status(kv.Txn, too_many) == (invalid, "etcdserver: too many operations in txn request")
    duplicate = etcd.TxnRequest(success=[etcd.RequestOp(request_put=etcd.PutRequest(key=b"d")) for _ in range(2)])
    assert _status(kv.Txn, duplicate) == (invalid, "etcdserver: duplicate key given in txn request")
    current = kv.Put(etcd.PutRequest(key=b"e", value=b"v"), timeout=10).header.revision
    assert _status(kv.Range, etcd.RangeRequest(key=b"e", revision=current + 100)) == (
        out_of_range, "etcdserver: mvcc: required revision is a future revision")
    kv.Compact(etcd.CompactionRequest(revision=current), timeout=10)
    assert _status(kv.Range, etcd.RangeRequest(key=b"e", revision=current - 1)) == (
        out_of_range, "etcdserver: mvcc: required revision has been compacted")
    assert _status(kv.Compact, etcd.CompactionRequest(revision=current)) == (
        out_of_range, "etcdserver: mvcc: required revision has been compacted")
    # a Txn reading a negative revision after a compaction: its own checks come first, and
    # the state layer's refusal (a Code, not a grpc status) still becomes etcd's error
    duplicate_and_negative = etcd.TxnRequest(success=[
        *(etcd.RequestOp(request_put=etcd.PutRequest(key=b"d")) for _ in range(2)),
        etcd.RequestOp(request_range=etcd.RangeRequest(key=b"e", revision=-1)),
    ])
    assert _status(kv.Txn, duplicate_and_negative) == (invalid, "etcdserver: duplicate key given in txn request")
    assert _status(kv.Put, etcd.PutRequest(key=b"e", lease=424242)) == (
        grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
    assert _status(lease.LeaseRevoke, etcd.LeaseRevokeRequest(ID=424242)) == (
        grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
    assert _status(lease.LeaseGrant, etcd.LeaseGrantRequest(TTL=9_000_000_001)) == (
        out_of_range, "etcdserver: too large lease TTL")
    ttl = lease.LeaseTimeToLive(etcd.LeaseTimeToLiveRequest(ID=424242), timeout=10)
    assert ttl.TTL == -1 and ttl.ID == 424242
