"""The multi-version key-value store: every key's history, a sorted key index, the change log.

Data structures and their costs (n keys with history, h records of one key, c changes
since the last compaction, k keys in a range):

- ``_history``: dict key -> its records, oldest first: the record itself when it is the
  only one (most keys: a list per key cost 96 bytes of a million-key store's ~600 per
  key), else a list of them. A record is a plain tuple
  ``(mod_revision, sub, create_revision, version, value, lease)``; ``version`` 0 marks a
  deletion (tombstone). The latest state of a key is the record or ``history[-1]``: O(1).
  The state at a past revision is found by bisecting the list on mod_revision: O(log h).
- ``_sorted`` + ``_unsorted``: every key with history, for range scans. New keys are
  appended to ``_unsorted`` (O(1) per put); the first range scan afterwards merges them
  into a new ``_sorted`` (Timsort on a sorted run plus a short tail: O(n) copying, done
  once per batch of new keys rather than once per key as insort would). A scan is then
  O(log n + k). ``_sorted`` is replaced, never changed in place, so a snapshot image can
  keep it as it was (``key_runs``).
- ``_log_revs`` / ``_log_keys``: the change log, one row (revision, key) per change in
  apply order, for watches: ``events_since`` bisects to the start revision and walks
  O(changes since then).
- ``_compactable``: the keys whose history holds more than their live value (two or more
  records, or a tombstone), so that compaction costs O(keys changed since the previous
  compaction), not O(n).
- ``_tombstoned``: the keys whose latest record is a tombstone, so that counting the live
  keys of a range is two bisections minus the tombstones in it (``count``), not a scan.

Rules:

Rule 1: writes happen only through a ``Write``: it appends records at one pending
        revision (current + 1) and remembers them, so reads inside a transaction see its
        own writes, and ``rollback`` can undo them exactly when a later operation fails.
        ``commit`` makes the revision current, if anything changed.
Rule 2: a key changes at most once per revision (validation refuses a Txn that would
        write a key twice); ``sub`` numbers a revision's changes in the order applied,
        which is the order of its events.
Rule 3: compaction at revision C keeps, for every key, the records that reads at C and
        later need: everything after C, and the last record at or before C unless it is
        a tombstone. Events at or before C are dropped (watches must start after C).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
import operator
from itertools import accumulate, chain, compress, repeat
from operator import itemgetter
from typing import Final

from coord.v1 import common_pb2

from . import keys as keyspan

Record = tuple[int, int, int, int, bytes, int]
"""(mod_revision, sub, create_revision, version, value, lease); version 0 = tombstone."""

# Field positions in a Record (Final, so that type checkers know each field's type).
MOD: Final = 0
SUB: Final = 1
CREATE: Final = 2
VERSION: Final = 3
VALUE: Final = 4
LEASE: Final = 5
_mod_of = itemgetter(MOD)

Change = tuple[bytes, "Record | None", Record]
"""One change of a Write: (key, the live record before it or None, the new record)."""

KeyValue = common_pb2.KeyValue
Event = common_pb2.Event
_PUT = common_pb2.EVENT_TYPE_PUT
_DELETE = common_pb2.EVENT_TYPE_DELETE

RECORD_OVERHEAD_BYTES: Final = 64
"""What one kept record costs besides its key and value bytes, in ``size_bytes`` (the
revisions, version and lease of an etcd revision record, roughly)."""


def _records(h: Record | list[Record]) -> list[Record]:
    """A key's records as a list (a new one when the key holds a single record)."""
    return h if isinstance(h, list) else [h]


def _last(h: Record | list[Record]) -> Record:
    return h[-1] if isinstance(h, list) else h


def record_size(key: bytes, rec: Record) -> int:
    return len(key) + len(rec[VALUE]) + RECORD_OVERHEAD_BYTES


def to_kv(key: bytes, rec: Record) -> common_pb2.KeyValue:
    """The public KeyValue of a live record."""
    return KeyValue(
        key=key,
        create_revision=rec[CREATE],
        mod_revision=rec[MOD],
        version=rec[VERSION],
        value=rec[VALUE],
        lease=rec[LEASE],
    )


