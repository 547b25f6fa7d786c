"""DiskStorage: the durable implementation of the core's ``Storage`` protocol.

It answers every read exactly as ``coord_server.raft.MemoryStorage`` does (same values, same
CompactedError / UnavailableError, the dummy entry at ``first_index() - 1``) and adds the
writes the node needs, each durable before it returns:

- ``save(hard_state, entries, snapshot)``: one Ready's worth, in the Ready order (snapshot,
  entries, hard state), as ONE write and ONE fdatasync. ``save_async`` does the same with
  the I/O on a dedicated writer thread (a small save on a fast disk: on the loop, see
  INLINE_SYNC_BELOW).
- ``create_snapshot``, ``compact``, and the MemoryStorage-shaped ``append``,
  ``set_hard_state``, ``apply_snapshot`` (each a ``save`` of its own).

Rule 1: nothing is acknowledged (no write method returns, no read sees it) before the
        fsync that makes it durable has returned.
Rule 2: one mutation at a time. The in-memory state changes only on the caller's thread
        (for ``*_async``: the event loop's), after the disk write, so a read never sees a
        half-applied batch. Starting a mutation while another is in flight raises
        RuntimeError. The node must not call ``RaftCore.advance`` before ``save_async``
        returns: advancing reports the entries persisted.
Rule 3: a failed write poisons the storage (StorageWriteError, now and for every later
        write); reads keep answering from what was acknowledged. The node must stop.
Rule 4: ``compact`` never goes past the snapshot index (ValueError): on disk, dropping
        entries no snapshot covers would lose them on restart. This is the one place where
        DiskStorage is stricter than MemoryStorage.

The node's loop, with the I/O off the event loop::

    rd = core.ready()
    send(rd.messages)
    await storage.save_async(rd.hard_state, rd.entries, rd.snapshot, sync=rd.must_sync)
    send(rd.persisted_messages); apply(rd.committed_entries)
    core.advance(rd)                       # only after save_async returned

Memory: every entry costs 16 bytes in two arrays (term, file position), so 1M entries take
16 MB; entry bodies are kept only for the newest entries, up to ``cache_bytes`` /
``cache_entries`` (an Entry with 100 bytes of data is ~270 bytes as Python objects). Older
entries are read back from the segments, one pread per segment, checksums verified.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from typing import Any, Callable, TypeVar

from ..thread_names import name_os_thread
from ..raft.errors import CompactedError, SnapshotOutOfDateError, UnavailableError
from ..raft.messages import EMPTY_SNAPSHOT, ConfState, Entry, HardState, Snapshot, SnapshotMeta
from ..raft.storage import limit_size
from .errors import DiskStorageError, StorageCorruptError, StorageWriteError
from .files import FileIO, lock_directory, read_meta, write_meta
from .records import (
    COMPACT,
    ENTRY,
    ENTRY_HEAD,
    ENTRY_HEAD_SIZE,
    ENTRY_TYPES,
    HARD_STATE,
    HARD_STATE_BODY,
    HEADER,
    HEADER_SIZE,
    LEN_MASK,
    MASK,
    MAX_PAYLOAD,
    SNAPSHOT,
    TRUNCATE,
    U64,
    U64x2,
    Checkpoint,
    frame,
    snapshot_payload,
)
from .snapshot import SnapshotFileWriter, SnapshotStore, snapshot_name
from .wal import POS_MASK, POS_SHIFT, Recovery, Segment, WalWriter, list_segments

log = logging.getLogger("coord.storage")
T = TypeVar("T")

_ENTRY_WORD = ENTRY << 24
_ENTRY_OVERHEAD = 170
"""Bytes a cached Entry costs beyond its data: the object, its two ints, the bytes object's
header and the list slot (measured with tracemalloc: 169 on CPython 3.11, 64-bit)."""
_READ_CHUNK = 4 << 20
"""Read at most this many bytes of a segment per pread when reading old entries."""
INLINE_SYNC_MAX_ENTRIES = 4
INLINE_SYNC_BELOW = 0.001
INLINE_SYNC_PROBE_SECONDS = 1.0
"""``save_async`` writes a save of at most INLINE_SYNC_MAX_ENTRIES entries on the caller's
thread when such saves took less than INLINE_SYNC_BELOW seconds lately (a moving average):
on a disk that fast the round trip to the writer thread and back costs about as much as
the write. Measured with 3 members on 2 busy cores: fdatasync 0.1 ms, a small save on
the loop 0.2-1.2 ms (mostly waiting for the GIL back), the round trip 0.6 ms on top.
Only saves made on the caller's thread are timed (on the writer thread the time would
include waiting for the GIL); while the average is too high, a small save is made there
anyway once per INLINE_SYNC_PROBE_SECONDS to measure again, so a slow disk stalls the
loop at most that often, for one sync. A leader lets its peer tasks write the appends
before it saves (node.py)."""
_SYNC_AVERAGE_WEIGHT = 0.2

_Batch = tuple[bytes, Sequence[Entry], list[int], int, "Snapshot | None", "HardState | None"]
"""An encoded save: the bytes, the entries, their offsets in the bytes, the truncation
point (0: none), the installed snapshot and the hard state."""
_NONE_REMOVED: list[Segment] = []
_MAX_ENTRY_TYPE = max(ENTRY_TYPES)
_HS_WORD = (HARD_STATE << 24) | HARD_STATE_BODY.size
_HS_CHECK = _HS_WORD ^ MASK


def _one_thread(name: str) -> ThreadPoolExecutor:
    """An executor of one thread, named ``name`` for Python and for the OS (top -H,
    py-spy and bench/thread_probe.py tell the WAL writer from the snapshot writer)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=name_os_thread, initargs=(name,))


