"""Transactions: comparisons, operations and the builder shared by both clients.

    from coord_client import Compare, Op

    result = client.txn() \\
        .when(Compare.value("config") == "v1", Compare.version("lock") == 0) \\
        .then(Op.put("config", "v2"), Op.get("config")) \\
        .otherwise(Op.get("config")) \\
        .commit()
    result.succeeded, result.responses

A comparison reads one target of a key (``value``, ``version``, ``create_revision``,
``mod_revision``, ``lease``) or a lock's fencing token (``lock_token``), and tests it with
``==``, ``!=``, ``<`` or ``>`` (or ``eq``/``ne``/``lt``/``gt``). ``Compare.missing(key)``
holds when the key does not exist. ``prefix=True`` applies a comparison to every key
under a prefix.

A write guarded by ``Compare.lock_token("jobs") == held.fencing_token`` happens only
while the lock is still held with that token: fencing inside coord itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from coord.v1 import kv_pb2

from .types import Bytes, key_range, prefix_end, to_bytes

__all__ = ["Compare", "Op", "TxnBuilder"]

_VALUE = kv_pb2.COMPARE_TARGET_VALUE
_VERSION = kv_pb2.COMPARE_TARGET_VERSION
_CREATE = kv_pb2.COMPARE_TARGET_CREATE_REVISION
_MOD = kv_pb2.COMPARE_TARGET_MOD_REVISION
_LEASE = kv_pb2.COMPARE_TARGET_LEASE
_LOCK = kv_pb2.COMPARE_TARGET_LOCK_TOKEN

_FIELD: dict[int, str] = {
    _VALUE: "value",
    _VERSION: "version",
    _CREATE: "create_revision",
    _MOD: "mod_revision",
    _LEASE: "lease",
    _LOCK: "lock_token",
}


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a transaction; build it from ``Compare.value(key) == ...`` etc."""

    target: int
    result: int
    key: bytes
    expected: int | bytes
    range_end: bytes = b""
    lock_name: str = ""

    # -- what to read -------------------------------------------------------------

    @staticmethod
    def value(key: Bytes, *, prefix: bool = False) -> Operand:
        """A key's value (bytes; a missing key fails every value comparison)."""
        return Operand(_VALUE, key, prefix)

    @staticmethod
    def version(key: Bytes, *, prefix: bool = False) -> Operand:
        """A key's version (0 for a missing key)."""
        return Operand(_VERSION, key, prefix)

    @staticmethod
    def create_revision(key: Bytes, *, prefix: bool = False) -> Operand:
        """A key's create_revision (0 for a missing key)."""
        return Operand(_CREATE, key, prefix)

    @staticmethod
    def mod_revision(key: Bytes, *, prefix: bool = False) -> Operand:
        """A key's mod_revision (0 for a missing key)."""
        return Operand(_MOD, key, prefix)

    @staticmethod
    def lease(key: Bytes, *, prefix: bool = False) -> Operand:
        """The ID of a key's lease (0 for none)."""
        return Operand(_LEASE, key, prefix)

    @staticmethod
    def lock_token(name: str) -> Operand:
        """The fencing token of lock ``name``: ``== token`` holds while some holder holds
        exactly that token; ``<``/``>`` compare the highest current token (0 when free)."""
        return Operand(_LOCK, name, False)

    @staticmethod
    def missing(key: Bytes) -> Compare:
        """Holds when ``key`` does not exist."""
        return Operand(_VERSION, key, False).eq(0)

    @staticmethod
    def exists(key: Bytes) -> Compare:
        """Holds when ``key`` exists."""
        return Operand(_VERSION, key, False).gt(0)

    def to_pb(self) -> kv_pb2.Compare:
        pb = kv_pb2.Compare(result=self.result, target=self.target, range_end=self.range_end)  # type: ignore[arg-type]
        if self.target == _LOCK:
            pb.lock_name = self.lock_name
        else:
            pb.key = self.key
        setattr(pb, _FIELD[self.target], self.expected)
        return pb


