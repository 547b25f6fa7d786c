"""Range reads: selecting, filtering, sorting and cutting keys as RangeRequest asks.

Rule 1: a read never changes the store. It sees either a committed revision or, inside a
        Txn, the latest state with the transaction's own writes (``rev`` None).
Rule 2: results come in ascending key order unless sort_order is set (kv.proto: the
        target only matters with an order; this differs from etcd, which sorts by a
        non-key target ascending even without an order). Sorting is stable, so equal sort
        values keep key order, and the answer is the same on every member.
Rule 3: count is taken after the revision filters and before limit; more tells whether
        count exceeds the limit. Only the pairs returned are turned into messages.
Rule 4: a count of the latest state without filters comes from the key index
        (MVCCStore.count), not a scan: counting a million keys costs two bisections.
"""

from __future__ import annotations

from coord.v1 import common_pb2, kv_pb2

from . import keys
from .kv import CREATE, MOD, VALUE, VERSION, MVCCStore, Record, to_kv

_SORT_FIELD = {
    kv_pb2.SORT_TARGET_VERSION: VERSION,
    kv_pb2.SORT_TARGET_CREATE_REVISION: CREATE,
    kv_pb2.SORT_TARGET_MOD_REVISION: MOD,
    kv_pb2.SORT_TARGET_VALUE: VALUE,
}


def read_range(
    store: MVCCStore, req: kv_pb2.RangeRequest, rev: int | None, indexed: bool = True
) -> kv_pb2.RangeResponse:
    """Answer ``req`` as of ``rev`` (None: the latest state); the caller validated ``req``
    and checked ``rev`` against the readable window. The header is left to the caller.
    ``indexed``: whether the key index is up to date (not inside a Txn that wrote)."""
    if req.count_only and rev is None and indexed and not (
        req.min_mod_revision or req.max_mod_revision or req.min_create_revision or req.max_create_revision
    ):
        count = store.count(keys.span(req.key, req.range_end))
        if count is not None:  # Rule 4
            return kv_pb2.RangeResponse(count=count, more=bool(req.limit and count > req.limit))
    items = store.scan(keys.span(req.key, req.range_end), rev)
    items = _filter(items, req)
    count = len(items)
    resp = kv_pb2.RangeResponse(count=count)
    limit = req.limit
    if limit and count > limit:
        resp.more = True
    if req.count_only or not items:
        return resp
    order = req.sort_order
    if order != kv_pb2.SORT_ORDER_UNSPECIFIED:
        field = _SORT_FIELD.get(req.sort_target)
        descend = order == kv_pb2.SORT_ORDER_DESCEND
        if field is None:  # by key: items are in ascending key order already
            if descend:
                items.reverse()
        else:
            items.sort(key=lambda item: item[1][field], reverse=descend)
    if limit and count > limit:
        items = items[:limit]
    if req.keys_only:
        resp.kvs.extend(_keys_only(k, rec) for k, rec in items)
    else:
        resp.kvs.extend(to_kv(k, rec) for k, rec in items)
    return resp


def _filter(items: list[tuple[bytes, Record]], req: kv_pb2.RangeRequest) -> list[tuple[bytes, Record]]:
    lo_mod, hi_mod = req.min_mod_revision, req.max_mod_revision
    lo_create, hi_create = req.min_create_revision, req.max_create_revision
    if lo_mod > 0:
        items = [it for it in items if it[1][MOD] >= lo_mod]
    if hi_mod > 0:
        items = [it for it in items if it[1][MOD] <= hi_mod]
    if lo_create > 0:
        items = [it for it in items if it[1][CREATE] >= lo_create]
    if hi_create > 0:
        items = [it for it in items if it[1][CREATE] <= hi_create]
    return items


def _keys_only(key: bytes, rec: Record) -> common_pb2.KeyValue:
    kv = to_kv(key, rec)
    kv.value = b""
    return kv
