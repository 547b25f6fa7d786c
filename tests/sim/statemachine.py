"""The toy application of the Raft test harnesses (tests/sim's Simulator and tests/raft's
Network): a state machine that is a digest of everything it applied.

Rule 1: applying entry i folds (index, term, type, data) into a running digest, so two
        nodes hold the same digest at index i exactly when they applied the same prefix.
Rule 2: it tracks the membership its applied CONF_CHANGE entries imply, independently of
        the core, so a snapshot's ``conf_state`` can be checked against it.
Rule 3: a snapshot's data is (applied index, digest) and, with ``keep_values``, the
        (index, data) of every NORMAL entry with data applied so far (what the scenario
        tests compare, ``values()``); restoring one resets all of it.
"""

from __future__ import annotations

import struct
from hashlib import blake2b

from coord_server.raft import ConfChange, ConfState, Entry, EntryType, Snapshot
from coord_server.raft.membership import apply_change

_ENTRY_HEADER = struct.Struct(">QQB")
_SNAPSHOT_HEADER = struct.Struct(">Q")
_ITEM = struct.Struct(">QI")
ZERO_DIGEST = bytes(8)


class StateMachine:
    """The volatile state machine of one node; a crash loses it, a snapshot restores it."""

    __slots__ = ("applied", "digest", "conf", "data")

    def __init__(self, keep_values: bool = False) -> None:
        self.applied = 0
        self.digest = ZERO_DIGEST
        self.conf = ConfState()
        self.data: list[tuple[int, bytes]] | None = [] if keep_values else None
        """With ``keep_values``: (index, data) of every applied NORMAL entry with data."""

    def values(self) -> list[bytes]:
        """The data of every applied NORMAL entry, in order (``keep_values`` only)."""
        assert self.data is not None, "a StateMachine(keep_values=True) keeps values"
        return [d for _, d in self.data]

    def apply(self, entry: Entry) -> None:
        """Fold ``entry`` into the digest; the caller checks it is the next index."""
        self.digest = blake2b(
            self.digest + _ENTRY_HEADER.pack(entry.index, entry.term, entry.type) + entry.data,
            digest_size=8,
        ).digest()
        self.applied = entry.index
        if entry.type == EntryType.CONF_CHANGE:
            self.conf = apply_change(self.conf, ConfChange.decode(entry.data))
        elif self.data is not None and entry.type == EntryType.NORMAL and entry.data:
            self.data.append((entry.index, entry.data))

    def snapshot_data(self) -> bytes:
        out = [_SNAPSHOT_HEADER.pack(self.applied), self.digest]
        for index, data in self.data or ():
            out += [_ITEM.pack(index, len(data)), data]
        return b"".join(out)

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the state with ``snapshot`` (an empty snapshot means: nothing applied)."""
        if snapshot.is_empty:
            self.applied, self.digest, self.conf = 0, ZERO_DIGEST, ConfState()
            if self.data is not None:
                self.data = []
            return
        self.applied, self.digest = decode_snapshot(snapshot.data)
        self.conf = snapshot.meta.conf_state
        if self.data is not None:
            self.data = _decode_values(snapshot.data)


_DIGEST_END = _SNAPSHOT_HEADER.size + len(ZERO_DIGEST)


def decode_snapshot(data: bytes) -> tuple[int, bytes]:
    """(applied index, digest) of a snapshot's data."""
    (applied,) = _SNAPSHOT_HEADER.unpack_from(data)
    return applied, bytes(data[_SNAPSHOT_HEADER.size : _DIGEST_END])


def _decode_values(data: bytes) -> list[tuple[int, bytes]]:
    pos, items = _DIGEST_END, []
    while pos < len(data):
        index, size = _ITEM.unpack_from(data, pos)
        pos += _ITEM.size
        items.append((index, bytes(data[pos : pos + size])))
        pos += size
    return items
