"""KV service over a real gRPC channel to an in-process one-member cluster: every RPC's
happy path and every error code kv.proto and common.proto promise."""

from __future__ import annotations

import grpc

from coord.v1 import kv_pb2

from .helpers import expect_error, session

INVALID = grpc.StatusCode.INVALID_ARGUMENT
OUT_OF_RANGE = grpc.StatusCode.OUT_OF_RANGE


async def test_put_and_range_with_header(cluster):
    kv = cluster.kv()
    node = cluster.node
    put = await kv.Put(kv_pb2.PutRequest(key=b"a", value=b"1"))
    h = put.header
    assert (h.cluster_id, h.member_id, h.raft_term) == (node.config.cluster_id, node.id, node.core.term)
    assert h.revision == 2  # the empty store is at revision 1

    got = await kv.Range(kv_pb2.RangeRequest(key=b"a"))
    assert got.header.member_id == node.id and got.header.revision == 2
    assert [(x.key, x.value, x.version, x.create_revision, x.mod_revision) for x in got.kvs] == [(b"a", b"1", 1, 2, 2)]
    assert got.count == 1 and not got.more

    second = await kv.Put(kv_pb2.PutRequest(key=b"a", value=b"2", prev_kv=True))
    assert second.header.revision == 3
    assert second.prev_kv.value == b"1" and second.prev_kv.version == 1


async def test_range_options(cluster):
    kv = cluster.kv()
    for k, v in [(b"k1", b"c"), (b"k2", b"b"), (b"k3", b"a"), (b"z", b"zz")]:
        await kv.Put(kv_pb2.PutRequest(key=k, value=v))
    prefix = await kv.Range(kv_pb2.RangeRequest(key=b"k", range_end=b"l"))
    assert [x.key for x in prefix.kvs] == [b"k1", b"k2", b"k3"]
    everything = await kv.Range(kv_pb2.RangeRequest(key=b"\0", range_end=b"\0"))
    assert everything.count == 4
    from_k2 = await kv.Range(kv_pb2.RangeRequest(key=b"k2", range_end=b"\0"))
    assert [x.key for x in from_k2.kvs] == [b"k2", b"k3", b"z"]
    limited = await kv.Range(kv_pb2.RangeRequest(key=b"k", range_end=b"l", limit=2))
    assert len(limited.kvs) == 2 and limited.more and limited.count == 3
    counted = await kv.Range(kv_pb2.RangeRequest(key=b"k", range_end=b"l", count_only=True))
    assert counted.count == 3 and not counted.kvs
    keys_only = await kv.Range(kv_pb2.RangeRequest(key=b"k", range_end=b"l", keys_only=True))
    assert all(x.value == b"" for x in keys_only.kvs)
    by_value = await kv.Range(
        kv_pb2.RangeRequest(
            key=b"k", range_end=b"l", sort_order=kv_pb2.SORT_ORDER_ASCEND, sort_target=kv_pb2.SORT_TARGET_VALUE
        )
    )
    assert [x.key for x in by_value.kvs] == [b"k3", b"k2", b"k1"]
    stale_ok = await kv.Range(kv_pb2.RangeRequest(key=b"z", serializable=True))
    assert stale_ok.kvs[0].value == b"zz"
    past = await kv.Range(kv_pb2.RangeRequest(key=b"k", range_end=b"l", revision=3))
    assert [x.key for x in past.kvs] == [b"k1", b"k2"]


async def test_range_errors(cluster):
    kv = cluster.kv()
    await kv.Put(kv_pb2.PutRequest(key=b"a", value=b"1"))
    await expect_error(kv.Range(kv_pb2.RangeRequest(key=b"")), INVALID, "empty")
    await expect_error(kv.Range(kv_pb2.RangeRequest(key=b"x" * 4097)), INVALID, "4096")
    await expect_error(kv.Range(kv_pb2.RangeRequest(key=b"a", range_end=b"x" * 4097)), INVALID)
    await expect_error(kv.Range(kv_pb2.RangeRequest(key=b"a", sort_order=7)), INVALID, "sort_order")
    await expect_error(kv.Range(kv_pb2.RangeRequest(key=b"a", sort_target=9)), INVALID, "sort_target")
    await expect_error(kv.Range(kv_pb2.RangeRequest(key=b"a", limit=-1)), INVALID)
    await expect_error(kv.Range(kv_pb2.RangeRequest(key=b"a", revision=99)), OUT_OF_RANGE, "future")
    # a 4096-byte key is fine
    await kv.Range(kv_pb2.RangeRequest(key=b"x" * 4096))


