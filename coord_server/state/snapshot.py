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
Rule 3: the bytes are a head (every part but the history) followed by history chunks of
        at most HISTORY_CHUNK_KEYS keys, each a StateSnapshot of its own holding only
        ``history``. Protobuf merges a message field that occurs several times and
        concatenates repeated fields, so the concatenation decodes as one StateSnapshot;
        and the chunks can be encoded one at a time, between other work on the event
        loop, and written as they come (coord_server/snapshotter.py), never all in memory.
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field

from coord.raft.v1 import command_pb2
from coord.v1 import cluster_pb2

from .kv import CREATE, LEASE, MOD, SUB, VALUE, VERSION, MVCCStore, Record

FORMAT = 1
"""The StateSnapshot layout this version writes and reads."""
HISTORY_CHUNK_KEYS = 4096
"""Keys per history chunk (Rule 3): about 5-10 ms of encoding on a busy machine."""


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
    columns: HistoryColumns | None = None
    """Set by ``decode``: the history in columns."""


class ImageOutdated(Exception):
    """The store was compacted while its image was being encoded: the image is lost."""


class SnapshotImage:
    """The state at one point, encoded chunk by chunk while the store goes on changing
    (Rule 3). The head is encoded at once; ``chunks`` reads each key's records up to the
    image's revision, which later writes never change (kv.py: records are immutable and
    histories only grow), unless a compaction drops some: then ImageOutdated."""

    def __init__(self, head: bytes, store: MVCCStore) -> None:
        self.head = head
        self.store = store
        self.revision = store.revision
        self.compact_revision = store.compact_revision
        self._runs = store.key_runs()
        self.key_count = len(self._runs[0]) + len(self._runs[1])

    def key_chunks(self, keys_per_chunk: int) -> Iterator[list[bytes]]:
        """The image's keys in ascending order, ``keys_per_chunk`` at a time: the two runs
        of ``key_runs`` merged a chunk at a time (each ``next`` is O(chunk)). The merged
        whole then becomes the store's sorted index (``adopt_index``), so that its tail
        of new keys stays short and nobody sorts it all at once on the loop."""
        old, new = self._runs[0], self._runs[1]
        n = keys_per_chunk
        merged: list[bytes] = []
        i = j = 0
        while i < len(old) or j < len(new):
            if j >= len(new):
                take = old[i : i + n]
                i += len(take)
            elif i >= len(old):
                take = new[j : j + n]
                j += len(take)
            else:
                # The n smallest of the next n of each run are the merge's next n.
                take = old[i : i + n] + new[j : j + n]
                take.sort()  # two sorted runs: one merge pass
                del take[n:]
                last = take[-1]
                i = bisect_right(old, last, i, min(len(old), i + n))
                j = bisect_right(new, last, j, min(len(new), j + n))
            merged += take
            yield take
        self.store.adopt_index(self._runs, merged)

    def chunks(self, keys_per_chunk: int = HISTORY_CHUNK_KEYS) -> Iterator[bytes]:
        """The history chunks, one per ``next``; the caller may let the store change between
        two of them."""
        for keys in self.key_chunks(keys_per_chunk):
            histories = None
            if self.store.compact_revision == self.compact_revision:
                histories = self.store.histories_at(keys, self.revision)
            if histories is None:
                raise ImageOutdated(f"the store was compacted at revision {self.store.compact_revision} "
                                    f"while its image at revision {self.revision} was being encoded")
            yield encode_history(histories)

    def encode(self) -> bytes:
        """All of it at once."""
        return b"".join([self.head, *self.chunks()])


def encode(parts: SnapshotParts) -> bytes:
    """The StateSnapshot bytes of ``parts`` (Rule 3: head, then history chunks)."""
    history = parts.history
    pieces = [encode_head(parts)]
    for at in range(0, len(history), HISTORY_CHUNK_KEYS):
        pieces.append(encode_history(history[at : at + HISTORY_CHUNK_KEYS]))
    return b"".join(pieces)


def encode_head(parts: SnapshotParts) -> bytes:
    """Everything but ``parts.history`` (Rule 3)."""
    snap = command_pb2.StateSnapshot(
        format=FORMAT,
        applied_index=parts.applied_index,
        revision=parts.revision,
        compact_revision=parts.compact_revision,
    )
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


def encode_history(history: list[tuple[bytes, list[Record]]]) -> bytes:
    """One history chunk (Rule 3): the keys of ``history`` in order, with their records."""
    snap = command_pb2.StateSnapshot()
    h = snap.history
    h.keys.extend([k for k, _ in history])
    h.counts.extend([len(hist) for _, hist in history])
    records = [rec for _, hist in history for rec in hist]
    h.mod_revisions.extend([r[MOD] for r in records])
    h.subs.extend([r[SUB] for r in records])
    h.create_revisions.extend([r[CREATE] for r in records])
    h.versions.extend([r[VERSION] for r in records])
    h.values.extend([r[VALUE] for r in records])
    h.leases.extend([r[LEASE] for r in records])
    return snap.SerializeToString()


@dataclass
class HistoryColumns:
    """The history as decoded: keys in order, each key's record count, and every record
    (``rows``, key by key): what MVCCStore.load_columns builds the store from without a
    list per key."""

    keys: list[bytes]
    counts: list[int]
    rows: list[Record]

    def histories(self) -> list[tuple[bytes, list[Record]]]:
        rows = self.rows
        out = []
        at = 0
        for key, count in zip(self.keys, self.counts):
            out.append((key, rows[at : at + count]))
            at += count
        return out


def decode(data: bytes, *, with_history: bool = True) -> SnapshotParts:
    """The parts of StateSnapshot bytes; SnapshotError when they are not sound (Rule 2).
    The history is in ``columns``; also in ``history`` unless ``with_history`` is False."""
    try:
        snap = command_pb2.StateSnapshot.FromString(data)
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a bad snapshot
        raise SnapshotError(f"state snapshot does not decode: {exc}") from None
    if snap.format != FORMAT:
        raise SnapshotError(f"state snapshot format {snap.format} is not {FORMAT}")
    h = snap.history
    n = len(h.mod_revisions)
    columns = (h.subs, h.create_revisions, h.versions, h.values, h.leases)
    keys = list(h.keys)
    counts = list(h.counts)
    if len(counts) != len(keys) or any(len(c) != n for c in columns) or sum(counts) != n:
        raise SnapshotError("state snapshot history columns have different lengths")
    if (keys and min(counts) < 1) or not all(map(operator.lt, keys[:-1], keys[1:])):
        raise SnapshotError("state snapshot keys are not sorted, unique and non-empty")
    rows = list(zip(h.mod_revisions, h.subs, h.create_revisions, h.versions, h.values, h.leases))
    found = HistoryColumns(keys, counts, rows)
    return SnapshotParts(
        applied_index=snap.applied_index,
        revision=snap.revision,
        compact_revision=snap.compact_revision,
        history=found.histories() if with_history else [],
        leases=[(rec.id, rec.ttl, rec.owner) for rec in snap.leases],
        sessions=[(s.client_id, s.seq, s.last_index, s.result) for s in snap.sessions],
        members=list(snap.members),
        locks=list(snap.locks),
        elections=list(snap.elections),
        rings=list(snap.rings),
        auth=snap.auth,
        columns=found,
    )
