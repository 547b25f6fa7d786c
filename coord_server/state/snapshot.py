"""Snapshot encoding: the whole state as one ``StateSnapshot`` message (command.proto).

Why protobuf and not pickle or JSON: the format is declared (command.proto documents
every field), versioned (``format``), safe to decode from untrusted bytes, and its
encoding is deterministic for a given message: fields are written in number order and
repeated fields in list order, and the state machine fills every list in a fixed order
(keys ascending, leases and members by ID, sessions oldest first, locks, elections
and rings by name). Equal states therefore
give equal bytes, which the determinism tests compare. The multi-version history is stored
in columns (one packed array per record field) rather than one message per record, which
keeps encoding and decoding in protobuf's C code: a few hundred nanoseconds per record.

Rule 1: ``encode`` reads the parts, ``decode`` rebuilds them; derived indexes (the sorted
        key list, the change log, lease attachments) are rebuilt, never stored.
Rule 2: ``decode`` refuses anything it cannot fully trust with SnapshotError (a bad
        snapshot must stop the node loudly, not be half loaded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coord.raft.v1 import command_pb2
from coord.v1 import cluster_pb2

from .kv import CREATE, LEASE, MOD, SUB, VALUE, VERSION, Record

FORMAT = 1
"""The StateSnapshot layout this version writes and reads."""


class SnapshotError(ValueError):
    """The snapshot bytes are not a state this version can restore; the message says why."""


@dataclass
class SnapshotParts:
    """Everything a snapshot holds, in the orders Rule 1 of machine.py fixes."""

    applied_index: int
    revision: int
    compact_revision: int
    history: list[tuple[bytes, list[Record]]]
    leases: list[tuple[int, int, str]]
    """(ID, TTL, owner) of every lease."""
    sessions: list[tuple[str, int, int, bytes]]
    members: list[cluster_pb2.Member]
    locks: list[command_pb2.LockRecord] = field(default_factory=list)
    elections: list[command_pb2.ElectionRecord] = field(default_factory=list)
    rings: list[command_pb2.RingRecord] = field(default_factory=list)
    auth: command_pb2.AuthRecord = field(default_factory=command_pb2.AuthRecord)


def encode(parts: SnapshotParts) -> bytes:
    """The StateSnapshot bytes of ``parts``."""
    snap = command_pb2.StateSnapshot(
        format=FORMAT,
        applied_index=parts.applied_index,
        revision=parts.revision,
        compact_revision=parts.compact_revision,
    )
    h = snap.history
    key_list = [k for k, _ in parts.history]
    h.keys.extend(key_list)
    h.counts.extend(len(hist) for _, hist in parts.history)
    records = [rec for _, hist in parts.history for rec in hist]
    h.mod_revisions.extend(r[MOD] for r in records)
    h.subs.extend(r[SUB] for r in records)
    h.create_revisions.extend(r[CREATE] for r in records)
    h.versions.extend(r[VERSION] for r in records)
    h.values.extend(r[VALUE] for r in records)
    h.leases.extend(r[LEASE] for r in records)
    snap.leases.extend(command_pb2.LeaseRecord(id=i, ttl=t, owner=o) for i, t, o in parts.leases)
    snap.sessions.extend(
        command_pb2.SessionRecord(client_id=c, seq=s, last_index=i, result=r)
        for c, s, i, r in parts.sessions
    )
    snap.members.extend(parts.members)
    snap.locks.extend(parts.locks)
    snap.elections.extend(parts.elections)
    snap.rings.extend(parts.rings)
    if parts.auth.initialised:
        snap.auth.CopyFrom(parts.auth)  # unset until auth was first used: older bytes unchanged
    return snap.SerializeToString()


def decode(data: bytes) -> SnapshotParts:
    """The parts of StateSnapshot bytes; SnapshotError when they are not sound (Rule 2)."""
    try:
        snap = command_pb2.StateSnapshot.FromString(data)
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a bad snapshot
        raise SnapshotError(f"state snapshot does not decode: {exc}") from None
    if snap.format != FORMAT:
        raise SnapshotError(f"state snapshot format {snap.format} is not {FORMAT}")
    h = snap.history
    n = len(h.mod_revisions)
    columns = (h.subs, h.create_revisions, h.versions, h.values, h.leases)
    if len(h.counts) != len(h.keys) or any(len(c) != n for c in columns) or sum(h.counts) != n:
        raise SnapshotError("state snapshot history columns have different lengths")
    rows = list(
        zip(h.mod_revisions, h.subs, h.create_revisions, h.versions, h.values, h.leases)
    )
    history: list[tuple[bytes, list[Record]]] = []
    at = 0
    previous: bytes | None = None
    for key, count in zip(h.keys, h.counts):
        if count == 0 or (previous is not None and key <= previous):
            raise SnapshotError("state snapshot keys are not sorted, unique and non-empty")
        history.append((key, rows[at : at + count]))
        at += count
        previous = key
    return SnapshotParts(
        applied_index=snap.applied_index,
        revision=snap.revision,
        compact_revision=snap.compact_revision,
        history=history,
        leases=[(rec.id, rec.ttl, rec.owner) for rec in snap.leases],
        sessions=[(s.client_id, s.seq, s.last_index, s.result) for s in snap.sessions],
        members=list(snap.members),
        locks=list(snap.locks),
        elections=list(snap.elections),
        rings=list(snap.rings),
        auth=snap.auth,
    )
