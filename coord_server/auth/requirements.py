"""What each public RPC needs: which keys or names it reads or writes.

``needs_of(method, request)`` lists the Needs of one request message (a unary request, or
one message of a stream); an empty list means "any authenticated user". ``ADMIN`` is the
one Need no key or name permission satisfies: only an admin role does.

The choices (docs/security.md):
- KV: Range, Watch and every Txn compare read their range (a lock-token compare reads
  the lock's name); Put and DeleteRange write it;
  a Txn needs everything any of its branches (and nested Txns) could touch, whichever
  branch runs, so a denied Txn changes nothing and reveals nothing. Compact needs write
  on the whole key space (it drops every key's history).
- Lease: any authenticated user may grant, keep alive, inspect and list; revoking needs
  write on every key attached to the lease (as in etcd), since revoking deletes them.
- Lock, Election, Ring: by name; inspecting, observing and looking up read, everything
  else writes.
- Cluster: Status and MemberList for anyone authenticated; member changes and
  TransferLeadership need ADMIN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coord.v1 import kv_pb2
from coord_server.state import keys as keyspan


@dataclass(frozen=True)
class Need:
    kind: str
    """keys, locks, elections, rings; or admin."""
    span: keyspan.Span
    write: bool

    def describe(self) -> str:
        if self.kind == "admin":
            return "an admin role"
        access = "write" if self.write else "read"
        start, end = self.span
        if self.kind != "keys":
            return f"{access} on {self.kind[:-1]} {start.decode(errors='replace')!r}"
        if end == start + b"\x00":
            return f"{access} on key {_shown(start)}"
        if end is None:
            return f"{access} on keys from {_shown(start)} on"
        return f"{access} on keys [{_shown(start)}, {_shown(end)})"


def _shown(data: bytes) -> str:
    """A key in a message: quoted text when it is UTF-8, else hex; never b'...'."""
    try:
        return repr(data.decode())
    except UnicodeDecodeError:
        return "0x" + data.hex()


ADMIN = Need("admin", (b"", None), True)

WHOLE_KEY_SPACE: keyspan.Span = (b"", None)


def _keys(key: bytes, range_end: bytes, write: bool) -> Need:
    return Need("keys", keyspan.span(key, range_end), write)


def _name(kind: str, name: str, write: bool) -> Need:
    encoded = name.encode()
    return Need(kind, (encoded, encoded + b"\x00"), write)


def kv_op_needs(which: str, request: Any) -> list[Need]:
    """Needs of one Pipeline or Txn operation by its oneof name (range, put, delete_range,
    txn, lock_acquire, lock_release, and the request_* names of RequestOp)."""
    which = which.removeprefix("request_")
    if which in ("lock_acquire", "lock_release"):
        return [_name("locks", request.name, True)]  # as Lock.Acquire and Lock.Release
    if which == "range":
        return [_keys(request.key, request.range_end, False)]
    if which == "put":
        return [_keys(request.key, b"", True)]
    if which == "delete_range":
        return [_keys(request.key, request.range_end, True)]
    if which == "txn":
        return txn_needs(request)
    return [ADMIN]  # an operation this table does not know is closed, as an unknown RPC is


def _compare(c: kv_pb2.Compare) -> Need:
    if c.target == kv_pb2.COMPARE_TARGET_LOCK_TOKEN:
        return _name("locks", c.lock_name, False)
    return _keys(c.key, c.range_end, False)


def txn_needs(request: kv_pb2.TxnRequest) -> list[Need]:
    needs = [_compare(c) for c in request.compare]
    for op in (*request.success, *request.failure):
        which = op.WhichOneof("request")
        if which is not None:
            needs.extend(kv_op_needs(which, getattr(op, which)))
    return needs


def _watch(request: kv_pb2.WatchRequest) -> list[Need]:
    if request.WhichOneof("request_union") != "create_request":
        return []
    create = request.create_request
    return [_keys(create.key, create.range_end, False)]


_BY_METHOD: dict[str, Callable[[Any], list[Need]]] = {
    "/coord.v1.KV/Range": lambda r: kv_op_needs("range", r),
    "/coord.v1.KV/Put": lambda r: kv_op_needs("put", r),
    "/coord.v1.KV/DeleteRange": lambda r: kv_op_needs("delete_range", r),
    "/coord.v1.KV/Txn": txn_needs,
    "/coord.v1.KV/Compact": lambda r: [Need("keys", WHOLE_KEY_SPACE, True)],
    "/coord.v1.KV/Watch": _watch,
    # Pipeline: each op is checked by PipelineSession (check_pipeline_op), so that a
    # denied op is that op's result rather than the end of the stream.
    "/coord.v1.Lock/Acquire": lambda r: [_name("locks", r.name, True)],
    "/coord.v1.Lock/Release": lambda r: [_name("locks", r.name, True)],
    "/coord.v1.Lock/Inspect": lambda r: [_name("locks", r.name, False)],
    "/coord.v1.Election/Campaign": lambda r: [_name("elections", r.name, True)],
    "/coord.v1.Election/Proclaim": lambda r: [_name("elections", r.leader.name, True)],
    "/coord.v1.Election/Resign": lambda r: [_name("elections", r.leader.name, True)],
    "/coord.v1.Election/Leader": lambda r: [_name("elections", r.name, False)],
    "/coord.v1.Election/Observe": lambda r: [_name("elections", r.name, False)],
    "/coord.v1.Ring/Join": lambda r: [_name("rings", r.ring, True)],
    "/coord.v1.Ring/Leave": lambda r: [_name("rings", r.ring, True)],
    "/coord.v1.Ring/Lookup": lambda r: [_name("rings", r.ring, False)],
    "/coord.v1.Ring/Get": lambda r: [_name("rings", r.ring, False)],
    "/coord.v1.Ring/Watch": lambda r: [_name("rings", r.ring, False)],
    "/coord.v1.Cluster/MemberAdd": lambda r: [ADMIN],
    "/coord.v1.Cluster/MemberPromote": lambda r: [ADMIN],
    "/coord.v1.Cluster/MemberRemove": lambda r: [ADMIN],
    "/coord.v1.Cluster/TransferLeadership": lambda r: [ADMIN],
    "/coord.v1.Maintenance/Snapshot": lambda r: [ADMIN],  # the whole state, every key
}

LEASE_REVOKE = "/coord.v1.Lease/Revoke"
LEASE_TIME_TO_LIVE = "/coord.v1.Lease/TimeToLive"

AUTHENTICATED_ONLY = frozenset({
    "/coord.v1.KV/Pipeline",
    "/coord.v1.Lease/Grant", "/coord.v1.Lease/Revoke", "/coord.v1.Lease/KeepAlive",
    "/coord.v1.Lease/TimeToLive", "/coord.v1.Lease/List",
    "/coord.v1.Cluster/Status", "/coord.v1.Cluster/MemberList",
})


def lease_revoke_needs(state: Any, lease_id: int) -> list[Need]:
    """What ending the lease in ``state`` does, as Needs: write on each attached key
    (deleted, as in etcd), and on each lock, election and ring it holds, waits for or is
    a member of (released, resigned, left: as Release, Resign and Leave need). None when
    there is no such lease: the revoke then fails with NOT_FOUND."""
    keys = _lease_keys(state, lease_id)
    if keys is None:
        return []
    locks, elections, rings = state.lease_bindings(lease_id)
    return [
        *(_keys(key, b"", True) for key in keys),
        *(_name("locks", name, True) for name in locks),
        *(_name("elections", name, True) for name in elections),
        *(_name("rings", name, True) for name in rings),
    ]


def lease_attachment_needs(state: Any, request: Any) -> list[Need]:
    """Lease.TimeToLive with ``attachments`` lists the lease's keys, locks, elections and
    ring members: read on each (etcd fixed the same disclosure for keys, CVE-2023-32082).
    Without it, any authenticated user."""
    if not request.attachments:
        return []
    keys = _lease_keys(state, request.id)
    if keys is None:
        return []
    locks, elections, rings = state.lease_bindings(request.id)
    return [
        *(_keys(key, b"", False) for key in keys),
        *(_name("locks", name, False) for name in locks),
        *(_name("elections", name, False) for name in elections),
        *(_name("rings", name, False) for name in rings),
    ]


def _lease_keys(state: Any, lease_id: int) -> Any:
    """The keys attached to lease ``lease_id``; None when there is no such lease (the
    call then fails with NOT_FOUND: nothing to protect or disclose)."""
    try:
        return state.lease_info(lease_id).keys
    except Exception:  # noqa: BLE001 - NotFound
        return None


def has_rule(method: str) -> bool:
    """Whether this table decides ``method`` explicitly (rather than by the closed
    default): tests/security/test_enumeration.py insists on it for every coord.v1
    method a member serves."""
    return method in _BY_METHOD or method in AUTHENTICATED_ONLY or method in (LEASE_REVOKE, LEASE_TIME_TO_LIVE)


def any_authenticated_user(method: str) -> bool:
    """Whether every authenticated user may call ``method`` whatever it asks (a request
    may still need more: Lease Revoke and TimeToLive with attachments, by the lease)."""
    return method in AUTHENTICATED_ONLY


def needs_of(method: str, request: Any, state: Any = None) -> list[Need]:
    """The Needs of ``request`` sent to ``method`` (``state``: the member's state machine,
    for Lease.Revoke). A coord.v1 method this table does not know needs ADMIN: a new RPC
    is closed until someone decides who may call it."""
    if method == LEASE_REVOKE and state is not None:
        return lease_revoke_needs(state, request.id)
    if method == LEASE_TIME_TO_LIVE and state is not None:
        return lease_attachment_needs(state, request)
    rule = _BY_METHOD.get(method)
    if rule is not None:
        return rule(request)
    if method in AUTHENTICATED_ONLY:
        return []
    return [ADMIN]
