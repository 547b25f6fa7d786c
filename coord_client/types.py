"""The client's domain objects: frozen dataclasses for everything a call returns, so no
protobuf message appears in a public signature (python-etcd3's lesson, with types).

Keys and values are ``bytes`` on the way out (coord stores bytes); every method that
takes a key or a value also accepts ``str``, encoded as UTF-8. ``KeyValue.key_str`` and
``value_str`` decode for display.

The ``_from_pb`` helpers at the bottom are the one place where protobuf messages become
these objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from coord.v1 import cluster_pb2, common_pb2, election_pb2, kv_pb2, lease_pb2, lock_pb2, ring_pb2

__all__ = [
    "DeleteResult",
    "EndpointHealth",
    "EndpointStatus",
    "Event",
    "EventType",
    "HashMode",
    "KeyValue",
    "Leader",
    "LeaseInfo",
    "LockHolder",
    "LockInfo",
    "LockWaiter",
    "Member",
    "PutResult",
    "RangeResult",
    "Role",
    "RingMember",
    "RingState",
    "Status",
    "TxnResult",
]

Bytes = Union[str, bytes]
"""A key or value as given by the caller: str is encoded as UTF-8."""


def to_bytes(data: Bytes) -> bytes:
    """``data`` as bytes: str is UTF-8 encoded. Anything else but bytes-like data is a
    TypeError: ``bytes(5)`` would silently be five NUL bytes."""
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"keys and values are str or bytes, not {type(data).__name__} ({data!r:.40}); "
                    f"convert it first, e.g. str(value)")


def prefix_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with ``prefix`` (etcd's rule: the
    prefix with its last byte below 0xff incremented; "\\0", every key, when there is
    none)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def key_range(key: Bytes, prefix: bool = False, range_end: Bytes = b"") -> tuple[bytes, bytes]:
    """(key, range_end) for a request: with ``prefix``, every key under ``key``; an empty
    prefix means every key (etcd's "\\0", "\\0")."""
    k = to_bytes(key)
    if not prefix:
        return k, to_bytes(range_end)
    if not k:
        return b"\0", b"\0"
    return k, prefix_end(k)


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key and its value, with the revisions that version it (MVCC)."""

    key: bytes
    value: bytes
    create_revision: int
    """The revision of the key's last creation."""
    mod_revision: int
    """The revision of the key's last modification."""
    version: int
    """1 when created, +1 per put."""
    lease: int = 0
    """The ID of the lease attached to the key, 0 for none."""

    @property
    def key_str(self) -> str:
        return self.key.decode(errors="replace")

    @property
    def value_str(self) -> str:
        return self.value.decode(errors="replace")


class EventType(IntEnum):
    PUT = 1
    DELETE = 2


@dataclass(frozen=True, slots=True)
class Event:
    """One change to one key, from a watch."""

    type: EventType
    kv: KeyValue
    """The pair after the event; for a DELETE only ``key`` and ``mod_revision`` are set."""
    prev_kv: KeyValue | None = None
    """The pair before the event, when the watch asked for it."""

    @property
    def key(self) -> bytes:
        return self.kv.key

    @property
    def value(self) -> bytes:
        return self.kv.value

    @property
    def revision(self) -> int:
        """The revision of the change (``kv.mod_revision``)."""
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    """The revision of this put."""
    prev_kv: KeyValue | None = None
    """The pair before the put, when asked for and the key existed."""


@dataclass(frozen=True, slots=True)
class RangeResult:
    revision: int
    """The revision the read was served at."""
    kvs: tuple[KeyValue, ...] = ()
    count: int = 0
    """How many keys the range holds (regardless of limit)."""
    more: bool = False
    """Whether limit cut the result short."""


@dataclass(frozen=True, slots=True)
class DeleteResult:
    revision: int
    """The revision of the deletion (unchanged when nothing was deleted)."""
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    """Whether every comparison held (the ``then`` branch ran)."""
    revision: int
    responses: tuple[OpResult, ...] = ()
    """The result of each operation of the branch that ran, in order."""


OpResult = Union[RangeResult, PutResult, DeleteResult, TxnResult]


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    id: int
    granted_ttl: int
    """The TTL granted, in seconds; each keep-alive resets the remaining TTL to it."""
    ttl: int | None = None
    """Remaining seconds by the leader's clock (None in listings)."""
    keys: tuple[bytes, ...] = ()
    locks: tuple[str, ...] = ()
    elections: tuple[str, ...] = ()
    ring_members: tuple[tuple[str, str], ...] = ()
    """(ring, member id) pairs bound to the lease."""


class Role(IntEnum):
    FOLLOWER = 1
    PRE_CANDIDATE = 2
    CANDIDATE = 3
    LEADER = 4

    def __str__(self) -> str:
        return self.name.lower().replace("_", "-")


@dataclass(frozen=True, slots=True)
class Member:
    """One server of the cluster."""

    id: int
    name: str
    peer_address: str
    client_address: str
    is_learner: bool = False


@dataclass(frozen=True, slots=True)
class Status:
    """The Raft state of one member, as it reports it (Cluster.Status)."""

    endpoint: str
    member_id: int
    cluster_id: int
    version: str
    role: Role
    term: int
    leader: int
    """The member ID of the leader it knows, 0 for none."""
    is_learner: bool
    commit_index: int
    applied_index: int
    revision: int
    log_first_index: int = 0
    log_last_index: int = 0
    log_entries: int = 0
    log_size_bytes: int = 0
    snapshot_index: int = 0
    snapshot_term: int = 0
    snapshot_size_bytes: int = 0


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    """One row of ``cluster_status()``: a member (or a configured endpoint) and its
    status, or why there is none."""

    endpoint: str
    name: str
    status: Status | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    endpoint: str
    healthy: bool
    took: float
    """Seconds the health check took."""
    error: str = ""


@dataclass(frozen=True, slots=True)
class LockHolder:
    token: int
    lease: int
    owner: str
    revision: int


@dataclass(frozen=True, slots=True)
class LockWaiter:
    lease: int
    owner: str
    revision: int


@dataclass(frozen=True, slots=True)
class LockInfo:
    name: str
    permits: int
    """0 when nobody holds or waits for the lock."""
    holders: tuple[LockHolder, ...] = ()
    waiters: tuple[LockWaiter, ...] = ()


@dataclass(frozen=True, slots=True)
class Leader:
    """One leadership of an election, with the leader's current value."""

    name: str
    lease: int
    token: int
    """Strictly increasing per election: a fencing token for the leader's work."""
    revision: int
    value: bytes = b""

    @property
    def value_str(self) -> str:
        return self.value.decode(errors="replace")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One campaigner of an election, as ``candidates()`` lists them (queue order)."""

    lease: int
    value: bytes
    revision: int
    """The store revision when it joined the queue."""
    token: int = 0
    """The leadership's fencing token for the leader; 0 for a candidate that waits."""

    @property
    def value_str(self) -> str:
        return self.value.decode(errors="replace")


class HashMode(IntEnum):
    FAST = 1
    KETAMA = 2


@dataclass(frozen=True, slots=True)
class RingMember:
    id: str
    address: str = ""
    weight: int = 1
    lease: int = 0


@dataclass(frozen=True, slots=True)
class RingState:
    """A ring's version, settings and members (Ring.Get / Ring.Watch)."""

    name: str
    version: int
    """0 when the ring does not exist."""
    hash_mode: HashMode = HashMode.FAST
    vnodes: int = 0
    members: tuple[RingMember, ...] = field(default_factory=tuple)


# ----------------------------------------------------------------- from protobuf


def _kv(pb: common_pb2.KeyValue) -> KeyValue:
    return KeyValue(pb.key, pb.value, pb.create_revision, pb.mod_revision, pb.version, pb.lease)


def _opt_kv(parent: object, name: str) -> KeyValue | None:
    return _kv(getattr(parent, name)) if parent.HasField(name) else None  # type: ignore[attr-defined]


def _event(pb: common_pb2.Event) -> Event:
    return Event(EventType(pb.type), _kv(pb.kv), _opt_kv(pb, "prev_kv"))


def _put(pb: kv_pb2.PutResponse) -> PutResult:
    return PutResult(pb.header.revision, _opt_kv(pb, "prev_kv"))


def _range(pb: kv_pb2.RangeResponse) -> RangeResult:
    return RangeResult(pb.header.revision, tuple(_kv(kv) for kv in pb.kvs), pb.count, pb.more)


def _delete(pb: kv_pb2.DeleteRangeResponse) -> DeleteResult:
    return DeleteResult(pb.header.revision, pb.deleted, tuple(_kv(kv) for kv in pb.prev_kvs))


def _txn(pb: kv_pb2.TxnResponse) -> TxnResult:
    out: list[OpResult] = []
    for op in pb.responses:
        which = op.WhichOneof("response")
        if which == "response_range":
            out.append(_range(op.response_range))
        elif which == "response_put":
            out.append(_put(op.response_put))
        elif which == "response_delete_range":
            out.append(_delete(op.response_delete_range))
        elif which == "response_txn":
            out.append(_txn(op.response_txn))
    return TxnResult(pb.succeeded, pb.header.revision, tuple(out))


def _lease_ttl(pb: lease_pb2.LeaseTimeToLiveResponse) -> LeaseInfo:
    return LeaseInfo(
        pb.id,
        pb.granted_ttl,
        pb.ttl,
        tuple(pb.keys),
        tuple(pb.locks),
        tuple(pb.elections),
        tuple((m.ring, m.member_id) for m in pb.ring_members),
    )


def _member(pb: cluster_pb2.Member) -> Member:
    return Member(pb.id, pb.name, pb.peer_address, pb.client_address, pb.is_learner)


def _status(endpoint: str, pb: cluster_pb2.ClusterStatusResponse) -> Status:
    return Status(
        endpoint=endpoint,
        member_id=pb.header.member_id,
        cluster_id=pb.header.cluster_id,
        version=pb.version,
        role=Role(pb.role) if pb.role in Role._value2member_map_ else Role.FOLLOWER,
        term=pb.header.raft_term,
        leader=pb.leader,
        is_learner=pb.is_learner,
        commit_index=pb.commit_index,
        applied_index=pb.applied_index,
        revision=pb.header.revision,
        log_first_index=pb.log_first_index,
        log_last_index=pb.log_last_index,
        log_entries=pb.log_entries,
        log_size_bytes=pb.log_size_bytes,
        snapshot_index=pb.snapshot_index,
        snapshot_term=pb.snapshot_term,
        snapshot_size_bytes=pb.snapshot_size_bytes,
    )


def _lock_info(name: str, pb: lock_pb2.LockInspectResponse) -> LockInfo:
    return LockInfo(
        name,
        pb.permits,
        tuple(LockHolder(h.token, h.lease, h.owner, h.revision) for h in pb.holders),
        tuple(LockWaiter(w.lease, w.owner, w.revision) for w in pb.waiters),
    )


def _leader(key: election_pb2.LeaderKey, value: bytes) -> Leader:
    return Leader(key.name, key.lease, key.token, key.revision, value)


def _ring_member(pb: ring_pb2.RingMember) -> RingMember:
    return RingMember(pb.id, pb.address, pb.weight, pb.lease)


def _ring_state(
    name: str, version: int, settings: ring_pb2.RingSettings | None, members: object
) -> RingState:
    mode = HashMode(settings.hash_mode) if settings is not None and settings.hash_mode else HashMode.FAST
    vnodes = settings.vnodes if settings is not None else 0
    return RingState(name, version, mode, vnodes, tuple(_ring_member(m) for m in members))  # type: ignore[attr-defined]
