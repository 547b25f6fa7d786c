"""The permission model, shared by the edge check (coord_server/auth) and the check the
state machine makes again when it applies a command (auth.py of this package): what a
role grants (``Permission``, ``Role``, a user's ``Principal``) and what a KV, lock,
election or ring operation needs (``Need``). Pure: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coord.v1 import kv_pb2

from . import keys as keyspan

KINDS = ("keys", "locks", "elections", "rings")
"""What a permission can name: key prefixes, or lock, election and ring name prefixes."""

ACCESS_LEVELS = ("read", "readwrite")


@dataclass(frozen=True)
class Permission:
    kind: str
    prefix: bytes
    write: bool

    @property
    def span(self) -> keyspan.Span:
        """The interval of keys (or names, as UTF-8) this permission covers."""
        end = keyspan.prefix_end(self.prefix)
        return self.prefix, None if end == b"\x00" else end


@dataclass(frozen=True)
class Role:
    name: str
    admin: bool = False
    permissions: tuple[Permission, ...] = ()


@dataclass(frozen=True)
class Principal:
    """An authenticated user and what its roles grant."""

    name: str
    roles: tuple[Role, ...]
    admin: bool = False
    _spans: dict[tuple[str, bool], list[keyspan.Span]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, name: str, roles: tuple[Role, ...]) -> Principal:
        spans: dict[tuple[str, bool], list[keyspan.Span]] = {}
        for role in roles:
            for p in role.permissions:
                spans.setdefault((p.kind, False), []).append(p.span)  # readwrite implies read
                if p.write:
                    spans.setdefault((p.kind, True), []).append(p.span)
        for key in spans:
            spans[key].sort(key=lambda s: s[0])
        return cls(name, roles, any(r.admin for r in roles), spans)

    def allows(self, kind: str, span: keyspan.Span, write: bool) -> bool:
        """Whether the union of this user's permissions of ``kind`` covers ``span`` with at
        least the access asked for."""
        if self.admin:
            return True
        start, end = span
        if end is not None and end <= start:
            return True  # an empty range touches nothing
        reach = start
        for s, e in self._spans.get((kind, write), ()):
            if s > reach:
                break
            if e is None:
                return True
            if e > reach:
                reach = e
                if end is not None and reach >= end:
                    return True
        return False


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


def key_need(key: bytes, range_end: bytes, write: bool) -> Need:
    return Need("keys", keyspan.span(key, range_end), write)


def name_need(kind: str, name: str, write: bool) -> Need:
    encoded = name.encode()
    return Need(kind, (encoded, encoded + b"\x00"), write)


def kv_op_needs(which: str, request: Any) -> list[Need]:
    """Needs of one Pipeline or Txn operation by its oneof name (range, put, delete_range,
    txn, lock_acquire, lock_release, lease_grant, and the request_* names of RequestOp)."""
    which = which.removeprefix("request_")
    if which in ("lock_acquire", "lock_release"):
        return [name_need("locks", request.name, True)]  # as Lock.Acquire and Lock.Release
    if which == "lease_grant":
        return []  # as Lease.Grant: any authenticated caller (the lease is its own)
    if which == "range":
        return [key_need(request.key, request.range_end, False)]
    if which == "put":
        return [key_need(request.key, b"", True)]
    if which == "delete_range":
        return [key_need(request.key, request.range_end, True)]
    if which == "txn":
        return txn_needs(request)
    return [ADMIN]  # an operation this table does not know is closed, as an unknown RPC is


def _compare(c: kv_pb2.Compare) -> Need:
    if c.target == kv_pb2.COMPARE_TARGET_LOCK_TOKEN:
        return name_need("locks", c.lock_name, False)
    return key_need(c.key, c.range_end, False)


def txn_needs(request: kv_pb2.TxnRequest) -> list[Need]:
    needs = [_compare(c) for c in request.compare]
    for op in (*request.success, *request.failure):
        which = op.WhichOneof("request")
        if which is not None:
            needs.extend(kv_op_needs(which, getattr(op, which)))
    return needs
