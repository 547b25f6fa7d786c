"""The core's view of durable state, and an in-memory implementation.

Rule 1: the core only *reads* storage. The application writes to it, in the order the
        ``Ready`` contract demands (snapshot, entries, hard state), and then calls
        ``RaftCore.advance``.
Rule 2: storage holds a contiguous log ``[first_index(), last_index()]``. Just before it
        sits a *dummy* position, the compacted prefix's last (index, term), taken from the
        latest snapshot; ``term(first_index() - 1)`` still answers.
Rule 3: asking for compacted entries raises ``CompactedError``; asking past the end raises
        ``UnavailableError``. Neither is a crash: the core reacts (sends a snapshot).

``MemoryStorage`` is the reference implementation the simulator uses; the durable one in
``coord_server.storage`` keeps the same contract.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Protocol

from .errors import CompactedError, SnapshotOutOfDateError, UnavailableError
from .messages import ConfState, Entry, HardState, Snapshot, SnapshotMeta


class Storage(Protocol):
    """Read-only access to the persisted log, hard state and latest snapshot."""

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the membership as of the latest snapshot."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries with index in ``[lo, hi)``; at least one if any, at most ``max_bytes``
        of data beyond the first."""
        ...

    def term(self, index: int) -> int:
        """The term of the entry at ``index``, valid from ``first_index() - 1``."""
        ...

    def first_index(self) -> int:
        """The index of the first entry still in the log (snapshot index + 1)."""
        ...

    def last_index(self) -> int:
        """The index of the last persisted entry (the snapshot index when the log is empty)."""
        ...

    def snapshot(self) -> Snapshot:
        """The latest snapshot, to send to a follower that is too far behind."""
        ...


_entry_data = attrgetter("data")


def limit_size(entries: list[Entry], max_bytes: int | None) -> list[Entry]:
    """The longest prefix of ``entries`` whose data fits ``max_bytes`` (always at least one)."""
    if max_bytes is None or not entries:
        return entries
    if sum(map(len, map(_entry_data, entries))) <= max_bytes:
        return entries  # the common case, summed at C speed
    total = len(entries[0].data)
    for i in range(1, len(entries)):
        total += len(entries[i].data)
        if total > max_bytes:
            return entries[:i]
    return entries


class MemoryStorage:
    """The whole log in a Python list; position 0 is the dummy entry of Rule 2."""

    def __init__(self, conf_state: ConfState | None = None) -> None:
        """An empty log. ``conf_state`` sets the starting membership without a bootstrap
        (tests; real clusters call ``RaftCore.bootstrap``)."""
        self.hard_state = HardState()
        self._snapshot = Snapshot(meta=SnapshotMeta(conf_state=conf_state or ConfState()))
        self._entries: list[Entry] = [Entry(term=0, index=0)]

    # -- reads (the Storage protocol) ---------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, self._snapshot.meta.conf_state

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        offset = self._entries[0].index
        if lo <= offset:
            raise CompactedError(lo, offset + 1)
        if hi > self.last_index() + 1:
            raise UnavailableError(hi - 1, self.last_index())
        return limit_size(self._entries[lo - offset : hi - offset], max_bytes)

    def term(self, index: int) -> int:
        offset = self._entries[0].index
        if index < offset:
            raise CompactedError(index, offset + 1)
        if index - offset >= len(self._entries):
            raise UnavailableError(index, self.last_index())
        return self._entries[index - offset].term

    def first_index(self) -> int:
        return self._entries[0].index + 1

    def last_index(self) -> int:
        return self._entries[0].index + len(self._entries) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- writes (the application's side) ------------------------------------------------

    def set_hard_state(self, hard_state: HardState) -> None:
        self.hard_state = hard_state

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log with ``snapshot`` (a follower installing the leader's)."""
        if snapshot.meta.index <= self._snapshot.meta.index:
            raise SnapshotOutOfDateError(snapshot.meta.index, self._snapshot.meta.index)
        self._snapshot = snapshot
        self._entries = [Entry(term=snapshot.meta.term, index=snapshot.meta.index)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record the state machine's image at applied ``index`` as the latest snapshot."""
        if index <= self._snapshot.meta.index:
            raise SnapshotOutOfDateError(index, self._snapshot.meta.index)
        if index > self.last_index():
            raise UnavailableError(index, self.last_index())
        meta = SnapshotMeta(index=index, term=self.term(index), conf_state=conf_state)
        self._snapshot = Snapshot(meta=meta, data=data)
        return self._snapshot

    def compact(self, index: int) -> None:
        """Drop entries up to and including ``index`` (keep it as the dummy entry)."""
        offset = self._entries[0].index
        if index <= offset:
            raise CompactedError(index, offset + 1)
        if index > self.last_index():
            raise UnavailableError(index, self.last_index())
        self._entries = self._entries[index - offset :]
        first = self._entries[0]
        self._entries[0] = Entry(term=first.term, index=first.index)

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append ``entries``, replacing any conflicting suffix (they must be contiguous)."""
        if not entries:
            return
        first_new = entries[0].index
        offset = self._entries[0].index
        if first_new > self.last_index() + 1:
            raise ValueError(
                f"append at index {first_new} leaves a gap after last index {self.last_index()}"
            )
        if first_new + len(entries) - 1 <= offset:
            return  # wholly compacted already
        if first_new <= offset:
            entries = entries[offset + 1 - first_new :]
            first_new = offset + 1
        del self._entries[first_new - offset :]
        self._entries.extend(entries)