class Operand:
    """What a comparison reads; compare it to get a :class:`Compare`."""

    __slots__ = ("_target", "_key", "_range_end", "_lock_name")

    def __init__(self, target: int, key: Bytes, prefix: bool) -> None:
        self._target = target
        if target == _LOCK:
            self._lock_name = key if isinstance(key, str) else key.decode()
            self._key = b""
            self._range_end = b""
        else:
            self._lock_name = ""
            self._key = to_bytes(key)
            self._range_end = prefix_end(self._key) if prefix else b""

    def _make(self, result: int, expected: int | Bytes) -> Compare:
        if self._target == _VALUE:
            if isinstance(expected, int):
                raise TypeError("a value comparison takes bytes or str")
            value: int | bytes = to_bytes(expected)
        else:
            if not isinstance(expected, int) or isinstance(expected, bool):
                raise TypeError(f"a {_FIELD[self._target]} comparison takes an int")
            value = expected
        return Compare(self._target, result, self._key, value, self._range_end, self._lock_name)

    def eq(self, expected: int | Bytes) -> Compare:
        return self._make(kv_pb2.COMPARE_RESULT_EQUAL, expected)

    def ne(self, expected: int | Bytes) -> Compare:
        return self._make(kv_pb2.COMPARE_RESULT_NOT_EQUAL, expected)

    def lt(self, expected: int | Bytes) -> Compare:
        return self._make(kv_pb2.COMPARE_RESULT_LESS, expected)

    def gt(self, expected: int | Bytes) -> Compare:
        return self._make(kv_pb2.COMPARE_RESULT_GREATER, expected)

    def __eq__(self, expected: int | Bytes) -> Compare:  # type: ignore[override]
        return self.eq(expected)

    def __ne__(self, expected: int | Bytes) -> Compare:  # type: ignore[override]
        return self.ne(expected)

    def __lt__(self, expected: int | Bytes) -> Compare:
        return self.lt(expected)

    def __gt__(self, expected: int | Bytes) -> Compare:
        return self.gt(expected)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a transaction branch: ``Op.put``, ``Op.get``, ``Op.delete`` or a
    nested ``Op.txn``."""

    pb: kv_pb2.RequestOp

    @staticmethod
    def put(key: Bytes, value: Bytes, *, lease: int = 0, prev_kv: bool = False) -> Op:
        return Op(kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(
            key=to_bytes(key), value=to_bytes(value), lease=lease, prev_kv=prev_kv)))

    @staticmethod
    def get(key: Bytes, *, prefix: bool = False, keys_only: bool = False, limit: int = 0) -> Op:
        k, end = key_range(key, prefix)
        return Op(kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(
            key=k, range_end=end, keys_only=keys_only, limit=limit)))

    @staticmethod
    def delete(key: Bytes, *, prefix: bool = False, prev_kv: bool = False) -> Op:
        k, end = key_range(key, prefix)
        return Op(kv_pb2.RequestOp(request_delete_range=kv_pb2.DeleteRangeRequest(
            key=k, range_end=end, prev_kv=prev_kv)))

    @staticmethod
    def txn(when: list[Compare], then: list[Op], otherwise: list[Op] | None = None) -> Op:
        """A nested transaction, evaluated against the state the earlier operations of
        the same branch left."""
        return Op(kv_pb2.RequestOp(request_txn=_request(when, then, otherwise or [])))


def _request(when: list[Compare], then: list[Op], otherwise: list[Op]) -> kv_pb2.TxnRequest:
    return kv_pb2.TxnRequest(
        compare=[c.to_pb() for c in when],
        success=[o.pb for o in then],
        failure=[o.pb for o in otherwise],
    )


class TxnBuilder:
    """``when(...)``, ``then(...)``, ``otherwise(...)``; each may be called more than once
    and adds to its list. The clients' ``txn()`` return a subclass with ``commit()``."""

    def __init__(self) -> None:
        self._when: list[Compare] = []
        self._then: list[Op] = []
        self._otherwise: list[Op] = []

    def when(self, *compares: Compare) -> Self:
        for c in compares:
            if not isinstance(c, Compare):
                raise TypeError(f"when() takes Compare objects, got {type(c).__name__}")
        self._when.extend(compares)
        return self

    def then(self, *ops: Op) -> Self:
        self._then.extend(_ops(ops))
        return self

    def otherwise(self, *ops: Op) -> Self:
        self._otherwise.extend(_ops(ops))
        return self

    def to_request(self) -> kv_pb2.TxnRequest:
        return _request(self._when, self._then, self._otherwise)


def _ops(ops: tuple[Op, ...]) -> tuple[Op, ...]:
    for o in ops:
        if not isinstance(o, Op):
            raise TypeError(f"then()/otherwise() take Op objects, got {type(o).__name__}")
    return ops
