"""etcd's count for a range with revision filters inside a Txn.

etcd counts the keys of a range before its min/max mod/create revision filters (and
returns only the keys that pass them); coord counts after. A top-level Range reads the
count again (kv.py); inside a Txn the range may see the Txn's own earlier writes, which
no later read can, so the Txn sent to coord carries, right after each filtered range, a
count-only range of the same keys at the same revision, whose count replaces the
filtered one's and whose response is then dropped.

coord counts a Txn's operations across the whole tree (at most MAX_TXN_OPS); a Txn that
the added ranges would take over that limit is sent as it is, and its filtered ranges
count after the filters (docs/etcd.md).
"""

from __future__ import annotations

from coord.v1 import kv_pb2
from coord_server.state.limits import MAX_TXN_OPS


def _filtered(r: kv_pb2.RangeRequest) -> bool:
    return bool(r.min_mod_revision or r.max_mod_revision or r.min_create_revision or r.max_create_revision)


def _count_of(r: kv_pb2.RangeRequest) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(
        key=r.key, range_end=r.range_end, revision=r.revision, count_only=True,
    ))


def _ops(req: kv_pb2.TxnRequest) -> int:
    total = 0
    for op in (*req.success, *req.failure):
        total += 1
        if op.WhichOneof("request") == "request_txn":
            total += _ops(op.request_txn)
    return total


def _add(req: kv_pb2.TxnRequest) -> tuple[kv_pb2.TxnRequest, bool]:
    out = kv_pb2.TxnRequest()
    out.compare.extend(req.compare)
    added = False
    for branch, target in ((req.success, out.success), (req.failure, out.failure)):
        for op in branch:
            which = op.WhichOneof("request")
            if which == "request_txn":
                nested, more = _add(op.request_txn)
                target.add().request_txn.CopyFrom(nested)
                added = added or more
                continue
            target.append(op)
            if which == "request_range" and _filtered(op.request_range):
                target.append(_count_of(op.request_range))
                added = True
    return out, added


def _has_filtered(req: kv_pb2.TxnRequest) -> bool:
    for op in (*req.success, *req.failure):
        which = op.WhichOneof("request")
        if (which == "request_range" and _filtered(op.request_range)) or (
            which == "request_txn" and _has_filtered(op.request_txn)
        ):
            return True
    return False


def with_counts(req: kv_pb2.TxnRequest) -> kv_pb2.TxnRequest | None:
    """``req`` with a count-only range after each filtered range, or None when it has
    none (most Txns: they are sent as they are) or the additions would pass coord's
    operation limit."""
    if not _has_filtered(req):
        return None
    out, added = _add(req)
    if not added or _ops(out) > MAX_TXN_OPS:
        return None
    return out


def take_counts(sent: kv_pb2.TxnRequest, response: kv_pb2.TxnResponse) -> None:
    """Move each added range's count into the filtered range before it and drop the
    added range's response (``sent``: what with_counts returned, where every filtered
    range is followed by its added one)."""
    ops = list(sent.success if response.succeeded else sent.failure)
    results = list(response.responses)
    kept: list[kv_pb2.ResponseOp] = []
    j = 0
    while j < len(ops) and j < len(results):
        op, result = ops[j], results[j]
        which = op.WhichOneof("request")
        if which == "request_txn":
            take_counts(op.request_txn, result.response_txn)
        elif which == "request_range" and _filtered(op.request_range) and j + 1 < len(results):
            result.response_range.count = results[j + 1].response_range.count
            j += 1
        kept.append(result)
        j += 1
    del response.responses[:]
    response.responses.extend(kept)
