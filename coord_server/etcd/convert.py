"""Conversions between etcd's messages and coord.v1's.

Most KV messages have the same field numbers in both APIs (coord's kv.proto was modelled
on etcd's), so they convert through their bytes. What differs is spelled out here: enum
values (coord's zero is UNSPECIFIED, etcd's is a real value), Compare's range_end (field
64 in etcd, 10 in coord), and the Event type.
"""

from __future__ import annotations

from typing import Any, TypeVar

from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.mvccpb import kv_pb2 as mvcc
from coord.v1 import common_pb2, kv_pb2

from .gosort import go_sort

M = TypeVar("M")


def recode(message: Any, cls: type[M]) -> M:
    """``message`` as ``cls``, field by field number (the two must be wire compatible)."""
    return cls.FromString(message.SerializeToString())  # type: ignore[attr-defined, no-any-return]


# ------------------------------------------------------------------ requests to coord

_NONE, _KEY = etcd.RangeRequest.NONE, etcd.RangeRequest.KEY


def limits_before_sorting(req: etcd.RangeRequest) -> bool:
    """etcd's quirk: with no sort order, a non-key target and no revision filters, it
    cuts the range at limit+1 keys in key order first, then sorts those by the target."""
    return (
        req.sort_order == _NONE and req.sort_target != _KEY and req.limit > 0
        and not (req.min_mod_revision or req.max_mod_revision or req.min_create_revision or req.max_create_revision)
    )


_TARGET_FIELD = {1: "version", 2: "create_revision", 3: "mod_revision", 4: "value"}


def range_request(req: etcd.RangeRequest) -> kv_pb2.RangeRequest:
    """coord sorts by key (keys are unique: any algorithm gives etcd's order); by another
    target, finish_range sorts as etcd does, so coord is asked for the keys in key order:
    all of them, or the first limit+1 (limits_before_sorting)."""
    out = recode(req, kv_pb2.RangeRequest)
    order, target = req.sort_order, req.sort_target
    if target != _KEY:
        out.sort_order = kv_pb2.SORT_ORDER_UNSPECIFIED
        out.sort_target = kv_pb2.SORT_TARGET_UNSPECIFIED
        out.limit = req.limit + 1 if limits_before_sorting(req) else 0
        if target == etcd.RangeRequest.VALUE:
            out.keys_only = False  # sorted by value first; finish_range drops the values
    elif order == _NONE:
        out.sort_order = kv_pb2.SORT_ORDER_UNSPECIFIED
        out.sort_target = kv_pb2.SORT_TARGET_UNSPECIFIED
    else:
        out.sort_order = kv_pb2.SortOrder.ValueType(order)
        out.sort_target = kv_pb2.SORT_TARGET_KEY
    return out


def finish_range(req: etcd.RangeRequest, resp: kv_pb2.RangeResponse) -> None:
    """The answer to ``req`` as etcd gives it, from coord's answer to ``range_request``:
    sorted by a non-key target with Go's sort.Sort (gosort.py; descending through its
    Reverse), then cut at the limit."""
    if req.sort_target != _KEY and resp.kvs:
        field = _TARGET_FIELD[req.sort_target]
        kvs = list(resp.kvs)
        if req.sort_order == etcd.RangeRequest.DESCEND:
            go_sort(kvs, lambda x, y: getattr(y, field) < getattr(x, field))
        else:
            go_sort(kvs, lambda x, y: getattr(x, field) < getattr(y, field))
        resp.more = bool(req.limit) and len(kvs) > req.limit
        if resp.more:
            kvs = kvs[: req.limit]
        copies = [common_pb2.KeyValue() for _ in kvs]
        for copy, kv in zip(copies, kvs):
            copy.CopyFrom(kv)
        del resp.kvs[:]
        resp.kvs.extend(copies)
        if req.keys_only:
            for kv in resp.kvs:
                kv.value = b""
    if req.count_only:
        resp.more = False  # etcd: more only when kvs were cut by the limit


_COMPARE_UNION = ("version", "create_revision", "mod_revision", "value", "lease")


def compare(c: etcd.Compare) -> kv_pb2.Compare:
    out = kv_pb2.Compare(
        result=kv_pb2.CompareResult.ValueType(c.result + 1), target=kv_pb2.CompareTarget.ValueType(c.target + 1),
        key=c.key, range_end=c.range_end,
    )
    union = _COMPARE_UNION[c.target] if 0 <= c.target < len(_COMPARE_UNION) else ""
    # etcd reads the member its target names, set or not (0 or empty when absent).
    if union:
        setattr(out, union, getattr(c, union))
    return out


def request_op(op: etcd.RequestOp) -> kv_pb2.RequestOp:
    which = op.WhichOneof("request")
    if which == "request_range":
        return kv_pb2.RequestOp(request_range=range_request(op.request_range))
    if which == "request_put":
        return kv_pb2.RequestOp(request_put=recode(op.request_put, kv_pb2.PutRequest))
    if which == "request_delete_range":
        return kv_pb2.RequestOp(request_delete_range=recode(op.request_delete_range, kv_pb2.DeleteRangeRequest))
    if which == "request_txn":
        return kv_pb2.RequestOp(request_txn=txn_request(op.request_txn))
    return kv_pb2.RequestOp()


def txn_request(req: etcd.TxnRequest) -> kv_pb2.TxnRequest:
    return kv_pb2.TxnRequest(
        compare=[compare(c) for c in req.compare],
        success=[request_op(o) for o in req.success],
        failure=[request_op(o) for o in req.failure],
    )


# ------------------------------------------------------------------ results to etcd

def event(e: common_pb2.Event) -> mvcc.Event:
    out = recode(e, mvcc.Event)
    out.type = mvcc.Event.DELETE if e.type == common_pb2.EVENT_TYPE_DELETE else mvcc.Event.PUT
    return out


def header(h: common_pb2.ResponseHeader) -> etcd.ResponseHeader:
    return etcd.ResponseHeader(cluster_id=h.cluster_id, member_id=h.member_id, revision=h.revision, raft_term=h.raft_term)