async def test_put_errors(cluster):
    kv = cluster.kv()
    await expect_error(kv.Put(kv_pb2.PutRequest(key=b"", value=b"1")), INVALID)
    await expect_error(kv.Put(kv_pb2.PutRequest(key=b"k" * 4097, value=b"1")), INVALID)
    await expect_error(kv.Put(kv_pb2.PutRequest(key=b"missing", ignore_value=True)), INVALID)
    await expect_error(kv.Put(kv_pb2.PutRequest(key=b"missing", value=b"v", ignore_lease=True)), INVALID)
    await expect_error(kv.Put(kv_pb2.PutRequest(key=b"k", value=b"v", ignore_value=True)), INVALID)
    await expect_error(kv.Put(kv_pb2.PutRequest(key=b"k", value=b"v", lease=12345)), grpc.StatusCode.NOT_FOUND)
    # nothing above reached the store
    got = await kv.Range(kv_pb2.RangeRequest(key=b"\0", range_end=b"\0"))
    assert got.count == 0 and got.header.revision == 1


async def test_request_size_limit(cluster):
    kv = cluster.kv()
    limit = 3 * 512 * 1024
    err = await expect_error(
        kv.Put(kv_pb2.PutRequest(key=b"big", value=b"x" * (limit + 1))), grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert "limit" in err.details()
    txn = kv_pb2.TxnRequest(
        success=[kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=b"t%d" % i, value=b"y" * 400_000)) for i in range(4)]
    )
    await expect_error(kv.Txn(txn), grpc.StatusCode.RESOURCE_EXHAUSTED)
    # just under the limit is accepted
    ok = await kv.Put(kv_pb2.PutRequest(key=b"big", value=b"x" * (limit - 100)))
    assert ok.header.revision == 2


async def test_delete_range(cluster):
    kv = cluster.kv()
    for k in (b"p/1", b"p/2", b"q"):
        await kv.Put(kv_pb2.PutRequest(key=k, value=b"v" + k))
    gone = await kv.DeleteRange(kv_pb2.DeleteRangeRequest(key=b"p/", range_end=b"p0", prev_kv=True))
    assert gone.deleted == 2 and gone.header.revision == 5
    assert sorted(x.key for x in gone.prev_kvs) == [b"p/1", b"p/2"]
    nothing = await kv.DeleteRange(kv_pb2.DeleteRangeRequest(key=b"nope"))
    assert nothing.deleted == 0 and nothing.header.revision == 5
    await expect_error(kv.DeleteRange(kv_pb2.DeleteRangeRequest(key=b"")), INVALID)
    await expect_error(kv.DeleteRange(kv_pb2.DeleteRangeRequest(key=b"k" * 5000)), INVALID)


def _put_op(k: bytes, v: bytes) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=k, value=v))


async def test_txn(cluster):
    kv = cluster.kv()
    node = cluster.node
    await kv.Put(kv_pb2.PutRequest(key=b"x", value=b"1"))
    cmp = kv_pb2.Compare(
        result=kv_pb2.COMPARE_RESULT_EQUAL, target=kv_pb2.COMPARE_TARGET_VALUE, key=b"x", value=b"1"
    )
    txn = kv_pb2.TxnRequest(
        compare=[cmp],
        success=[
            _put_op(b"y", b"2"),
            kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=b"x")),
            kv_pb2.RequestOp(request_txn=kv_pb2.TxnRequest(success=[_put_op(b"z", b"3")])),
        ],
        failure=[_put_op(b"never", b"!")],
    )
    resp = await kv.Txn(txn)
    assert resp.succeeded and resp.header.revision == 3
    assert len(resp.responses) == 3
    # nested headers carry the member's identity too
    for op in resp.responses:
        inner = getattr(op, op.WhichOneof("response"))
        assert inner.header.member_id == node.id and inner.header.cluster_id == node.config.cluster_id
    assert resp.responses[1].response_range.kvs[0].value == b"1"
    assert resp.responses[2].response_txn.responses[0].response_put.header.member_id == node.id
    again = await kv.Txn(txn)  # x still 1: succeeds again
    assert again.succeeded
    cmp_fail = kv_pb2.Compare(
        result=kv_pb2.COMPARE_RESULT_GREATER, target=kv_pb2.COMPARE_TARGET_VERSION, key=b"x", version=5
    )
    failed = await kv.Txn(kv_pb2.TxnRequest(compare=[cmp_fail], success=[_put_op(b"s", b"1")]))
    assert not failed.succeeded and failed.header.revision == 4  # nothing written


