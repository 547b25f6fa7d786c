"""A deliberately dumb twin of the state machine, for differential property tests.

It keeps a full copy of the key-value dict for every revision and a flat list of events,
and implements each command the obvious way, with no indexes, no undo log and no sharing
with coord_server/state except the stateless request checks (validation.py, tested on its
own). The property tests apply the same commands to both and compare everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from coord.raft.v1 import command_pb2
from coord.v1 import kv_pb2
from coord_server.status import grpc_status
from coord_server.state import CoordError, validate_command

Value = tuple[bytes, int, int, int, int]
"""(value, create_revision, mod_revision, version, lease)"""

Event = tuple[int, str, bytes, "Value | None", "Value | None"]
"""(revision, "PUT"/"DELETE", key, new value or None, previous value or None)"""


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code


def in_span(key: bytes, start: bytes, range_end: bytes) -> bool:
    if not range_end:
        return key == start
    if range_end == b"\0":
        return key >= start
    return start <= key < range_end


@dataclass
class Model:
    revision: int = 1
    compact_revision: int = 0
    kv: dict[bytes, Value] = field(default_factory=dict)
    snaps: dict[int, dict[bytes, Value]] = field(default_factory=lambda: {1: {}})
    events: list[Event] = field(default_factory=list)
    leases: dict[int, int] = field(default_factory=dict)

    def apply(self, index: int, cmd: command_pb2.Command) -> tuple[str, object]:
        """('ok', summary) or ('error', grpc.StatusCode)."""
        try:
            try:
                validate_command(cmd)
            except CoordError as err:
                raise Refused(grpc_status(err.code)) from None
            which = cmd.WhichOneof("op")
            return "ok", getattr(self, "_" + str(which))(getattr(cmd, which), index)
        except Refused as r:
            return "error", r.code

    # -- writes go through a scratch copy, committed only when nothing failed

    def _commit(self, state: dict[bytes, Value], changes: list[Event]) -> None:
        if changes:
            self.revision += 1
            self.kv = state
            self.events.extend(changes)
            self.snaps[self.revision] = dict(state)

    def _put_into(self, state: dict[bytes, Value], req: kv_pb2.PutRequest, changes: list[Event]) -> object:
        rev = self.revision + 1
        prev = state.get(req.key)
        if (req.ignore_value or req.ignore_lease) and prev is None:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT)
        lease = prev[4] if req.ignore_lease and prev else req.lease
        if lease and lease not in self.leases:
            raise Refused(grpc.StatusCode.NOT_FOUND)
        value = prev[0] if req.ignore_value and prev else req.value
        new = (value, prev[1] if prev else rev, rev, prev[3] + 1 if prev else 1, lease)
        state[req.key] = new
        changes.append((rev, "PUT", req.key, new, prev))
        return ("put", prev if req.prev_kv else None)

    def _delete_into(self, state: dict[bytes, Value], req: kv_pb2.DeleteRangeRequest, changes: list[Event]) -> object:
        rev = self.revision + 1
        doomed = sorted(k for k in state if in_span(k, req.key, req.range_end))
        prevs = []
        for k in doomed:
            prev = state.pop(k)
            prevs.append((k, prev))
            changes.append((rev, "DELETE", k, None, prev))
        return ("delete", len(doomed), prevs if req.prev_kv else [])

    def _range_in(self, state: dict[bytes, Value], req: kv_pb2.RangeRequest) -> object:
        if req.revision > 0:
            if req.revision > self.revision or req.revision < self.compact_revision:
                raise Refused(grpc.StatusCode.OUT_OF_RANGE)
            state = self.snaps[req.revision]
        found = sorted((k, v) for k, v in state.items() if in_span(k, req.key, req.range_end))
        return ("range", found)

    def _compare(self, state: dict[bytes, Value], c: kv_pb2.Compare) -> bool:
        if c.target == kv_pb2.COMPARE_TARGET_LOCK_TOKEN:
            tokens: set[int] = set()  # no locks yet
            if c.result == kv_pb2.COMPARE_RESULT_EQUAL:
                return c.lock_token in tokens
            if c.result == kv_pb2.COMPARE_RESULT_NOT_EQUAL:
                return c.lock_token not in tokens
            return _rel(c.result, max(tokens, default=0), c.lock_token)
        found = [v for k, v in state.items() if in_span(k, c.key, c.range_end)]
        pos, name = {
            kv_pb2.COMPARE_TARGET_VALUE: (0, "value"),
            kv_pb2.COMPARE_TARGET_CREATE_REVISION: (1, "create_revision"),
            kv_pb2.COMPARE_TARGET_MOD_REVISION: (2, "mod_revision"),
            kv_pb2.COMPARE_TARGET_VERSION: (3, "version"),
            kv_pb2.COMPARE_TARGET_LEASE: (4, "lease"),
        }[c.target]
        expected = getattr(c, name)
        if not found:
            return False if pos == 0 else _rel(c.result, 0, expected)
        return all(_rel(c.result, v[pos], expected) for v in found)

    def _txn_into(self, state: dict[bytes, Value], req: kv_pb2.TxnRequest, changes: list[Event]) -> object:
        ok = all(self._compare(state, c) for c in req.compare)
        out: list[object] = []
        for op in req.success if ok else req.failure:
            which = op.WhichOneof("request")
            if which == "request_put":
                out.append(self._put_into(state, op.request_put, changes))
            elif which == "request_delete_range":
                out.append(self._delete_into(state, op.request_delete_range, changes))
            elif which == "request_range":
                out.append(self._range_in(state, op.request_range))
            else:
                out.append(self._txn_into(state, op.request_txn, changes))
        return ("txn", ok, out)

    def _write(self, fn, req) -> object:  # type: ignore[no-untyped-def]
        state = dict(self.kv)
        changes: list[Event] = []
        summary = fn(state, req, changes)
        self._commit(state, changes)
        return summary

    def _put(self, req: kv_pb2.PutRequest, index: int) -> object:
        return self._write(self._put_into, req)

    def _delete_range(self, req: kv_pb2.DeleteRangeRequest, index: int) -> object:
        return self._write(self._delete_into, req)

    def _txn(self, req: kv_pb2.TxnRequest, index: int) -> object:
        return self._write(self._txn_into, req)

    def _compact(self, req: kv_pb2.CompactRequest, index: int) -> object:
        if req.revision <= self.compact_revision or req.revision > self.revision:
            raise Refused(grpc.StatusCode.OUT_OF_RANGE)
        self.compact_revision = req.revision
        return ("compact",)

    def _lease_grant(self, req, index: int) -> object:  # type: ignore[no-untyped-def]
        if req.id:
            if req.id in self.leases:
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION)
            lease_id = req.id
        else:
            lease_id = index
            while lease_id in self.leases:
                lease_id += 1
        self.leases[lease_id] = req.ttl
        return ("grant", lease_id, req.ttl)

    def _end(self, ids: list[int]) -> None:
        state = dict(self.kv)
        changes: list[Event] = []
        rev = self.revision + 1
        for lease_id in ids:
            for k in sorted(k for k, v in state.items() if v[4] == lease_id):
                changes.append((rev, "DELETE", k, None, state.pop(k)))
            del self.leases[lease_id]
        self._commit(state, changes)

    def _lease_revoke(self, req, index: int) -> object:  # type: ignore[no-untyped-def]
        if req.id not in self.leases:
            raise Refused(grpc.StatusCode.NOT_FOUND)
        self._end([req.id])
        return ("revoke",)

    def _lease_expire(self, req, index: int) -> object:  # type: ignore[no-untyped-def]
        ids = sorted({i for i in req.ids if i in self.leases})
        self._end(ids)
        return ("expire", ids)


def _rel(result: int, actual: object, expected: object) -> bool:
    if result == kv_pb2.COMPARE_RESULT_EQUAL:
        return actual == expected
    if result == kv_pb2.COMPARE_RESULT_NOT_EQUAL:
        return actual != expected
    if result == kv_pb2.COMPARE_RESULT_GREATER:
        return actual > expected  # type: ignore[operator]
    return actual < expected  # type: ignore[operator]


# -- turning the real machine's answers into the model's shapes -------------------------


def kv_tuple(kv: object) -> Value:
    return (kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)  # type: ignore[attr-defined]


def summarize(result: command_pb2.CommandResult) -> tuple[str, object]:
    """The model's ('ok', summary) / ('error', code) for a real CommandResult."""
    which = result.WhichOneof("result")
    if which == "error":
        return "error", grpc_status(result.error.code)
    msg = getattr(result, which)
    if which == "put":
        return "ok", _put_summary(msg)
    if which == "delete_range":
        return "ok", _delete_summary(msg)
    if which == "txn":
        return "ok", _txn_summary(msg)
    if which == "compact":
        return "ok", ("compact",)
    if which == "lease_grant":
        return "ok", ("grant", msg.id, msg.ttl)
    if which == "lease_revoke":
        return "ok", ("revoke",)
    return "ok", ("expire", list(msg.revoked))


def _put_summary(r: kv_pb2.PutResponse) -> object:
    return ("put", kv_tuple(r.prev_kv) if r.HasField("prev_kv") else None)


def _delete_summary(r: kv_pb2.DeleteRangeResponse) -> object:
    return ("delete", r.deleted, [(kv.key, kv_tuple(kv)) for kv in r.prev_kvs])


def _txn_summary(r: kv_pb2.TxnResponse) -> object:
    out: list[object] = []
    for op in r.responses:
        which = op.WhichOneof("response")
        if which == "response_put":
            out.append(_put_summary(op.response_put))
        elif which == "response_delete_range":
            out.append(_delete_summary(op.response_delete_range))
        elif which == "response_range":
            out.append(("range", [(kv.key, kv_tuple(kv)) for kv in op.response_range.kvs]))
        else:
            out.append(_txn_summary(op.response_txn))
    return ("txn", r.succeeded, out)
