"""The KV writes: Put, DeleteRange and Txn (with its comparisons), inside one ``Write``.

Rule 1: every operation runs inside a ``kv.Write`` owned by the caller, which commits it
        (one revision for all its changes) or rolls it back when any operation raises, so
        a Txn is all or nothing even when its third operation fails.
Rule 2: checks that need the state happen here, in operation order, against the latest
        state (the transaction's earlier writes included): a put's lease must exist
        (NOT_FOUND), ignore_value/ignore_lease need an existing key (INVALID_ARGUMENT, as
        etcd), a range's revision must be readable (OUT_OF_RANGE).
Rule 3: comparisons of a Txn are evaluated on the state before its operations; those of
        a nested Txn on the state its branch has built so far (kv.proto, RequestOp).
        Lock-token comparisons read ``lock_tokens(name)``: no locks exist yet, so every
        lock is free (no token); the lock issue fills that hook in.
"""

from __future__ import annotations

from collections.abc import Callable

from coord.v1 import kv_pb2

from . import keys
from coord_server.errors import Compacted, FutureRevision, InvalidArgument, NotFound
from .kv import CREATE, LEASE, MOD, VALUE, VERSION, MVCCStore, Record, Write, to_kv
from .leases import LeaseTable
from .ranges import read_range

_EQUAL = kv_pb2.COMPARE_RESULT_EQUAL
_GREATER = kv_pb2.COMPARE_RESULT_GREATER
_LESS = kv_pb2.COMPARE_RESULT_LESS
_NOT_EQUAL = kv_pb2.COMPARE_RESULT_NOT_EQUAL

_FIELD_OF_TARGET = {
    kv_pb2.COMPARE_TARGET_VERSION: VERSION,
    kv_pb2.COMPARE_TARGET_CREATE_REVISION: CREATE,
    kv_pb2.COMPARE_TARGET_MOD_REVISION: MOD,
    kv_pb2.COMPARE_TARGET_VALUE: VALUE,
    kv_pb2.COMPARE_TARGET_LEASE: LEASE,
}
_UNION_OF_TARGET = {
    kv_pb2.COMPARE_TARGET_VERSION: "version",
    kv_pb2.COMPARE_TARGET_CREATE_REVISION: "create_revision",
    kv_pb2.COMPARE_TARGET_MOD_REVISION: "mod_revision",
    kv_pb2.COMPARE_TARGET_VALUE: "value",
    kv_pb2.COMPARE_TARGET_LEASE: "lease",
}


