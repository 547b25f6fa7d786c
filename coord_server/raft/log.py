"""The Raft log as the core sees it: a persisted part in Storage and an unstable tail.

    storage:   [first ............ stable last]
    unstable:                  [offset ............ last]      (may overlap storage:
                                                                 a newer leader's suffix
                                                                 replaces a stored one)

Rule 1: ``unstable`` holds entries (and possibly an incoming snapshot) that the
        application has not yet reported persisted. They are handed out in ``Ready`` and
        leave ``unstable`` on ``stable_to`` / ``stable_snap_to``.
Rule 2: where both hold an index, ``unstable`` wins: it is newer.
Rule 3: ``applied <= committed``; only entries that are committed *and* persisted here are
        handed out for applying, so nothing the state machine saw can vanish in a crash.
"""

from __future__ import annotations

from .errors import CompactedError, UnavailableError
from .messages import Entry, Snapshot
from .storage import Storage, limit_size


class Unstable:
    """Entries and a snapshot not yet persisted; ``offset`` is the index of ``entries[0]``."""

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        if self.snapshot is not None:
            return self.snapshot.meta.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.meta.index
        return None

    def maybe_term(self, index: int) -> int | None:
        if index < self.offset:
            if self.snapshot is not None and self.snapshot.meta.index == index:
                return self.snapshot.meta.term
            return None
        last = self.maybe_last_index()
        if last is None or index > last:
            return None
        return self.entries[index - self.offset].term

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (with ``term``) are persisted; drop them if still ours."""
        got = self.maybe_term(index)
        if got is None or got != term or index < self.offset:
            return
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1

    def stable_snap_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.meta.index == index:
            self.snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        self.offset = snapshot.meta.index + 1
        self.entries = []
        self.snapshot = snapshot

    def truncate_and_append(self, entries: list[Entry]) -> None:
        first = entries[0].index
        if first == self.offset + len(self.entries):
            self.entries.extend(entries)
        elif first <= self.offset:
            # Replaces everything unstable (and the caller knows storage will be
            # overwritten from ``first`` on when these are persisted).
            self.offset = first
            self.entries = list(entries)
        else:
            del self.entries[first - self.offset :]
            self.entries.extend(entries)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        return self.entries[lo - self.offset : hi - self.offset]


class RaftLog:
    """The log: Storage for what is persisted, Unstable for the rest, plus commit/applied."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed = first - 1
        """Highest index known to be committed."""
        self.applied = first - 1
        """Highest index the application has applied (reported through ``advance``)."""
        self.applying = first - 1
        """Highest index handed out for applying but not yet reported applied."""

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, unstable={len(self.unstable.entries)})"
        )

    # -- bounds and terms ------------------------------------------------------------

    def first_index(self) -> int:
        index = self.unstable.maybe_first_index()
        return index if index is not None else self.storage.first_index()

    def last_index(self) -> int:
        index = self.unstable.maybe_last_index()
        return index if index is not None else self.storage.last_index()

    def last_term(self) -> int:
        return self.term(self.last_index())

    def term(self, index: int) -> int:
        """The term at ``index``; raises CompactedError / UnavailableError outside the log."""
        dummy = self.first_index() - 1
        if index < dummy:
            raise CompactedError(index, dummy + 1)
        if index > self.last_index():
            raise UnavailableError(index, self.last_index())
        term = self.unstable.maybe_term(index)
        if term is not None:
            return term
        return self.storage.term(index)

    def term_or_zero(self, index: int) -> int:
        """The term at ``index``, or 0 when it is compacted or beyond the log."""
        try:
            return self.term(index)
        except (CompactedError, UnavailableError):
            return 0

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term(index) == term
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """§5.4.1: a candidate's log is at least as up to date as ours."""
        our_term = self.last_term()
        return term > our_term or (term == our_term and last_index >= self.last_index())

    def stable_last_index(self) -> int:
        """The last index this node has persisted (``storage.last_index()``), ignoring a
        stored suffix that an unstable one is about to replace."""
        return min(self.storage.last_index(), self.unstable.offset - 1)

    # -- reading entries ---------------------------------------------------------------

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries in ``[lo, hi)``, at most ``max_bytes`` of data (always at least one)."""
        if lo > hi:
            raise ValueError(f"invalid slice [{lo}, {hi})")
        first = self.first_index()
        if lo < first:
            raise CompactedError(lo, first)
        if hi > self.last_index() + 1:
            raise UnavailableError(hi - 1, self.last_index())
        if lo == hi:
            return []
        result: list[Entry] = []
        offset = self.unstable.offset
        if lo < offset:
            stored = self.storage.entries(lo, min(hi, offset), max_bytes)
            if len(stored) < min(hi, offset) - lo:
                return stored  # size limit reached inside storage
            result = stored
        if hi > offset:
            result = result + self.unstable.slice(max(lo, offset), hi)
        return limit_size(result, max_bytes)

    def entries_from(self, lo: int, max_bytes: int | None = None, max_count: int | None = None) -> list[Entry]:
        """Entries from ``lo`` to the end, bounded in bytes and count."""
        last = self.last_index()
        if lo > last:
            return []
        hi = last + 1 if max_count is None else min(last + 1, lo + max_count)
        return self.slice(lo, hi, max_bytes)

    def all_entries(self) -> list[Entry]:
        return self.entries_from(self.first_index())

    # -- appending -------------------------------------------------------------------

    def find_conflict(self, entries: tuple[Entry, ...] | list[Entry]) -> int:
        """The index of the first entry whose term differs from ours, or that we lack; 0
        if every entry is already in the log."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest (i, term(i)) with i <= ``index`` and term(i) <= ``term``.

        Fast back-off: a follower rejecting an APP at ``index`` tells the leader where its
        log could match, skipping a whole term of divergent entries per round trip.
        """
        index = min(index, self.last_index())
        while True:
            try:
                our_term = self.term(index)
            except CompactedError:
                return index, 0
            if our_term <= term:
                return index, our_term
            index -= 1

    def append(self, entries: list[Entry]) -> int:
        """Append (replacing any conflicting suffix) and return the new last index."""
        if not entries:
            return self.last_index()
        if entries[0].index - 1 < self.committed:
            raise AssertionError(
                f"refusing to overwrite committed entries: append at {entries[0].index}, "
                f"committed {self.committed}"
            )
        self.unstable.truncate_and_append(entries)
        return self.last_index()

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: tuple[Entry, ...]
    ) -> int | None:
        """Follower side of APP: if our entry at ``index`` has ``log_term``, append what is
        new and advance commit; return the last index now known to match the leader, or
        None when the log does not match (the caller rejects)."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise AssertionError(
                    f"entry {conflict} conflicts with a committed entry (committed {self.committed})"
                )
            self.append(list(entries[conflict - entries[0].index :]))
        self.commit_to(min(committed, last_new))
        return last_new

    # -- commit, apply, persist --------------------------------------------------------

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(
                    f"commit index {index} is past the last index {self.last_index()}"
                )
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """§5.4.2: commit up to ``index`` only if that entry is from the current ``term``."""
        if index > self.committed and self.term_or_zero(index) == term:
            self.commit_to(index)
            return True
        return False

    def max_appliable_index(self) -> int:
        return min(self.committed, self.stable_last_index())

    def has_next_committed_entries(self) -> bool:
        return self.max_appliable_index() > self.applying

    def next_committed_entries(self, max_bytes: int | None = None) -> list[Entry]:
        lo = self.applying + 1
        hi = self.max_appliable_index() + 1
        if lo >= hi:
            return []
        return self.slice(lo, hi, max_bytes)

    def accept_applying(self, index: int) -> None:
        self.applying = max(self.applying, index)

    def applied_to(self, index: int) -> None:
        if index == 0:
            return
        if index > self.committed or index < self.applied:
            raise AssertionError(
                f"applied index {index} is outside [applied {self.applied}, committed {self.committed}]"
            )
        self.applied = index
        self.applying = max(self.applying, index)

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        self.unstable.stable_snap_to(index)

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the log with ``snapshot`` (a follower behind the leader's compaction)."""
        self.committed = snapshot.meta.index
        self.unstable.restore(snapshot)
        # The state machine will be replaced by the snapshot: nothing below it is applied
        # from the log any more.
        self.applying = max(self.applying, snapshot.meta.index)

    def pending_snapshot(self) -> Snapshot | None:
        return self.unstable.snapshot
