"""coord_server/etcd/txn_counts.py: the count-only ranges that give a filtered range
inside a Txn etcd's count (before the filters), and the fallback at coord's limit."""

from __future__ import annotations

from coord.v1 import kv_pb2
from coord_server.etcd import txn_counts
from coord_server.state.limits import MAX_TXN_OPS


def ranged(key: bytes, **filters: int) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=key, range_end=key + b"\xff", **filters))


def put(key: bytes) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=key))


def test_a_txn_without_filtered_ranges_is_sent_as_it_is() -> None:
    assert txn_counts.with_counts(kv_pb2.TxnRequest(success=[put(b"a"), ranged(b"a")])) is None


def test_each_filtered_range_gets_a_count_and_gives_it_back() -> None:
    nested = kv_pb2.TxnRequest(success=[ranged(b"n", max_create_revision=3)])
    req = kv_pb2.TxnRequest(
        success=[put(b"a"), ranged(b"a", min_mod_revision=5), kv_pb2.RequestOp(request_txn=nested)],
        failure=[ranged(b"f", max_mod_revision=2)],
    )
    sent = txn_counts.with_counts(req)
    assert sent is not None
    assert [op.WhichOneof("request") for op in sent.success] == ["request_put", "request_range", "request_range", "request_txn"]
    added = sent.success[2].request_range
    assert (added.key, added.count_only, added.min_mod_revision) == (b"a", True, 0)
    assert len(sent.success[3].request_txn.success) == 2 and len(sent.failure) == 2

    def rr(count: int) -> kv_pb2.ResponseOp:
        return kv_pb2.ResponseOp(response_range=kv_pb2.RangeResponse(count=count))

    inner = kv_pb2.TxnResponse(succeeded=True, responses=[rr(1), rr(4)])
    response = kv_pb2.TxnResponse(succeeded=True, responses=[
        kv_pb2.ResponseOp(response_put=kv_pb2.PutResponse()), rr(1), rr(7), kv_pb2.ResponseOp(response_txn=inner),
    ])
    txn_counts.take_counts(sent, response)
    assert [r.WhichOneof("response") for r in response.responses] == ["response_put", "response_range", "response_txn"]
    assert response.responses[1].response_range.count == 7
    assert [r.response_range.count for r in response.responses[2].response_txn.responses] == [4]


def test_over_coords_limit_the_txn_is_sent_as_it_is() -> None:
    req = kv_pb2.TxnRequest(success=[ranged(b"k%d" % i, min_mod_revision=1) for i in range(MAX_TXN_OPS // 2 + 1)])
    assert txn_counts.with_counts(req) is None