class KVWrites:
    """The KV write operations over one store and lease table."""

    __slots__ = ("store", "leases", "lock_tokens")

    def __init__(
        self, store: MVCCStore, leases: LeaseTable, lock_tokens: Callable[[str], set[int]]
    ) -> None:
        self.store = store
        self.leases = leases
        self.lock_tokens = lock_tokens

    def put(self, w: Write, req: kv_pb2.PutRequest) -> kv_pb2.PutResponse:
        """Apply a validated PutRequest (Rule 2)."""
        key = req.key
        prev = self.store.latest(key)
        if prev is None and (req.ignore_value or req.ignore_lease):
            which = "ignore_value" if req.ignore_value else "ignore_lease"
            raise InvalidArgument(f"{which} is set but key {key!r} does not exist")
        lease = prev[LEASE] if req.ignore_lease and prev is not None else req.lease
        if lease and lease not in self.leases:
            raise NotFound(f"lease {lease} not found")
        value = prev[VALUE] if req.ignore_value and prev is not None else req.value
        w.put(key, value, lease)
        resp = kv_pb2.PutResponse()
        if req.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(to_kv(key, prev))
        return resp

    def delete_range(self, w: Write, req: kv_pb2.DeleteRangeRequest) -> kv_pb2.DeleteRangeResponse:
        """Apply a validated DeleteRangeRequest: delete the live keys of the range, in key
        order."""
        items = self.store.scan(keys.span(req.key, req.range_end), None)
        for k, _ in items:
            w.delete(k)
        resp = kv_pb2.DeleteRangeResponse(deleted=len(items))
        if req.prev_kv:
            resp.prev_kvs.extend(to_kv(k, rec) for k, rec in items)
        return resp

    def range(self, req: kv_pb2.RangeRequest, w: Write | None = None) -> kv_pb2.RangeResponse:
        """A validated RangeRequest inside a Txn: at a readable revision, or at the latest
        state with the transaction's writes (revision 0). The key index counts only
        committed writes, so a count after ``w``'s own writes scans."""
        rev = req.revision
        store = self.store
        if rev <= 0:
            return read_range(store, req, None, indexed=not (w is not None and w.changes))
        if rev > store.revision:
            raise FutureRevision(rev, store.revision)
        if rev < store.compact_revision:
            raise Compacted(rev, store.compact_revision)
        return read_range(store, req, rev)

    def txn(self, w: Write, req: kv_pb2.TxnRequest) -> kv_pb2.TxnResponse:
        """Apply a validated TxnRequest (Rule 3); headers are left to the caller."""
        succeeded = all(self.compare(c) for c in req.compare)
        resp = kv_pb2.TxnResponse(succeeded=succeeded)
        responses = resp.responses
        for op in req.success if succeeded else req.failure:
            which = op.WhichOneof("request")
            out = responses.add()
            if which == "request_put":
                out.response_put.CopyFrom(self.put(w, op.request_put))
            elif which == "request_delete_range":
                out.response_delete_range.CopyFrom(self.delete_range(w, op.request_delete_range))
            elif which == "request_range":
                out.response_range.CopyFrom(self.range(op.request_range, w))
            elif which == "request_txn":
                out.response_txn.CopyFrom(self.txn(w, op.request_txn))
            else:
                raise InvalidArgument("txn operation has no request set")
        return resp

    def compare(self, cmp: kv_pb2.Compare) -> bool:
        """Whether a validated Compare holds on the latest state."""
        result = cmp.result
        target = cmp.target
        if target == kv_pb2.COMPARE_TARGET_LOCK_TOKEN:
            return _compare_lock(result, self.lock_tokens(cmp.lock_name), cmp.lock_token)
        field = _FIELD_OF_TARGET[target]
        expected = getattr(cmp, _UNION_OF_TARGET[target])
        if cmp.range_end:
            records: list[Record] = [
                rec for _, rec in self.store.scan(keys.span(cmp.key, cmp.range_end), None)
            ]
        else:
            found = self.store.latest(cmp.key)
            records = [] if found is None else [found]
        if not records:
            if field == VALUE:
                return False  # a missing key fails every value comparison
            return _holds(result, 0, expected)
        return all(_holds(result, rec[field], expected) for rec in records)


def _holds(result: int, actual: int | bytes, expected: int | bytes) -> bool:
    if result == _EQUAL:
        return actual == expected
    if result == _NOT_EQUAL:
        return actual != expected
    if result == _GREATER:
        return actual > expected  # type: ignore[operator]
    if result == _LESS:
        return actual < expected  # type: ignore[operator]
    raise InvalidArgument(f"compare result {result} is unspecified or unknown")


def _compare_lock(result: int, tokens: set[int], token: int) -> bool:
    """kv.proto COMPARE_TARGET_LOCK_TOKEN: EQUAL when some holder has ``token``, NOT_EQUAL
    when none does, GREATER/LESS on the highest token held (0 when the lock is free)."""
    if result == _EQUAL:
        return token in tokens
    if result == _NOT_EQUAL:
        return token not in tokens
    return _holds(result, max(tokens, default=0), token)


def stamp_revision(resp: kv_pb2.TxnResponse, revision: int) -> None:
    """Set ``header.revision`` on every response nested in a TxnResponse (kv.proto:
    "Its header repeats the transaction's header")."""
    resp.header.revision = revision
    for out in resp.responses:
        which = out.WhichOneof("response")
        if which == "response_txn":
            stamp_revision(out.response_txn, revision)
        elif which is not None:
            getattr(out, which).header.revision = revision
