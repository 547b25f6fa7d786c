"""The simulated application: a state machine that is a digest of everything it applied.

Rule 1: applying entry i folds (index, term, type, data) into a running digest, so two
        nodes hold the same digest at index i exactly when they applied the same prefix.
Rule 2: it tracks the membership its applied CONF_CHANGE entries imply, independently of
        the core, so a snapshot's ``conf_state`` can be checked against it.
Rule 3: a snapshot's data is (applied index, digest); restoring one resets all three.
"""

from __future__ import annotations

import struct
from hashlib import blake2b

from coord_server.raft import ConfChange, ConfState, Entry, EntryType, Snapshot
from coord_server.raft.membership import apply_change

_ENTRY_HEADER = struct.Struct(">QQB")
_SNAPSHOT_HEADER = struct.Struct(">Q")
ZERO_DIGEST = bytes(8)


class StateMachine:
    """The volatile state machine of one node; a crash loses it, a snapshot restores it."""

    __slots__ = ("applied", "digest", "conf")

    def __init__(self) -> None:
        self.applied = 0
        self.digest = ZERO_DIGEST
        self.conf = ConfState()

    def apply(self, entry: Entry) -> None:
        """Fold ``entry`` into the digest; the caller checks it is the next index."""
        self.digest = blake2b(
            self.digest + _ENTRY_HEADER.pack(entry.index, entry.term, entry.type) + entry.data,
            digest_size=8,
        ).digest()
        self.applied = entry.index
        if entry.type == EntryType.CONF_CHANGE:
            self.conf = apply_change(self.conf, ConfChange.decode(entry.data))

    def snapshot_data(self) -> bytes:
        return _SNAPSHOT_HEADER.pack(self.applied) + self.digest

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the state with ``snapshot`` (an empty snapshot means: nothing applied)."""
        if snapshot.is_empty:
            self.applied, self.digest, self.conf = 0, ZERO_DIGEST, ConfState()
            return
        self.applied, self.digest = decode_snapshot(snapshot.data)
        self.conf = snapshot.meta.conf_state


def decode_snapshot(data: bytes) -> tuple[int, bytes]:
    """(applied index, digest) of a snapshot's data."""
    (applied,) = _SNAPSHOT_HEADER.unpack_from(data)
    return applied, bytes(data[_SNAPSHOT_HEADER.size :])