async def test_txn_errors(cluster):
    kv = cluster.kv()
    too_many = kv_pb2.TxnRequest(success=[_put_op(b"k%d" % i, b"v") for i in range(129)])
    await expect_error(kv.Txn(too_many), INVALID, "128")
    ok = kv_pb2.TxnRequest(success=[_put_op(b"k%d" % i, b"v") for i in range(128)])
    assert (await kv.Txn(ok)).succeeded
    twice = kv_pb2.TxnRequest(success=[_put_op(b"dup", b"1"), _put_op(b"dup", b"2")])
    await expect_error(kv.Txn(twice), INVALID, "more than once")
    unspecified = kv_pb2.TxnRequest(compare=[kv_pb2.Compare(key=b"a", target=kv_pb2.COMPARE_TARGET_VERSION, version=1)])
    await expect_error(kv.Txn(unspecified), INVALID)
    no_target = kv_pb2.TxnRequest(compare=[kv_pb2.Compare(key=b"a", result=kv_pb2.COMPARE_RESULT_EQUAL)])
    await expect_error(kv.Txn(no_target), INVALID)
    empty_key = kv_pb2.TxnRequest(success=[_put_op(b"", b"1")])
    await expect_error(kv.Txn(empty_key), INVALID)
    bad_lease = kv_pb2.TxnRequest(success=[kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=b"l", lease=777))])
    await expect_error(kv.Txn(bad_lease), grpc.StatusCode.NOT_FOUND)
    future = kv_pb2.TxnRequest(success=[kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=b"a", revision=1000))])
    await expect_error(kv.Txn(future), OUT_OF_RANGE)


async def test_compact(cluster):
    kv = cluster.kv()
    for i in range(5):
        await kv.Put(kv_pb2.PutRequest(key=b"c", value=b"%d" % i))  # revisions 2..6
    await kv.Compact(kv_pb2.CompactRequest(revision=4))
    await expect_error(kv.Range(kv_pb2.RangeRequest(key=b"c", revision=3)), OUT_OF_RANGE, "compacted")
    at4 = await kv.Range(kv_pb2.RangeRequest(key=b"c", revision=4))
    assert at4.kvs[0].value == b"2"
    await expect_error(kv.Compact(kv_pb2.CompactRequest(revision=4)), OUT_OF_RANGE)
    await expect_error(kv.Compact(kv_pb2.CompactRequest(revision=3)), OUT_OF_RANGE)
    await expect_error(kv.Compact(kv_pb2.CompactRequest(revision=100)), OUT_OF_RANGE)
    await expect_error(kv.Compact(kv_pb2.CompactRequest(revision=0)), OUT_OF_RANGE)
    physical = await kv.Compact(kv_pb2.CompactRequest(revision=6, physical=True))
    assert physical.header.revision == 6
    current = await kv.Range(kv_pb2.RangeRequest(key=b"c"))
    assert current.kvs[0].value == b"4"


async def test_exactly_once(cluster):
    kv = cluster.kv()
    req = kv_pb2.PutRequest(key=b"once", value=b"v", prev_kv=True)
    first = await kv.Put(req, metadata=session("client-1", 1))
    retry = await kv.Put(req, metadata=session("client-1", 1))
    assert first.header.revision == retry.header.revision == 2
    assert retry == first
    got = await kv.Range(kv_pb2.RangeRequest(key=b"once"))
    assert got.kvs[0].version == 1 and got.header.revision == 2  # applied once
    nxt = await kv.Put(req, metadata=session("client-1", 2))
    assert nxt.header.revision == 3 and nxt.prev_kv.value == b"v"
    await expect_error(kv.Put(req, metadata=session("client-1", 1)), grpc.StatusCode.FAILED_PRECONDITION)
    # a refused command is remembered like any other result
    bad = kv_pb2.PutRequest(key=b"x", lease=4242)
    await expect_error(kv.Put(bad, metadata=session("client-2", 7)), grpc.StatusCode.NOT_FOUND)
    await expect_error(kv.Put(bad, metadata=session("client-2", 7)), grpc.StatusCode.NOT_FOUND)
    # another client, and calls without metadata, are independent
    other = await kv.Put(req, metadata=session("client-3", 1))
    assert other.header.revision == 4
    plain = await kv.Put(req)
    assert plain.header.revision == 5
    # a Txn and a DeleteRange retry too
    dr = kv_pb2.DeleteRangeRequest(key=b"once")
    d1 = await kv.DeleteRange(dr, metadata=session("client-1", 3))
    d2 = await kv.DeleteRange(dr, metadata=session("client-1", 3))
    assert d1.deleted == d2.deleted == 1 and d1.header.revision == d2.header.revision


async def test_session_metadata_errors(cluster):
    kv = cluster.kv()
    req = kv_pb2.PutRequest(key=b"k", value=b"v")
    await expect_error(kv.Put(req, metadata=(("coord-client-id", "c"), ("coord-seq", "-1"))), INVALID, "coord-seq")
    await expect_error(kv.Put(req, metadata=(("coord-client-id", "c"), ("coord-seq", "abc"))), INVALID)
    await expect_error(kv.Put(req, metadata=(("coord-client-id", "c"), ("coord-seq", str(1 << 64)))), INVALID)
    await expect_error(kv.Put(req, metadata=(("coord-client-id", "c"),)), INVALID)
    await expect_error(kv.Put(req, metadata=session("c" * 129, 1)), INVALID, "128")
    ok = await kv.Put(req, metadata=session("c" * 128, (1 << 64) - 1))
    assert ok.header.revision == 2
