"""Checks of request contents that do not depend on the state: pure functions.

Rule 1: each ``validate_*`` raises a domain error (``errors``) or returns None; it reads
        only its argument. The services call them at the edge, before proposing, so a
        malformed request never reaches the log; the state machine calls them again when
        applying, because the log may hold anything (a bad entry must be refused the same
        way on every member, never crash them).
Rule 2: what does depend on the state (a lease that must exist, a key that must exist for
        ignore_value, a revision that must not be compacted) is checked when applying, in
        the modules that own that state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from coord.raft.v1 import command_pb2
from coord.v1 import election_pb2, kv_pb2, lease_pb2, lock_pb2, ring_pb2
from coord_common import hashring

from . import keys
from coord_server.errors import DuplicateKey, EmptyKey, InvalidArgument, NotFound, OutOfRange, TooManyOperations
from .limits import (
    MAX_CLIENT_ID_BYTES,
    MAX_ELECTION_VALUE_BYTES,
    MAX_KEEPALIVE_IDS,
    MAX_KEY_BYTES,
    MAX_LEASE_TTL,
    MAX_NAME_BYTES,
    MAX_OWNER_BYTES,
    MAX_TXN_OPS,
    MIN_LEASE_TTL,
)

_SORT_ORDERS = frozenset(kv_pb2.SortOrder.values())
_SORT_TARGETS = frozenset(kv_pb2.SortTarget.values())

# CompareTarget -> the member of Compare.target_union it must set.
_UNION_OF_TARGET = {
    kv_pb2.COMPARE_TARGET_VERSION: "version",
    kv_pb2.COMPARE_TARGET_CREATE_REVISION: "create_revision",
    kv_pb2.COMPARE_TARGET_MOD_REVISION: "mod_revision",
    kv_pb2.COMPARE_TARGET_VALUE: "value",
    kv_pb2.COMPARE_TARGET_LEASE: "lease",
    kv_pb2.COMPARE_TARGET_LOCK_TOKEN: "lock_token",
}
_COMPARE_RESULTS = frozenset(
    {
        kv_pb2.COMPARE_RESULT_EQUAL,
        kv_pb2.COMPARE_RESULT_GREATER,
        kv_pb2.COMPARE_RESULT_LESS,
        kv_pb2.COMPARE_RESULT_NOT_EQUAL,
    }
)


def validate_key(key: bytes, what: str = "key") -> None:
    """A key: not empty, at most 4 KiB."""
    if not key:
        raise EmptyKey(f"{what} must not be empty")
    if len(key) > MAX_KEY_BYTES:
        raise InvalidArgument(f"{what} is {len(key)} bytes; the limit is {MAX_KEY_BYTES}")


def validate_range_end(range_end: bytes) -> None:
    """A range end: any bytes (empty, "\\0" and below-key ends are meaningful), at most 4 KiB."""
    if len(range_end) > MAX_KEY_BYTES:
        raise InvalidArgument(
            f"range_end is {len(range_end)} bytes; the limit is {MAX_KEY_BYTES}"
        )


def validate_range(req: kv_pb2.RangeRequest) -> None:
    """RangeRequest: key, range_end, limit not negative, known sort enums. The revision is
    checked against the state (OUT_OF_RANGE) when read."""
    validate_key(req.key)
    validate_range_end(req.range_end)
    if req.limit < 0:
        raise InvalidArgument(f"limit must not be negative, got {req.limit}")
    if req.sort_order not in _SORT_ORDERS:
        raise InvalidArgument(f"unknown sort_order {req.sort_order}")
    if req.sort_target not in _SORT_TARGETS:
        raise InvalidArgument(f"unknown sort_target {req.sort_target}")


def validate_put(req: kv_pb2.PutRequest) -> None:
    """PutRequest: key; ignore_value only with an empty value, ignore_lease only with
    lease 0."""
    validate_key(req.key)
    if req.ignore_value and req.value:
        raise InvalidArgument("value must be empty when ignore_value is set")
    if req.ignore_lease and req.lease:
        raise InvalidArgument("lease must be 0 when ignore_lease is set")


def validate_delete_range(req: kv_pb2.DeleteRangeRequest) -> None:
    """DeleteRangeRequest: key and range_end."""
    validate_key(req.key)
    validate_range_end(req.range_end)


def validate_compare(cmp: kv_pb2.Compare) -> None:
    """Compare: a known result and target, the matching target_union member set; a key
    (and optional range_end) for key targets, a lock name and no key for LOCK_TOKEN."""
    if cmp.result not in _COMPARE_RESULTS:
        raise InvalidArgument(f"compare result {cmp.result} is unspecified or unknown")
    union = _UNION_OF_TARGET.get(cmp.target)
    if union is None:
        raise InvalidArgument(f"compare target {cmp.target} is unspecified or unknown")
    if cmp.WhichOneof("target_union") != union:
        raise InvalidArgument(
            f"compare on {kv_pb2.CompareTarget.Name(cmp.target)} must set {union}"
        )
    if cmp.target == kv_pb2.COMPARE_TARGET_LOCK_TOKEN:
        if cmp.key or cmp.range_end:
            raise InvalidArgument("a LOCK_TOKEN compare takes lock_name, not key or range_end")
        validate_key(cmp.lock_name.encode(), "lock_name")
    else:
        if cmp.lock_name:
            raise InvalidArgument("lock_name is only allowed in a LOCK_TOKEN compare")
        validate_key(cmp.key)
        validate_range_end(cmp.range_end)


def validate_txn(req: kv_pb2.TxnRequest) -> None:
    """TxnRequest: every compare and operation, recursively; at most 128 operations and
    128 comparisons in the whole tree; no key written twice in one branch (etcd's rule:
    no key put twice, and no put inside a range deleted, across nested txns too; a key
    may be put in both branches of one nested txn, since only one runs)."""
    ops, compares = _count(req)
    if ops > MAX_TXN_OPS:
        raise TooManyOperations(f"txn has {ops} operations; the limit is {MAX_TXN_OPS}")
    if compares > MAX_TXN_OPS:
        raise TooManyOperations(f"txn has {compares} comparisons; the limit is {MAX_TXN_OPS}")
    _check_contents(req)
    _writes(req.success)
    _writes(req.failure)


def validate_compact(req: kv_pb2.CompactRequest) -> None:
    """CompactRequest: a positive revision (0 and below are always at or below the last
    compaction, so OUT_OF_RANGE as the state would say)."""
    if req.revision <= 0:
        raise OutOfRange(f"compact revision must be positive, got {req.revision}")


def validate_lease_grant(req: lease_pb2.LeaseGrantRequest) -> None:
    """LeaseGrantRequest: TTL within [1, 9e9] seconds, ID not negative (0 = choose one)."""
    if req.ttl < MIN_LEASE_TTL or req.ttl > MAX_LEASE_TTL:
        raise InvalidArgument(
            f"ttl must be between {MIN_LEASE_TTL} and {MAX_LEASE_TTL} seconds, got {req.ttl}"
        )
    if req.id < 0:
        raise InvalidArgument(f"lease id must not be negative, got {req.id}")


def validate_lease_revoke(req: lease_pb2.LeaseRevokeRequest) -> None:
    """LeaseRevokeRequest: lease IDs are positive, so any other ID names no lease."""
    if req.id <= 0:
        raise NotFound(f"lease {req.id} not found")


def validate_lease_keepalive(req: lease_pb2.LeaseKeepAliveRequest) -> None:
    """LeaseKeepAliveRequest: ``id`` or at most MAX_KEEPALIVE_IDS ``ids``, not both. (An
    ID that names no lease is answered with TTL 0, not refused.)"""
    if req.ids and req.id:
        raise InvalidArgument("a keepalive renews either id or ids, not both")
    if len(req.ids) > MAX_KEEPALIVE_IDS:
        raise InvalidArgument(f"a keepalive renews at most {MAX_KEEPALIVE_IDS} leases, got {len(req.ids)}")


def validate_client(client_id: str) -> None:
    """The `coord-client-id` of a Command: at most 128 bytes."""
    size = len(client_id.encode())
    if size > MAX_CLIENT_ID_BYTES:
        raise InvalidArgument(
            f"client id is {size} bytes; the limit is {MAX_CLIENT_ID_BYTES}"
        )


def validate_command(cmd: command_pb2.Command) -> None:
    """A whole Command: its client id and its operation (exactly one, of a known kind)."""
    validate_client(cmd.client_id)
    which = cmd.WhichOneof("op")
    if which is None:
        raise InvalidArgument("command has no operation, or one this version does not know")
    check = _OP_CHECKS.get(which)
    if check is not None:
        check(getattr(cmd, which))


# ---------------------------------------------------------------- locks, elections, rings


def validate_name(name: str, what: str) -> None:
    """A lock, election or ring name, or a ring member id: not empty, at most 4 KiB."""
    if not name:
        raise InvalidArgument(f"{what} must not be empty")
    size = len(name.encode())
    if size > MAX_NAME_BYTES:
        raise InvalidArgument(f"{what} is {size} bytes; the limit is {MAX_NAME_BYTES}")


def _validate_lease(lease: int) -> None:
    """A lease a lock or candidate binds to: 0 is malformed, a negative ID names no lease."""
    if lease == 0:
        raise InvalidArgument("lease must be set (a lock or a candidacy is bound to a lease)")
    if lease < 0:
        raise NotFound(f"lease {lease} not found")


def validate_lock_acquire(req: lock_pb2.LockAcquireRequest) -> None:
    """LockAcquireRequest: name, a lease, an owner of at most 256 bytes."""
    validate_name(req.name, "lock name")
    _validate_lease(req.lease)
    size = len(req.owner.encode())
    if size > MAX_OWNER_BYTES:
        raise InvalidArgument(f"owner is {size} bytes; the limit is {MAX_OWNER_BYTES}")


def validate_lock_release(req: lock_pb2.LockReleaseRequest) -> None:
    """LockReleaseRequest: name and a token (tokens are never 0)."""
    validate_name(req.name, "lock name")
    if req.token == 0:
        raise InvalidArgument("token must be set")


def validate_lock_inspect(req: lock_pb2.LockInspectRequest) -> None:
    validate_name(req.name, "lock name")


def validate_wait_cancel(req: command_pb2.WaitCancel) -> None:
    """WaitCancel: the name and a positive lease."""
    validate_name(req.name, "name")
    if req.lease <= 0:
        raise InvalidArgument(f"lease must be positive, got {req.lease}")


def validate_election_campaign(req: election_pb2.ElectionCampaignRequest) -> None:
    """ElectionCampaignRequest: name, a lease, a value of at most 1 MiB."""
    validate_name(req.name, "election name")
    _validate_lease(req.lease)
    _validate_value(req.value)


def _validate_value(value: bytes) -> None:
    if len(value) > MAX_ELECTION_VALUE_BYTES:
        raise InvalidArgument(
            f"value is {len(value)} bytes; the limit is {MAX_ELECTION_VALUE_BYTES}"
        )


def validate_leader_key(req: Any) -> None:
    """A request with a ``leader`` LeaderKey (Proclaim, Resign): name, lease and token
    set, or INVALID_ARGUMENT (a missing leader key)."""
    if not req.HasField("leader"):
        raise InvalidArgument("leader key is missing")
    key = req.leader
    validate_name(key.name, "leader key name")
    if key.lease == 0 or key.token == 0:
        raise InvalidArgument("leader key must carry the lease and token from Campaign")


def validate_election_proclaim(req: election_pb2.ElectionProclaimRequest) -> None:
    validate_leader_key(req)
    _validate_value(req.value)


def validate_election_resign(req: election_pb2.ElectionResignRequest) -> None:
    validate_leader_key(req)


def validate_ring_settings(settings: ring_pb2.RingSettings) -> None:
    """RingSettings: a known hash mode, vnodes at most 1024."""
    if settings.hash_mode not in (ring_pb2.HASH_MODE_UNSPECIFIED, ring_pb2.HASH_MODE_FAST, ring_pb2.HASH_MODE_KETAMA):
        raise InvalidArgument(f"unknown hash mode {settings.hash_mode}")
    if settings.vnodes > hashring.MAX_VNODES:
        raise InvalidArgument(f"vnodes must be at most {hashring.MAX_VNODES}, got {settings.vnodes}")


def validate_ring_join(req: ring_pb2.RingJoinRequest) -> None:
    """RingJoinRequest: ring name, member id, weight at most 65535 (0 means 1), settings;
    a negative lease names no lease."""
    validate_name(req.ring, "ring name")
    validate_name(req.member_id, "member id")
    if req.weight > hashring.MAX_WEIGHT:
        raise InvalidArgument(f"weight must be between 1 and {hashring.MAX_WEIGHT}, got {req.weight}")
    if req.lease < 0:
        raise NotFound(f"lease {req.lease} not found")
    validate_ring_settings(req.settings)


def validate_ring_leave(req: ring_pb2.RingLeaveRequest) -> None:
    validate_name(req.ring, "ring name")
    validate_name(req.member_id, "member id")


_OP_CHECKS: dict[str, Callable[[Any], None]] = {
    "put": validate_put,
    "delete_range": validate_delete_range,
    "txn": validate_txn,
    "compact": validate_compact,
    "lease_grant": validate_lease_grant,
    "lease_revoke": validate_lease_revoke,
    "lock_acquire": validate_lock_acquire,
    "lock_release": validate_lock_release,
    "lock_cancel": validate_wait_cancel,
    "election_campaign": validate_election_campaign,
    "election_proclaim": validate_election_proclaim,
    "election_resign": validate_election_resign,
    "election_cancel": validate_wait_cancel,
    "ring_join": validate_ring_join,
    "ring_leave": validate_ring_leave,
}


def _count(req: kv_pb2.TxnRequest) -> tuple[int, int]:
    ops, compares = 0, len(req.compare)
    for branch in (req.success, req.failure):
        for op in branch:
            ops += 1
            if op.WhichOneof("request") == "request_txn":
                nested_ops, nested_compares = _count(op.request_txn)
                ops += nested_ops
                compares += nested_compares
    return ops, compares


def _check_contents(req: kv_pb2.TxnRequest) -> None:
    for cmp in req.compare:
        validate_compare(cmp)
    for branch in (req.success, req.failure):
        for op in branch:
            which = op.WhichOneof("request")
            if which == "request_range":
                validate_range(op.request_range)
            elif which == "request_put":
                validate_put(op.request_put)
            elif which == "request_delete_range":
                validate_delete_range(op.request_delete_range)
            elif which == "request_txn":
                _check_contents(op.request_txn)
            else:
                raise InvalidArgument("txn operation has no request set")


def _writes(branch: Iterable[kv_pb2.RequestOp]) -> tuple[set[bytes], list[keys.Span]]:
    """The keys put and the spans deleted by ``branch`` and the txns nested in it; raise
    InvalidArgument when the branch would write a key twice (etcd's checkIntervals)."""
    ops = list(branch)
    dels: list[keys.Span] = [
        keys.span(op.request_delete_range.key, op.request_delete_range.range_end)
        for op in ops
        if op.WhichOneof("request") == "request_delete_range"
    ]
    puts: set[bytes] = set()
    for op in ops:
        if op.WhichOneof("request") != "request_txn":
            continue
        then_puts, then_dels = _writes(op.request_txn.success)
        else_puts, else_dels = _writes(op.request_txn.failure)
        for k in then_puts:
            _claim(k, puts, dels)
        for k in else_puts:
            if k in puts and k in then_puts:
                continue  # the two branches of one txn never both run
            _claim(k, puts, dels)
        dels.extend(then_dels)
        dels.extend(else_dels)
    for op in ops:
        if op.WhichOneof("request") == "request_put":
            _claim(op.request_put.key, puts, dels)
    return puts, dels


def _claim(k: bytes, puts: set[bytes], dels: list[keys.Span]) -> None:
    if k in puts or any(keys.contains(s, k) for s in dels):
        raise DuplicateKey(f"txn writes key {k!r} more than once in one branch")
    puts.add(k)