class _Plan:
    """One mutation: ``io`` touches only the disk (any thread), ``apply`` only memory."""

    __slots__ = ("io", "apply")

    def __init__(self, io: Callable[[], Any], apply: Callable[[Any], Any]) -> None:
        self.io = io
        self.apply = apply


class DiskStorage:
    """The Raft log, hard state and snapshots in a data directory (layout in files.py).

    ``cluster_id`` is required to create a directory and checked when opening one (None:
    accept whatever the directory says). ``segment_size``: bytes per WAL segment before a
    new one is started (default 64 MiB, etcd's). ``keep_snapshots``: snapshot files kept.
    ``preallocate``: reserve each segment's space up front (faster fdatasync on ext4/xfs,
    and a full disk shows up when a segment is created rather than mid-batch). ``io``: the
    system calls that change the disk (tests inject failures there). ``executor`` and
    ``snapshot_executor``: where the writer thread's and the snapshot writer's I/O runs
    (default: a thread each, made on first use; the simulator passes its own, and then
    they are the caller's to shut down). ``clock``: when to probe the disk again, and
    ``timer``: how long a small save took (INLINE_SYNC_BELOW).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        cluster_id: int | None = None,
        *,
        segment_size: int = 64 << 20,
        keep_snapshots: int = 2,
        cache_bytes: int = 32 << 20,
        cache_entries: int = 100_000,
        preallocate: bool = True,
        io: FileIO | None = None,
        executor: Executor | None = None,
        snapshot_executor: Executor | None = None,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if segment_size < 1024:
            raise ValueError(f"segment_size must be at least 1024 bytes, not {segment_size}")
        self.path = os.fspath(path)
        self._wal_dir = os.path.join(self.path, "wal")
        self._snap_dir = os.path.join(self.path, "snap")
        self._io = io or FileIO()
        self._cache_max_bytes = cache_bytes
        self._cache_max_entries = max(1, cache_entries)
        self._poisoned: StorageWriteError | None = None
        self._busy = False
        self._closed = False
        self._executor: Executor | None = executor
        self._own_executors = executor is None, snapshot_executor is None
        self._sync_seconds = 0.0
        """Moving average of a small synced save's duration on the caller's thread
        (INLINE_SYNC_BELOW)."""
        self._next_probe = 0.0
        self._clock = clock
        self._timer = timer
        # Snapshot files written in the background (write_snapshot_async) have a thread
        # of their own, so WAL saves go on meanwhile; their names, until recorded, are
        # spared by SnapshotStore.clean.
        self._snapshot_writer: Executor | None = snapshot_executor
        self._pending_snapshots: set[str] = set()
        self._lock_fd = -1

        # The log: index base+1+i has term _terms[i], record at _positions[i].
        self._base = 0
        self._base_term = 0
        self._terms: array[int] = array("Q")
        self._positions: array[int] = array("Q")
        self._hard_state = HardState()
        self._snapshot = EMPTY_SNAPSHOT
        # Bodies of the newest entries: _cache[i] is index _cache_start + i, up to the last.
        self._cache: list[Entry] = []
        self._cache_start = 1
        self._cache_bytes = 0

        self._snaps = SnapshotStore(self._io, self._snap_dir, keep_snapshots)
        self._wal = WalWriter(self._io, self._wal_dir, segment_size, preallocate, self._checkpoint_for)
        try:
            self._open(cluster_id)
        except BaseException:
            self._release()
            raise

    # ================================================================== opening, closing

    def _open(self, cluster_id: int | None) -> None:
        if os.path.lexists(self.path) and not os.path.isdir(self.path):
            raise DiskStorageError(f"data directory {self.path} exists but is not a directory")
        try:
            if not os.path.isdir(self.path):
                os.makedirs(self.path)
                # Its entry in the parent must be durable too, or a power cut could take
                # the whole directory, acknowledged entries and all.
                self._io.fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        except OSError as e:
            raise DiskStorageError(f"cannot create data directory {self.path}: {e}") from None
        try:
            self._lock_fd = lock_directory(self.path)
        except OSError as e:
            raise DiskStorageError(f"cannot lock data directory {self.path}: {e}") from None
        found = read_meta(self.path, cluster_id)
        if found is None:
            if cluster_id is None:
                raise DiskStorageError(
                    f"{self.path} is not an initialised data directory; a cluster id is needed to create one"
                )
            self._initialise(cluster_id)
            found = cluster_id
        self.cluster_id = found
        self._recover()

    def _initialise(self, cluster_id: int) -> None:
        """Create wal/ and snap/ and the first segment, then META (last: META present means
        the directory is complete)."""
        for d in (self._wal_dir, self._snap_dir):
            if os.path.isdir(d):
                continue
            try:
                self._io.mkdir(d)
            except OSError as e:
                raise DiskStorageError(f"cannot create {d}: {e}") from None
        segments, leftovers = list_segments(self._wal_dir)
        if segments or self._snaps.files():
            # META is written last, so a crash while initialising leaves one empty segment.
            probe = Recovery(cluster_id)
            probe.replay(self._wal_dir, segments)
            if len(segments) > 1 or probe.records_after_header or self._snaps.files():
                raise StorageCorruptError(
                    os.path.join(self.path, "META"), None,
                    "the metadata file is missing but the directory holds a log",
                )
            leftovers += [s.path for s in segments]
        first = WalWriter(self._io, self._wal_dir, self._wal.segment_size, self._wal.preallocate, self._checkpoint_for)
        try:
            for p in leftovers:
                self._io.unlink(p)
            self._io.fsync_dir(self.path)
            first.create_segment(self._checkpoint_for(1, cluster_id))
            write_meta(self._io, self.path, cluster_id)
        except OSError as e:
            raise StorageWriteError(f"cannot initialise data directory {self.path}: {e}", e.errno) from e
        finally:
            first.close()

    def _recover(self) -> None:
        """Rebuild the state from the WAL and the snapshot it names; nothing is changed on
        disk unless all of it verifies."""
        segments, leftovers = list_segments(self._wal_dir)
        rec = Recovery(self.cluster_id)
        rec.replay(self._wal_dir, segments)
        snapshot = self._snaps.load(rec.snapshot) if rec.snapshot.index else EMPTY_SNAPSHOT
        # Everything verified: adopt it, then tidy up.
        self._base, self._base_term = rec.base_index, rec.base_term
        self._terms, self._positions = rec.terms, rec.positions
        self._hard_state = rec.hard_state
        self._snapshot = snapshot
        self._cache_start = self.last_index() + 1
        io = self._io
        try:
            for p in leftovers:
                log.info("deleting leftover temporary file %s", p)
                io.unlink(p)
            if leftovers:
                io.fsync_dir(self._wal_dir)
            self._wal.adopt(rec.segments, rec.tail_offset)
            if rec.torn is not None:
                t = rec.torn
                log.warning(
                    "%s: cut a torn tail of %d bytes at offset %d (a write cut short by a crash, "
                    "never acknowledged)", t.segment.path, t.length, t.offset,
                )
                self._wal.cut(t.offset)
            if rec.sealed:
                self._wal.create_segment(self._checkpoint_for(self._wal.tail.seq + 1))
            else:
                self._wal.preallocate_tail()
        except OSError as e:
            raise StorageWriteError(f"cannot open the WAL in {self.path}: {e}", e.errno) from e
        self._snaps.clean(self._snapshot.meta)

    def close(self) -> None:
        """Release the directory. Safe to call twice; pending async writes finish first."""
        if self._closed:
            return
        self._closed = True
        self._release()

    def _release(self) -> None:
        if self._snapshot_writer is not None and self._own_executors[1]:
            self._snapshot_writer.shutdown(wait=True)
            self._snapshot_writer = None
        if self._executor is not None and self._own_executors[0]:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._wal.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> DiskStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ===================================================================== reads (Storage)

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.meta.conf_state

    def first_index(self) -> int:
        return self._base + 1

    def last_index(self) -> int:
        return self._base + len(self._terms)

    def term(self, index: int) -> int:
        base = self._base
        if index <= base:
            if index == base:
                return self._base_term
            raise CompactedError(index, base + 1)
        try:
            return self._terms[index - base - 1]
        except IndexError:
            raise UnavailableError(index, self.last_index()) from None

    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        base = self._base
        if lo <= base:
            raise CompactedError(lo, base + 1)
        last = base + len(self._terms)
        if hi > last + 1:
            raise UnavailableError(hi - 1, last)
        if lo >= hi:
            return []
        start = self._cache_start
        if lo >= start:
            return limit_size(self._cache[lo - start : hi - start], max_bytes)
        stop = min(hi, start)
        out = self._read(lo, stop, max_bytes)
        if len(out) < stop - lo or hi <= start:
            return out
        return limit_size(out + self._cache[: hi - start], max_bytes)

    def _read(self, lo: int, hi: int, max_bytes: int | None) -> list[Entry]:
        """Entries [lo, hi) from the segments, verified, stopping at ``max_bytes``."""
        out: list[Entry] = []
        size = 0
        b1 = self._base + 1
        positions, terms = self._positions, self._terms
        unpack_header, unpack_entry, crc32 = HEADER.unpack_from, ENTRY_HEAD.unpack_from, zlib.crc32
        window = _READ_CHUNK if max_bytes is None else min(_READ_CHUNK, max_bytes + 65536)
        i = lo
        while i < hi:
            p = positions[i - b1]
            seq, first_off = p >> POS_SHIFT, p & POS_MASK
            # This run: the following entries in the same segment, within one window.
            j = bisect_left(positions, (seq + 1) << POS_SHIFT, i - b1, hi - b1) + b1
            j = max(i + 1, min(j, bisect_right(positions, p + window, i - b1, j - b1) + b1))
            fd = self._wal.read_fd(seq)
            last_off = positions[j - 1 - b1] & POS_MASK
            word = HEADER.unpack(os.pread(fd, HEADER_SIZE, last_off))[0]
            end = last_off + HEADER_SIZE + (word & LEN_MASK)
            buf = os.pread(fd, end - first_off, first_off)
            for index in range(i, j):
                off = (positions[index - b1] & POS_MASK) - first_off
                word, check, crc = unpack_header(buf, off)
                rec_end = off + HEADER_SIZE + (word & LEN_MASK)
                if (word >> 24 != ENTRY or word ^ check != MASK or rec_end > len(buf)
                        or crc32(memoryview(buf)[off + HEADER_SIZE : rec_end], word) != crc):
                    raise StorageCorruptError(self._wal.path_of(seq), off + first_off,
                                              f"entry {index} no longer verifies (damaged after it was written)")
                term, idx, etype = unpack_entry(buf, off + HEADER_SIZE)
                if idx != index or term != terms[index - b1]:
                    raise StorageCorruptError(self._wal.path_of(seq), off + first_off,
                                              f"entry {index} is not where the index says")
                data = buf[off + HEADER_SIZE + ENTRY_HEAD_SIZE : rec_end]
                if out and max_bytes is not None and size + len(data) > max_bytes:
                    return out
                size += len(data)
                out.append(Entry(term, idx, ENTRY_TYPES[etype], data))
            i = j
        return out

    def disk_usage(self) -> dict[str, int]:
        """Bytes used by log records and snapshot files, and the number of segments."""
        return {
            "wal_bytes": self._wal.disk_bytes(),
            "snapshot_bytes": self._snaps.disk_bytes(),
            "segments": len(self._wal.segments),
        }

    # ============================================================================ writes

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None = None,
        *,
        sync: bool = True,
    ) -> None:
        """Persist one Ready: ``snapshot`` (installed, replacing the log), then ``entries``
        (replacing any stored suffix from ``entries[0].index``), then ``hard_state``; one
        write, one fdatasync. Returns only once durable (Rule 1). ``sync=False`` skips the
        fdatasync (the Ready's ``must_sync`` was False: only the commit index changed).

        Raises SnapshotOutOfDateError or ValueError (gap, non-contiguous entries) before
        writing anything; StorageWriteError if the disk fails (Rule 3).
        """
        batch = self._encode(hard_state, entries, snapshot)
        if batch is not None:
            self._run(_Plan(partial(self._write, batch, sync), partial(self._apply, batch)))

    async def save_async(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None = None,
        *,
        sync: bool = True,
    ) -> None:
        """``save`` with the write and fsync on the writer thread, so the event loop keeps
        running. Do not advance the core, or start another write, until it returns.

        A save without fsync (``sync=False``: only the commit index moved) is a write of a
        few dozen bytes into the page cache: it is done at once, on the caller's thread.
        Handing it to the writer thread cost 1.7 ms (median, 3 members on 2 busy cores),
        most of it waiting for the GIL, and delayed the answers of the entries just
        applied. (Not when it would rotate the segment: that fsyncs, on the thread.) A
        small save on a disk that syncs fast is done at once too (INLINE_SYNC_BELOW)."""
        batch = self._encode(hard_state, entries, snapshot)
        if batch is None:
            return
        plan = _Plan(partial(self._write, batch, sync), partial(self._apply, batch))
        if not sync and snapshot is None and not entries and self._wal.fits(len(batch[0])):
            self._run(plan)
            return
        # Not while a snapshot file is being written: its megabytes queue before this
        # sync, which then held the loop (and the heartbeats) for hundreds of ms.
        if (
            snapshot is None and not self._pending_snapshots
            and len(entries) <= INLINE_SYNC_MAX_ENTRIES and self._wal.fits(len(batch[0]))
        ):
            now = self._clock()
            if self._sync_seconds < INLINE_SYNC_BELOW or now >= self._next_probe:
                self._next_probe = now + INLINE_SYNC_PROBE_SECONDS
                started = self._timer()
                self._run(plan)
                if sync:
                    took = self._timer() - started
                    self._sync_seconds += _SYNC_AVERAGE_WEIGHT * (took - self._sync_seconds)
                return
        await self._run_async(plan)

    def set_hard_state(self, hard_state: HardState) -> None:
        self.save(hard_state, ())

    def append(self, entries: Sequence[Entry]) -> None:
        """Append ``entries``, replacing any conflicting suffix (MemoryStorage.append)."""
        self.save(None, entries)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log with ``snapshot`` (a follower installing the leader's)."""
        self.save(None, (), snapshot)

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record the state machine's image at applied ``index`` as the latest snapshot:
        the file first (temp, fsync, rename, fsync dir), then its WAL record."""
        plan = self._plan_create_snapshot(index, conf_state, data)
        return self._run(plan)  # type: ignore[no-any-return]

    async def create_snapshot_async(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """``create_snapshot`` with the file written in the background (below)."""
        return await self.record_snapshot_async(await self.write_snapshot_async(index, conf_state, data))

    async def write_snapshot_async(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """First half of a snapshot taken in the background: write its file (temp, fsync,
        rename) on a thread of its own. Unlike the other writes this one may overlap
        saves: writing a large snapshot must not hold up the log. Nothing refers to the
        file until ``record_snapshot_async``; a crash in between leaves a file that
        recovery deletes (snapshot.py Rule 1). A failure here leaves the storage usable."""
        if self._poisoned is not None or self._closed:
            self._check_writable()  # raises; a save in flight, though, is no obstacle
        snapshot = self._snapshot_of(index, conf_state, data)
        name = snapshot_name(snapshot.meta)
        if self._snapshot_writer is None:
            self._snapshot_writer = _one_thread("coord-snap")
        self._pending_snapshots.add(name)
        try:
            await asyncio.get_running_loop().run_in_executor(self._snapshot_writer, self._file_writer(snapshot))
        except BaseException:
            self._pending_snapshots.discard(name)
            raise
        return snapshot

    def begin_snapshot(self, index: int, conf_state: ConfState) -> SnapshotFileWriter:
        """``write_snapshot_async`` for data produced piece by piece: the file's writer.
        Call its methods through ``snapshot_io``; its ``finish`` gives the Snapshot for
        ``record_snapshot_async``, and ``end_snapshot`` must follow a failure."""
        if self._poisoned is not None or self._closed:
            self._check_writable()
        meta = self._snapshot_of(index, conf_state, b"").meta
        writer = self._snaps.writer(meta)
        self._pending_snapshots.add(writer.name)
        return writer

    async def snapshot_io(self, io: Callable[[], T]) -> T:
        """Run ``io`` on the snapshot thread (it may overlap saves, as write_snapshot_async)."""
        if self._snapshot_writer is None:
            self._snapshot_writer = _one_thread("coord-snap")
        return await asyncio.get_running_loop().run_in_executor(self._snapshot_writer, io)

    def end_snapshot(self, writer: SnapshotFileWriter) -> None:
        """A snapshot begun with ``begin_snapshot`` will not be recorded (it failed)."""
        self._pending_snapshots.discard(writer.name)

    async def record_snapshot_async(self, snapshot: Snapshot) -> Snapshot:
        """Second half: make a snapshot written by ``write_snapshot_async`` the current one
        (its WAL record; a save like any other, so not while another is in flight).
        SnapshotOutOfDateError if a newer snapshot became current meanwhile (a follower
        installed the leader's); the file is then an ordinary old snapshot."""
        try:
            self._check_writable()
            if snapshot.meta.index <= self._snapshot.meta.index:
                raise SnapshotOutOfDateError(snapshot.meta.index, self._snapshot.meta.index)
            plan = self._plan_record_snapshot(snapshot)
        finally:
            self._pending_snapshots.discard(snapshot_name(snapshot.meta))
        return await self._run_async(plan)  # type: ignore[no-any-return]

    def compact(self, index: int) -> None:
        """Drop entries up to ``index`` (kept as the dummy entry); segments holding only
        such entries are deleted. ``index`` must not pass the snapshot (Rule 4)."""
        self._run(self._plan_compact(index))

    async def compact_async(self, index: int) -> None:
        await self._run_async(self._plan_compact(index))

    # -- running writes --------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._poisoned is not None:
            raise StorageWriteError(
                f"storage in {self.path} refuses writes after an earlier write failed "
                f"({self._poisoned}); restart the node", self._poisoned.errno,
            )
        if self._closed:
            raise DiskStorageError(f"storage in {self.path} is closed")
        if self._busy:
            raise RuntimeError("another write to this storage is still in progress; await it first")

    def _poison(self, what: str, e: BaseException) -> StorageWriteError:
        """Rule 3: remember the failure; every later write refuses."""
        err = StorageWriteError(
            f"{what} failed in {self.path}: {e}; nothing of it was acknowledged and the "
            f"storage refuses further writes", getattr(e, "errno", None),
        )
        self._poisoned = err
        return err

    def _guarded(self, io: Callable[[], Any], what: str) -> Callable[[], Any]:
        def run() -> Any:
            try:
                return io()
            except OSError as e:
                raise self._poison(what, e) from e
            except BaseException as e:
                self._poison(what, e)
                raise

        return run

    def _run(self, plan: _Plan) -> Any:
        self._busy = True
        try:
            result = plan.io()
        finally:
            self._busy = False
        return plan.apply(result)

    async def _run_async(self, plan: _Plan) -> Any:
        if self._executor is None:
            self._executor = _one_thread("coord-wal")
        loop = asyncio.get_running_loop()
        self._busy = True
        fut = loop.run_in_executor(self._executor, plan.io)
        try:
            result = await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The write cannot be stopped once started: let it finish and apply it, so
            # memory matches the disk, and let the cancellation through.
            def finish(f: asyncio.Future[Any]) -> None:
                self._busy = False
                if not f.cancelled() and f.exception() is None:
                    plan.apply(f.result())

            fut.add_done_callback(finish)
            raise
        except BaseException:
            self._busy = False
            raise
        self._busy = False
        return plan.apply(result)

    # -- save: encode (caller's thread), write (any thread), apply (caller's thread) ---------

    def _encode(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None) -> _Batch | None:
        if self._poisoned is not None or self._closed or self._busy:
            self._check_writable()
        parts: list[bytes] = []
        base = self._base
        last = base + len(self._terms)
        if snapshot is not None:
            current = self._snapshot.meta.index
            if snapshot.meta.index <= current:
                raise SnapshotOutOfDateError(snapshot.meta.index, current)
            parts.append(frame(SNAPSHOT, snapshot_payload(snapshot.meta, installed=True)))
            base = last = snapshot.meta.index
        truncate_at = 0
        offsets: list[int] = []
        if entries:
            first = entries[0].index
            if first != last + 1:
                if first > last + 1:
                    raise ValueError(f"append at index {first} leaves a gap after last index {last}")
                if first + len(entries) - 1 <= base:
                    entries = ()  # wholly compacted already
                else:
                    if first <= base:
                        entries = entries[base + 1 - first :]
                        first = base + 1
                    truncate_at = first
                    parts.append(frame(TRUNCATE, U64.pack(first)))
            if entries:
                size = sum(map(len, parts)) if parts else 0
                crc32, pack_header, pack_entry = zlib.crc32, HEADER.pack, ENTRY_HEAD.pack
                index = first
                for e in entries:
                    data = e.data
                    n = ENTRY_HEAD_SIZE + len(data)
                    etype = e.type
                    if e.index != index or n > MAX_PAYLOAD or not 0 <= etype <= _MAX_ENTRY_TYPE:
                        raise ValueError(self._bad_entry(e, index))
                    head = pack_entry(e.term, index, etype)
                    word = _ENTRY_WORD | n
                    offsets.append(size)
                    parts += (pack_header(word, word ^ MASK, crc32(data, crc32(head, word))), head, data)
                    size += HEADER_SIZE + n
                    index += 1
        if hard_state is not None:
            body = HARD_STATE_BODY.pack(hard_state.term, hard_state.vote, hard_state.commit)
            parts += (HEADER.pack(_HS_WORD, _HS_CHECK, zlib.crc32(body, _HS_WORD)), body)
        if not parts:
            return None
        return (b"".join(parts), entries, offsets, truncate_at, snapshot, hard_state)

    def _write(self, batch: _Batch, sync: bool) -> tuple[int, int, list[Segment]]:
        buf, _, _, _, snapshot, _ = batch
        wal = self._wal
        try:
            if snapshot is None:
                seq, off = wal.append(buf, sync)
                return seq, off, _NONE_REMOVED
            self._snaps.write(snapshot.meta, snapshot.data)
            seq, off = wal.append(buf, sync)
            # The installed snapshot replaces the whole log: older segments are dead.
            removed = wal.remove_before(seq)
            self._snaps.clean(snapshot.meta, self._pending_snapshots)
            return seq, off, removed
        except OSError as e:
            raise self._poison("saving", e) from e
        except BaseException as e:
            self._poison("saving", e)
            raise

    def _apply(self, batch: _Batch, where: tuple[int, int, list[Segment]]) -> None:
        _, entries, offsets, truncate_at, snapshot, hard_state = batch
        seq, off, removed = where
        if snapshot is not None:
            self._install(self._snaps.on_disk(snapshot))
            self._wal.forget(removed)
        if truncate_at:
            self._truncate(truncate_at)
        if entries:
            at = (seq << POS_SHIFT) | off
            cache = self._cache
            if len(entries) == 1:
                e = entries[0]
                self._terms.append(e.term)
                self._positions.append(at + offsets[0])
                cache.append(e)
                self._cache_bytes += len(e.data) + _ENTRY_OVERHEAD
            else:
                self._terms.extend([e.term for e in entries])
                self._positions.extend([at + r for r in offsets])
                cache += entries
                self._cache_bytes += sum([len(e.data) for e in entries]) + _ENTRY_OVERHEAD * len(entries)
            if self._cache_bytes > self._cache_max_bytes or len(cache) > self._cache_max_entries:
                self._evict()
        if hard_state is not None:
            self._hard_state = hard_state

    @staticmethod
    def _bad_entry(e: Entry, expected: int) -> str:
        if e.index != expected:
            return f"entries must be contiguous: expected index {expected}, got {e.index}"
        if e.type not in ENTRY_TYPES:
            return f"entry {e.index} has unknown type {e.type!r}"
        return f"entry {e.index} has {len(e.data)} bytes of data, more than a record holds"

    def _install(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._base, self._base_term = snapshot.meta.index, snapshot.meta.term
        self._terms = array("Q")
        self._positions = array("Q")
        self._cache = []
        self._cache_bytes = 0
        self._cache_start = self._base + 1

    def _truncate(self, index: int) -> None:
        k = index - self._base - 1
        del self._terms[k:]
        del self._positions[k:]
        if index <= self._cache_start:
            self._cache = []
            self._cache_bytes = 0
            self._cache_start = index
        else:
            dropped = self._cache[index - self._cache_start :]
            del self._cache[index - self._cache_start :]
            self._cache_bytes -= sum(len(e.data) for e in dropped) + _ENTRY_OVERHEAD * len(dropped)

    def _evict(self) -> None:
        cache = self._cache
        while cache and (self._cache_bytes > self._cache_max_bytes or len(cache) > self._cache_max_entries):
            k = max(1, len(cache) // 4)
            self._cache_bytes -= sum(len(e.data) for e in cache[:k]) + _ENTRY_OVERHEAD * k
            del cache[:k]
            self._cache_start += k

    def _checkpoint_for(self, seq: int, cluster_id: int | None = None) -> Checkpoint:
        """The state a new segment ``seq`` starts from (the state before the pending write)."""
        last = self._base + len(self._terms)
        return Checkpoint(
            cluster_id=self.cluster_id if cluster_id is None else cluster_id,
            seq=seq,
            next_index=last + 1,
            last_term=self._terms[-1] if self._terms else self._base_term,
            base_index=self._base,
            base_term=self._base_term,
            hard_state=self._hard_state,
            snapshot=self._snapshot.meta,
        )

    # -- snapshots and compaction --------------------------------------------------------------

    def _snapshot_of(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        current = self._snapshot.meta.index
        if index <= current:
            raise SnapshotOutOfDateError(index, current)
        if index > self.last_index():
            raise UnavailableError(index, self.last_index())
        meta = SnapshotMeta(index=index, term=self.term(index), conf_state=conf_state)
        return Snapshot(meta=meta, data=bytes(data))

    def _file_writer(self, snapshot: Snapshot) -> Callable[[], None]:
        def write_file() -> None:
            try:
                self._snaps.write(snapshot.meta, snapshot.data)
            except OSError as e:
                # Nothing refers to the file yet: the storage stays usable.
                raise StorageWriteError(
                    f"cannot write snapshot {snapshot.meta.index} in {self.path}: {e}", e.errno
                ) from e

        return write_file

    def _plan_create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> _Plan:
        self._check_writable()
        snapshot = self._snapshot_of(index, conf_state, data)
        return self._plan_record_snapshot(snapshot, before=self._file_writer(snapshot))

    def _plan_record_snapshot(self, snapshot: Snapshot, before: Callable[[], None] | None = None) -> _Plan:
        """The WAL record that makes ``snapshot`` current (after ``before``: writing its
        file), then the clean-up of older files."""
        record = frame(SNAPSHOT, snapshot_payload(snapshot.meta, installed=False))
        wal = self._wal
        record_it = self._guarded(lambda: wal.append(record, True), "recording a snapshot")

        def io() -> None:
            if before is not None:
                before()
            record_it()
            self._snaps.clean(snapshot.meta, self._pending_snapshots)

        def apply(_: object) -> Snapshot:
            self._snapshot = self._snaps.on_disk(snapshot)
            return self._snapshot

        return _Plan(io, apply)

    def _plan_compact(self, index: int) -> _Plan:
        self._check_writable()
        base = self._base
        if index <= base:
            raise CompactedError(index, base + 1)
        if index > self.last_index():
            raise UnavailableError(index, self.last_index())
        if index > self._snapshot.meta.index:
            raise ValueError(
                f"cannot compact to {index}: the snapshot covers only up to {self._snapshot.meta.index}, "
                f"and the entries after it would be lost on restart"
            )
        term = self.term(index)
        record = frame(COMPACT, U64x2.pack(index, term))
        wal = self._wal

        def io() -> list[Any]:
            wal.append(record, True)
            # A segment S was started when the log ended at S.next_index - 1, so every live
            # entry in the segments before S is at most that. If that is compacted, they can
            # go: S's checkpoint and the COMPACT record just written replay without them.
            # (next_index is not monotonic across segments: a truncation can lower it.)
            keep_from = wal.segments[0].seq
            for seg in wal.segments:
                if seg.next_index - 1 <= index:
                    keep_from = seg.seq
            return wal.remove_before(keep_from)

        def apply(removed: list[Any]) -> None:
            k = index - self._base
            del self._terms[:k]
            del self._positions[:k]
            self._base, self._base_term = index, term
            if index >= self._cache_start:
                drop = index + 1 - self._cache_start
                self._cache_bytes -= sum(len(e.data) for e in self._cache[:drop]) + _ENTRY_OVERHEAD * drop
                del self._cache[:drop]
                self._cache_start = index + 1
            self._wal.forget(removed)

        return _Plan(self._guarded(io, "compacting"), apply)