def to_event(key: bytes, rec: Record, prev: Record | None) -> common_pb2.Event:
    """The public Event of a change, with prev_kv filled when there was a live value."""
    if rec[VERSION]:
        event = Event(type=_PUT, kv=to_kv(key, rec))
    else:
        event = Event(type=_DELETE, kv=KeyValue(key=key, mod_revision=rec[MOD]))
    if prev is not None:
        event.prev_kv.CopyFrom(to_kv(key, prev))
    return event


class MVCCStore:
    """The store. ``revision`` starts at 1 (the empty store, as etcd); ``compact_revision``
    is 0 until the first compaction."""

    __slots__ = (
        "revision",
        "compact_revision",
        "_history",
        "_sorted",
        "_unsorted",
        "_log_revs",
        "_log_keys",
        "_compactable",
        "_tombstoned",
        "size_bytes",
    )

    def __init__(self) -> None:
        self.revision = 1
        self.compact_revision = 0
        self._history: dict[bytes, Record | list[Record]] = {}
        self._sorted: list[bytes] = []
        self._unsorted: list[bytes] = []
        self._log_revs = array("q")
        self._log_keys: list[bytes] = []
        self._compactable: set[bytes] = set()
        self._tombstoned: set[bytes] = set()
        self.size_bytes = 0
        """Every kept record's key, value and overhead (record_size): the backend size the
        quota is checked against. Grows with each change, shrinks only with compaction,
        as etcd's database does; deterministic, so every member agrees."""

    # ------------------------------------------------------------------ reads

    def latest(self, key: bytes) -> Record | None:
        """The key's live record in the latest state (pending writes included), or None."""
        h = self._history.get(key)
        if h is None:
            return None
        rec = h[-1] if isinstance(h, list) else h
        return rec if rec[VERSION] else None

    def get(self, key: bytes, rev: int) -> Record | None:
        """The key's live record as of revision ``rev``, or None."""
        hist = self._history.get(key)
        if hist is None:
            return None
        if not isinstance(hist, list):
            return hist if hist[VERSION] and hist[MOD] <= rev else None
        rec = hist[-1]
        if rec[MOD] > rev:
            i = bisect_right(hist, rev, key=_mod_of)
            if i == 0:
                return None
            rec = hist[i - 1]
        return rec if rec[VERSION] else None

    def scan(self, span: keyspan.Span, rev: int | None) -> list[tuple[bytes, Record]]:
        """The live (key, record) pairs in ``span`` as of ``rev`` (None: the latest state),
        in ascending key order."""
        start, end = span
        if end is not None and end <= start:
            return []
        if end is not None and len(end) == len(start) + 1 and end == start + b"\x00":
            rec = self.latest(start) if rev is None else self.get(start, rev)
            return [] if rec is None else [(start, rec)]
        out: list[tuple[bytes, Record]] = []
        history = self._history
        if rev is None:
            for k in self._keys_in(start, end):
                h = history[k]
                rec = h[-1] if isinstance(h, list) else h
                if rec[VERSION]:
                    out.append((k, rec))
        else:
            get = self.get
            for k in self._keys_in(start, end):
                found = get(k, rev)
                if found is not None:
                    out.append((k, found))
        return out

    def _keys_in(self, start: bytes, end: bytes | None) -> list[bytes]:
        if self._unsorted:
            # A new list, never the old one changed in place: a snapshot image may hold
            # the old one (``key_runs``).
            merged = self._sorted + self._unsorted
            merged.sort()
            self._sorted = merged
            self._unsorted = []
        ordered = self._sorted
        lo = bisect_left(ordered, start)
        hi = len(ordered) if end is None else bisect_left(ordered, end, lo)
        return ordered[lo:hi]

    def count(self, span: keyspan.Span) -> int | None:
        """The number of live keys in ``span`` in the latest state, from the index: None
        when the tombstones in the range are too many to subtract one by one (then scan)."""
        start, end = span
        if end is not None and end <= start:
            return 0
        if end is not None and len(end) == len(start) + 1 and end == start + b"\x00":
            return 0 if self.latest(start) is None else 1
        if self._unsorted:
            self._keys_in(start, start)  # merges the new keys
        ordered = self._sorted
        lo = bisect_left(ordered, start)
        hi = len(ordered) if end is None else bisect_left(ordered, end, lo)
        dead = self._tombstoned
        if len(dead) > 64 + (hi - lo) // 8:
            return None
        return hi - lo - sum(1 for k in dead if start <= k and (end is None or k < end))

    def history_of(self, key: bytes) -> list[Record]:
        """The kept records of ``key``, oldest first (a copy)."""
        h = self._history.get(key)
        return [] if h is None else list(_records(h))

    # ------------------------------------------------------------------ watches

    def events_since(self, start: int, span: keyspan.Span) -> list[common_pb2.Event]:
        """Every event at revision >= ``start`` for keys in ``span``, in revision order and,
        within a revision, in apply order; prev_kv filled. The caller has checked that
        ``start`` is after the compact revision."""
        s, end = span
        if end is not None and len(end) == len(s) + 1 and end == s + b"\x00":
            h = self._history.get(s)
            if h is None:
                return []
            hist = _records(h)
            i = bisect_left(hist, start, key=_mod_of)
            return [
                to_event(s, hist[j], self._live_before(hist, j)) for j in range(i, len(hist))
            ]
        out: list[common_pb2.Event] = []
        revs, log_keys = self._log_revs, self._log_keys
        for j in range(bisect_left(revs, start), len(revs)):
            k = log_keys[j]
            if s <= k and (end is None or k < end):
                hist = _records(self._history[k])
                i = bisect_left(hist, revs[j], key=_mod_of)
                out.append(to_event(k, hist[i], self._live_before(hist, i)))
        return out

    def puts_at(self, rev: int, span: keyspan.Span) -> list[common_pb2.Event]:
        """The puts made at exactly revision ``rev`` that are still kept, for keys in
        ``span``, in apply order, without prev_kv. After a compaction at ``rev`` these
        are what remains of that revision (its deletes went with the compaction)."""
        s, end = span
        found = []
        get = self.get
        for k in self._keys_in(s, end):
            rec = get(k, rev)
            if rec is not None and rec[MOD] == rev:
                found.append((rec[SUB], k, rec))
        found.sort(key=itemgetter(0))
        return [to_event(k, rec, None) for _, k, rec in found]

    @staticmethod
    def _live_before(hist: list[Record], i: int) -> Record | None:
        if i == 0:
            return None
        prev = hist[i - 1]
        return prev if prev[VERSION] else None

    # ------------------------------------------------------------------ writes

    def begin(self) -> Write:
        """Start a write at revision ``revision + 1`` (Rule 1)."""
        return Write(self)

    def compact(self, rev: int) -> None:
        """Discard history before ``rev`` (Rule 3). The caller checked
        compact_revision < rev <= revision."""
        history = self._history
        removed: list[bytes] = []
        settled: list[bytes] = []
        for k in self._compactable:
            hist = _records(history[k])
            i = bisect_right(hist, rev, key=_mod_of) - 1
            if i < 0:
                continue
            if hist[i][VERSION] == 0:
                i += 1  # the tombstone goes too: nothing at or after rev needs it
            if i:
                self.size_bytes -= sum(record_size(k, rec) for rec in hist[:i])
                del hist[:i]
            if not hist:
                del history[k]
                removed.append(k)
            elif len(hist) == 1:
                history[k] = hist[0]
                if hist[0][VERSION]:
                    settled.append(k)
        self._compactable.difference_update(removed)
        self._compactable.difference_update(settled)
        self._tombstoned.difference_update(removed)
        if removed:
            gone = set(removed)
            self._sorted = [k for k in self._sorted if k not in gone]
            self._unsorted = [k for k in self._unsorted if k not in gone]
        cut = bisect_right(self._log_revs, rev)
        del self._log_revs[:cut]
        del self._log_keys[:cut]
        self.compact_revision = rev

    # ------------------------------------------------------------------ snapshot support

    def items(self) -> Iterator[tuple[bytes, list[Record]]]:
        """Every key with its kept records, in ascending key order (for snapshots)."""
        history = self._history
        for k in self._keys_in(b"", None):
            yield k, _records(history[k])

    def key_list(self) -> list[bytes]:
        """Every key with history, ascending: a copy that later writes leave alone."""
        return self._keys_in(b"", None)

    def key_runs(self) -> tuple[list[bytes], list[bytes], list[bytes], int]:
        """Every key with history as two ascending lists that later writes leave alone:
        the sorted index itself (never changed in place, only replaced) and the keys new
        since it was built, sorted; then the list of new keys and how many of them that
        was, for ``adopt_index``. O(new keys), where ``key_list`` copies and sorts all of
        them: at a million keys that held the event loop for 50-100 ms per snapshot."""
        return self._sorted, sorted(self._unsorted), self._unsorted, len(self._unsorted)

    def adopt_index(self, runs: tuple[list[bytes], list[bytes], list[bytes], int], merged: list[bytes]) -> bool:
        """``merged``, the two runs of ``key_runs`` merged (by a snapshot image, a chunk
        at a time), becomes the sorted index if nothing replaced the index meanwhile;
        the new keys it holds leave the unsorted tail. Whether it was adopted."""
        old, _, unsorted, count = runs
        if self._sorted is not old or self._unsorted is not unsorted or len(unsorted) < count:
            return False
        self._sorted = merged
        del unsorted[:count]
        return True

    def histories_at(self, keys: list[bytes], rev: int) -> list[tuple[bytes, list[Record]]] | None:
        """The records at or before ``rev`` of each of ``keys``, which all had history at
        ``rev``; None if one no longer has (a compaction since). The lists may be the
        store's own: use them before the next write."""
        history = self._history
        out: list[tuple[bytes, list[Record]]] = []
        append = out.append
        for k in keys:
            h = history.get(k)
            if h is None:
                return None
            if not isinstance(h, list):
                if h[MOD] > rev:
                    return None
                append((k, [h]))
                continue
            hist = h
            if hist[-1][MOD] > rev:
                hist = hist[: bisect_right(hist, rev, key=_mod_of)]
                if not hist:
                    return None
            append((k, hist))
        return out

    def load_columns(self, revision: int, compact_revision: int, keys: list[bytes], counts: list[int],
                     rows: list[Record]) -> None:
        """``load`` from a decoded snapshot's columns (snapshot.HistoryColumns): the same
        store, built with C-level loops where the keys hold one record each."""
        self.revision = revision
        self.compact_revision = compact_revision
        if len(rows) == len(keys):  # one record per key
            self._history = dict(zip(keys, rows))
            key_bytes = sum(map(len, keys))
        else:
            history: dict[bytes, Record | list[Record]] = {}
            at = 0
            for k, c in zip(keys, counts):
                history[k] = rows[at] if c == 1 else rows[at : at + c]
                at += c
            self._history = history
            key_bytes = sum(map(operator.mul, map(len, keys), counts))
        self.size_bytes = key_bytes + sum(map(len, map(itemgetter(VALUE), rows))) + RECORD_OVERHEAD_BYTES * len(rows)
        self._sorted = list(keys)
        self._unsorted = []
        single = len(rows) == len(keys)
        # Every loop below runs in C (map, compress, zip): a Python loop per key cost
        # seconds at a million keys, and a restarted member serves only after it.
        last = rows if single else list(map(rows.__getitem__, map(operator.sub, accumulate(counts), repeat(1))))
        self._tombstoned = set(compress(keys, map(operator.not_, map(itemgetter(VERSION), last))))
        self._compactable = set(self._tombstoned)
        if not single:
            self._compactable.update(compress(keys, map(operator.gt, counts, repeat(1))))
        owners = keys if single else list(chain.from_iterable(map(repeat, keys, counts)))
        mods = list(map(itemgetter(MOD), rows))
        log: Iterable[tuple[int, int, bytes]] = zip(mods, map(itemgetter(SUB), rows), owners)
        if compact_revision:
            log = compress(log, map(operator.lt, repeat(compact_revision), mods))
        ordered = sorted(log)
        self._log_revs = array("q", map(itemgetter(0), ordered))
        self._log_keys = list(map(itemgetter(2), ordered))

    def load(
        self,
        revision: int,
        compact_revision: int,
        items: list[tuple[bytes, list[Record]]],
    ) -> None:
        """Replace the whole content (restoring a snapshot); ``items`` in key order."""
        self.revision = revision
        self.compact_revision = compact_revision
        self._history = {k: hist if len(hist) > 1 else hist[0] for k, hist in items}
        self.size_bytes = sum(record_size(k, rec) for k, hist in items for rec in hist)
        self._sorted = [k for k, _ in items]
        self._unsorted = []
        self._compactable = {
            k for k, hist in items if len(hist) > 1 or not hist[-1][VERSION]
        }
        self._tombstoned = {k for k, hist in items if not hist[-1][VERSION]}
        rows = sorted(
            (rec[MOD], rec[SUB], k) for k, hist in items for rec in hist if rec[MOD] > compact_revision
        )
        self._log_revs = array("q", (r for r, _, _ in rows))
        self._log_keys = [k for _, _, k in rows]


class Write:
    """One write transaction at revision ``rev`` (Rule 1). Use ``put`` and ``delete``, then
    exactly one of ``commit`` or ``rollback``."""

    __slots__ = ("store", "rev", "changes", "_created")

    def __init__(self, store: MVCCStore) -> None:
        self.store = store
        self.rev = store.revision + 1
        self.changes: list[Change] = []
        self._created: list[bytes] = []

    def put(self, key: bytes, value: bytes, lease: int) -> Change:
        """Set ``key`` at this write's revision; returns the change (with the prior live
        record, from which version and create_revision follow)."""
        store = self.store
        history = store._history
        h = history.get(key)
        if h is None:
            store._unsorted.append(key)
            self._created.append(key)
            prev = None
        else:
            prev = h[-1] if isinstance(h, list) else h
            if not prev[VERSION]:
                prev = None
        rev = self.rev
        if prev is None:
            rec = (rev, len(self.changes), rev, 1, value, lease)
        else:
            rec = (rev, len(self.changes), prev[CREATE], prev[VERSION] + 1, value, lease)
        if h is None:
            history[key] = rec
        elif isinstance(h, list):
            h.append(rec)
        else:
            history[key] = [h, rec]
        change = (key, prev, rec)
        self.changes.append(change)
        return change

    def delete(self, key: bytes) -> Change | None:
        """Delete ``key`` if it is live; returns the change, or None when nothing changed."""
        history = self.store._history
        h = history.get(key)
        if h is None:
            return None
        prev = h[-1] if isinstance(h, list) else h
        if not prev[VERSION]:
            return None
        rec = (self.rev, len(self.changes), 0, 0, b"", 0)
        if isinstance(h, list):
            h.append(rec)
        else:
            history[key] = [h, rec]
        change = (key, prev, rec)
        self.changes.append(change)
        return change

    def commit(self) -> list[Change]:
        """Make this write's revision current if it changed anything; returns the changes."""
        changes = self.changes
        if changes:
            store = self.store
            store.revision = self.rev
            history = store._history
            compactable = store._compactable
            tombstoned = store._tombstoned
            for k, _, rec in changes:
                store.size_bytes += record_size(k, rec)
                store._log_revs.append(self.rev)
                store._log_keys.append(k)
                if not rec[VERSION]:
                    compactable.add(k)
                    tombstoned.add(k)
                else:
                    if isinstance(history[k], list):
                        compactable.add(k)
                    if tombstoned:
                        tombstoned.discard(k)
        return changes

    def rollback(self) -> None:
        """Undo every change of this write, newest first; the store is as before ``begin``."""
        store = self.store
        history = store._history
        created = set(self._created)
        for k, _, _ in reversed(self.changes):
            if k in created:
                continue
            hist = history[k]
            assert isinstance(hist, list)
            hist.pop()
            if len(hist) == 1:
                history[k] = hist[0]
        for k in created:
            del history[k]
        if created:
            store._unsorted = [k for k in store._unsorted if k not in created]
            store._sorted = [k for k in store._sorted if k not in created]
        self.changes = []
        self._created = []
