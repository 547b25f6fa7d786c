"""The write-ahead log: segment files of records (format in ``records.py``).

A segment is ``wal/<seq:016x>-<next index:016x>.wal``. It starts with a SEGMENT_HEADER
record holding a checkpoint of the whole storage state at that point, so the log can be
replayed from any segment once older ones are deleted by compaction; then come entry, hard
state, snapshot, truncate and compact records in the order they were saved.

Rule 1: segments are numbered without gaps; every segment but the newest ends with a SEAL
        record; a segment's checkpoint must equal the state the previous segment replays
        to. A missing, shortened or foreign segment therefore fails recovery loudly.
Rule 2: a segment appears only complete (header written, preallocated, synced, renamed,
        directory synced). The newest segment is preallocated to ``segment_size`` with
        zeros, so a save overwrites zeros and needs no size change (fdatasync then has less
        metadata to commit); the unused zero tail is where the log ends.
Rule 3: a torn tail is a record in the newest segment that runs past the end of the file or
        has a 512-byte sector that is all zeros (never written): the signature of a write
        cut short by a crash (the etcd rule). Everything from it on belonged to writes that
        were never acknowledged (an acknowledged write was fsynced, and fsync persists
        every earlier write too) and is cut off, with a log line. Any other bad record is
        corruption: recovery raises StorageCorruptError and changes nothing.
Rule 4: an entry's position is ``seq << 40 | offset``; positions increase with the index,
        which lets a range read be one pread per segment.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from ..raft.messages import HardState, SnapshotMeta
from .errors import StorageCorruptError, StorageFormatError
from .files import TMP_SUFFIX, FileIO, write_all
from .records import (
    COMPACT,
    ENTRY,
    ENTRY_HEAD,
    ENTRY_TYPES,
    FORMAT_VERSION,
    HARD_STATE,
    HARD_STATE_BODY,
    HEADER,
    HEADER_SIZE,
    LEN_MASK,
    MASK,
    SEAL,
    SEGMENT_HEADER,
    SNAPSHOT,
    TRUNCATE,
    TYPE_NAMES,
    U64,
    U64x2,
    Checkpoint,
    FormatError,
    decode_snapshot,
    frame,
)

log = logging.getLogger("coord.storage")

SECTOR = 512
POS_SHIFT = 40
POS_MASK = (1 << POS_SHIFT) - 1
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")


def segment_name(seq: int, next_index: int) -> str:
    return f"{seq:016x}-{next_index:016x}.wal"


@dataclass(slots=True)
class Segment:
    seq: int
    next_index: int
    """The index the segment's first entry would have (last index + 1 when it was made)."""
    path: str


def list_segments(wal_dir: str) -> tuple[list[Segment], list[str]]:
    """The segments in ``wal_dir`` by sequence number, and leftover temporary files."""
    segments: list[Segment] = []
    leftovers: list[str] = []
    for name in os.listdir(wal_dir):
        path = os.path.join(wal_dir, name)
        if name.endswith(TMP_SUFFIX):
            leftovers.append(path)
            continue
        m = _NAME.match(name)
        if m is None:
            if name.endswith(".wal"):
                raise StorageCorruptError(path, None, "a WAL file with a malformed name")
            log.warning("ignoring unexpected file %s in the WAL directory", path)
            continue
        segments.append(Segment(int(m.group(1), 16), int(m.group(2), 16), path))
    segments.sort(key=lambda s: s.seq)
    return segments, leftovers


# -- recovery ------------------------------------------------------------------------------


def _looks_torn(buf: bytes, off: int) -> bool:
    """Rule 3: does the record at ``off`` look cut short by a crash?"""
    n = len(buf)
    if off + HEADER_SIZE > n:
        return True
    word, check, _ = HEADER.unpack_from(buf, off)
    end = off + HEADER_SIZE
    if word ^ check == MASK:
        end += word & LEN_MASK
        if end > n:
            return True
    start = off
    while start < end:
        stop = min((start // SECTOR + 1) * SECTOR, end)
        if buf.count(0, start, stop) == stop - start:
            return True
        start = stop
    return False


def _damage(buf: bytes, off: int) -> str:
    """Why the record at ``off`` does not verify, in words."""
    n = len(buf)
    if off + HEADER_SIZE > n:
        return f"a record header cut short ({n - off} of {HEADER_SIZE} bytes)"
    word, check, _ = HEADER.unpack_from(buf, off)
    if word ^ check != MASK:
        return "a record header whose length check does not match"
    length = word & LEN_MASK
    kind = TYPE_NAMES.get(word >> 24, f"type {word >> 24}")
    if off + HEADER_SIZE + length > n:
        return f"a {kind} record of {length} bytes running past the end of the file"
    return f"a {kind} record of {length} bytes failing its checksum"


@dataclass(slots=True)
class TornTail:
    segment: Segment
    offset: int
    length: int
    """Bytes cut (up to the last non-zero byte)."""


class Recovery:
    """Replays segments into the state DiskStorage keeps in memory.

    ``terms[i]`` and ``positions[i]`` describe index ``base_index + 1 + i``. Right after the
    first segment read, indexes ``(base_index, hole_end]`` may be unknown (they lived in
    segments compaction deleted); later records must compact them away, or recovery fails.
    """

    def __init__(self, cluster_id: int | None) -> None:
        self.cluster_id = cluster_id
        self.base_index = 0
        self.base_term = 0
        self.terms: array[int] = array("Q")
        self.positions: array[int] = array("Q")
        self.hole_end = 0
        self.hard_state = HardState()
        self.snapshot = SnapshotMeta()
        self.segments: list[Segment] = []
        self.tail_offset = 0
        """Where the next record goes in the newest segment (after the cut, if any)."""
        self.sealed = False
        """The newest segment ends with a SEAL (a crash between sealing and the next one)."""
        self.torn: TornTail | None = None
        self.records_after_header = 0

    @property
    def last_index(self) -> int:
        return self.base_index + len(self.terms)

    def last_term(self) -> int:
        return self.terms[-1] if self.terms else self.base_term

    def replay(self, wal_dir: str, segments: list[Segment]) -> None:
        if not segments:
            raise StorageCorruptError(wal_dir, None, "the WAL directory holds no segment")
        for prev, seg in zip(segments, segments[1:]):
            if seg.seq != prev.seq + 1:
                raise StorageCorruptError(
                    seg.path, None,
                    f"segment {prev.seq + 1} is missing between {os.path.basename(prev.path)} "
                    f"and this one",
                )
        self.segments = segments
        for k, seg in enumerate(segments):
            with open(seg.path, "rb") as f:
                buf = f.read()
            self._replay_segment(seg, buf, first=k == 0, newest=k == len(segments) - 1)
        if self.hole_end > self.base_index:
            raise StorageCorruptError(
                segments[0].path, None,
                f"entries {self.base_index + 1}..{self.hole_end} are missing: they were in "
                f"segments before this one that no longer exist, yet were never compacted",
            )

    def _header(self, seg: Segment, buf: bytes, first: bool) -> int:
        if len(buf) < HEADER_SIZE:
            raise StorageCorruptError(seg.path, 0, "segment shorter than a record header")
        word, check, crc = HEADER.unpack_from(buf, 0)
        end: int = HEADER_SIZE + (word & LEN_MASK)
        if word ^ check != MASK or end > len(buf) or zlib.crc32(buf[HEADER_SIZE:end], word) != crc:
            raise StorageCorruptError(seg.path, 0, f"segment header damaged ({_damage(buf, 0)})")
        payload = buf[HEADER_SIZE:end]
        if word >> 24 != SEGMENT_HEADER:
            raise StorageCorruptError(seg.path, 0, "the first record is not a segment header")
        fmt = Checkpoint.peek_format(payload)
        if fmt is not None and fmt > FORMAT_VERSION:
            raise StorageFormatError(
                f"{seg.path} was written in storage format {fmt}, newer than the format "
                f"{FORMAT_VERSION} this coord reads: run a newer coord"
            )
        try:
            ck = Checkpoint.decode(payload)
        except FormatError as e:
            raise StorageCorruptError(seg.path, 0, f"segment header: {e}") from None
        if ck.format != FORMAT_VERSION:
            raise StorageFormatError(f"{seg.path} has unknown storage format {ck.format}")
        if self.cluster_id is not None and ck.cluster_id != self.cluster_id:
            raise StorageCorruptError(
                seg.path, 0,
                f"segment belongs to cluster {ck.cluster_id:#x}, the directory to {self.cluster_id:#x}",
            )
        if ck.seq != seg.seq or ck.next_index != seg.next_index:
            raise StorageCorruptError(
                seg.path, 0,
                f"segment header says seq {ck.seq}, next index {ck.next_index}; the file name disagrees",
            )
        if first:
            self.base_index, self.base_term = ck.base_index, ck.base_term
            known = ck.next_index - 1 - ck.base_index
            if known < 0:
                raise StorageCorruptError(seg.path, 0, "segment header has next index before its base")
            self.terms = array("Q", bytes(8 * known))
            self.positions = array("Q", bytes(8 * known))
            if known:
                self.terms[-1] = ck.last_term
            self.hole_end = ck.next_index - 1
            self.hard_state, self.snapshot = ck.hard_state, ck.snapshot
        else:
            mine = (self.last_index + 1, self._known_last_term(ck.last_term), self.base_index,
                    self.base_term, self.hard_state, self.snapshot)
            if mine != ck.state():
                raise StorageCorruptError(
                    seg.path, 0,
                    f"segment does not continue where the previous one ended (its header says "
                    f"{ck.state()}, replay reached {mine}); a segment is damaged or missing",
                )
        return end

    def _known_last_term(self, default: int) -> int:
        """The last entry's term, or ``default`` when it lies in the unknown prefix."""
        if self.base_index < self.last_index <= self.hole_end:
            return default
        return self.last_term()

    def _replay_segment(self, seg: Segment, buf: bytes, *, first: bool, newest: bool) -> None:
        off = self._header(seg, buf, first)
        n = len(buf)
        mv = memoryview(buf)
        unpack_header = HEADER.unpack_from
        unpack_entry = ENTRY_HEAD.unpack_from
        crc32 = zlib.crc32
        terms, positions = self.terms, self.positions
        add_term, add_pos = terms.append, positions.append
        seq_bits = seg.seq << POS_SHIFT
        last = self.last_index
        sealed = False
        records = 0
        while off + HEADER_SIZE <= n:
            word, check, crc = unpack_header(buf, off)
            end = off + HEADER_SIZE + (word & LEN_MASK)
            if word ^ check != MASK or end > n or crc32(mv[off + HEADER_SIZE : end], word) != crc:
                break
            records += 1
            if word >> 24 == ENTRY:
                term, index, etype = unpack_entry(buf, off + HEADER_SIZE)
                if index != last + 1:
                    raise StorageCorruptError(
                        seg.path, off, f"entry {index} follows entry {last}: the indexes have a gap"
                    )
                if etype not in ENTRY_TYPES:
                    raise StorageCorruptError(seg.path, off, f"entry {index} has unknown type {etype}")
                add_term(term)
                add_pos(seq_bits | off)
                last = index
            else:
                rtype = word >> 24
                if rtype == SEAL:
                    sealed = True
                    off = end
                    break
                self._record(seg, off, rtype, mv[off + HEADER_SIZE : end])
                last = self.last_index
            off = end
        self.records_after_header += records
        rest = n - off
        clean = rest == 0 or buf.count(0, off) == rest  # the end, or the preallocated zeros
        if not newest:
            if not sealed:
                why = "ends without a seal record" if clean else f"holds {_damage(buf, off)}"
                raise StorageCorruptError(seg.path, off, f"segment {why}, yet newer segments follow")
            if not clean:
                raise StorageCorruptError(seg.path, off, "data follows the seal record")
            return
        self.sealed = sealed
        self.tail_offset = off
        if clean:
            return
        if sealed or not _looks_torn(buf, off):
            raise StorageCorruptError(seg.path, off, f"{_damage(buf, off)}, not at a torn tail")
        length = len(buf.rstrip(b"\0")) - off
        self.torn = TornTail(seg, off, length)

    def _record(self, seg: Segment, off: int, rtype: int, payload: memoryview) -> None:
        """Every record but ENTRY and SEAL (rare: kept out of the hot loop)."""

        def bad(reason: str) -> StorageCorruptError:
            return StorageCorruptError(seg.path, off, reason)

        last = self.last_index
        try:
            if rtype == HARD_STATE:
                if len(payload) != HARD_STATE_BODY.size:
                    raise bad("hard state record of the wrong size")
                self.hard_state = HardState(*HARD_STATE_BODY.unpack(payload))
            elif rtype == TRUNCATE:
                if len(payload) != U64.size:
                    raise bad("truncate record of the wrong size")
                (index,) = U64.unpack(payload)
                if not self.base_index < index <= last + 1:
                    raise bad(f"truncation at {index} outside the log ({self.base_index}, {last + 1}]")
                k = index - self.base_index - 1
                del self.terms[k:]
                del self.positions[k:]
                self.hole_end = min(self.hole_end, index - 1)
            elif rtype == COMPACT:
                if len(payload) != U64x2.size:
                    raise bad("compact record of the wrong size")
                index, term = U64x2.unpack(payload)
                if not self.base_index < index <= last:
                    raise bad(f"compaction at {index} outside the log ({self.base_index}, {last}]")
                k = index - self.base_index
                if index > self.hole_end and self.terms[k - 1] != term:
                    raise bad(f"compaction at {index} says term {term}, the log has {self.terms[k - 1]}")
                del self.terms[:k]
                del self.positions[:k]
                self.base_index, self.base_term = index, term
            elif rtype == SNAPSHOT:
                meta, installed = decode_snapshot(payload)
                if meta.index <= self.snapshot.index:
                    raise bad(f"snapshot at {meta.index} is not newer than the one at {self.snapshot.index}")
                if installed:
                    self.base_index, self.base_term = meta.index, meta.term
                    self.hole_end = meta.index  # the whole log is replaced, unknown part too
                    del self.terms[:]
                    del self.positions[:]
                else:
                    if not self.base_index <= meta.index <= last:
                        raise bad(f"snapshot at {meta.index} outside the log [{self.base_index}, {last}]")
                    if meta.index > self.hole_end:
                        have = self.base_term if meta.index == self.base_index else self.terms[meta.index - self.base_index - 1]
                        if have != meta.term:
                            raise bad(f"snapshot at {meta.index} says term {meta.term}, the log has {have}")
                self.snapshot = meta
            elif rtype == SEGMENT_HEADER:
                raise bad("a segment header in the middle of a segment")
            else:
                raise bad(f"unknown record type {rtype}")
        except FormatError as e:
            raise bad(str(e)) from None


# -- writing -------------------------------------------------------------------------------


class WalWriter:
    """Appends batches to the newest segment, rotating at ``segment_size``.

    Thread use: ``append``, ``create_segment`` and ``remove_before`` run on the one writer
    thread (or the caller's); ``read_fd`` may run on another thread at the same time.
    """

    def __init__(
        self,
        io: FileIO,
        wal_dir: str,
        segment_size: int,
        preallocate: bool,
        checkpoint: Callable[[int], Checkpoint],
    ) -> None:
        self.io = io
        self.checkpoint = checkpoint
        """Makes the checkpoint of a new segment ``seq`` when ``append`` rotates."""
        self.wal_dir = wal_dir
        self.segment_size = segment_size
        self.preallocate = preallocate
        self.segments: list[Segment] = []
        self.fd = -1
        self.seq = 0
        """The newest segment's sequence number."""
        self.off = 0
        self.header_end = 0
        self._readers: dict[int, int] = {}
        self._paths: dict[int, str] = {}

    @property
    def tail(self) -> Segment:
        return self.segments[-1]

    def adopt(self, segments: list[Segment], tail_offset: int) -> None:
        """Continue the newest of ``segments`` (already recovered) at ``tail_offset``."""
        self.segments = list(segments)
        for s in segments:
            self._paths[s.seq] = s.path
        tail = self.tail
        self.fd = self.io.open(tail.path, os.O_RDWR)
        self.seq = tail.seq
        # A read handle for every segment now: a compaction deletes old segments on the
        # writer thread while the loop may still read them (a slow follower's entries);
        # an open handle keeps a deleted file readable until forget() closes it.
        for s in segments[:-1]:
            self._readers[s.seq] = os.open(s.path, os.O_RDONLY)
        self._readers[tail.seq] = self.fd
        self.off = tail_offset
        with open(tail.path, "rb") as f:
            word = HEADER.unpack(f.read(HEADER_SIZE))[0]
        self.header_end = HEADER_SIZE + (word & LEN_MASK)

    def preallocate_tail(self) -> None:
        """Preallocate the newest segment again if it is short (cut after a failure)."""
        if self.preallocate:
            size = os.fstat(self.fd).st_size
            if size < self.segment_size:
                self.io.fallocate(self.fd, size, self.segment_size - size)
                self.io.fsync(self.fd)

    def cut(self, offset: int) -> None:
        """Drop everything from ``offset`` on in the newest segment (a torn tail), durably."""
        self.io.ftruncate(self.fd, offset)
        self.io.fsync(self.fd)
        self.off = offset

    def create_segment(self, checkpoint: Checkpoint) -> None:
        """Make segment ``checkpoint.seq`` the newest one (Rule 2). The previous newest
        segment must already be sealed."""
        seg = Segment(checkpoint.seq, checkpoint.next_index,
                      os.path.join(self.wal_dir, segment_name(checkpoint.seq, checkpoint.next_index)))
        header = frame(SEGMENT_HEADER, checkpoint.encode())
        tmp = seg.path + TMP_SUFFIX
        io = self.io
        fd = io.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        try:
            if self.preallocate:
                io.fallocate(fd, 0, max(self.segment_size, len(header)))
            write_all(io, fd, header, 0)
            io.fsync(fd)
            io.replace(tmp, seg.path)
            io.fsync_dir(self.wal_dir)
        except BaseException:
            os.close(fd)
            raise
        self._paths[seg.seq] = seg.path
        self._readers[seg.seq] = fd
        self.segments.append(seg)
        self.fd = fd
        self.seq = seg.seq
        self.off = self.header_end = len(header)

    def seal(self) -> None:
        """End the newest segment with a SEAL record (and give back its unused tail)."""
        rec = frame(SEAL, U64.pack(self.tail.seq + 1))
        write_all(self.io, self.fd, rec, self.off)
        self.off += len(rec)
        if self.preallocate:
            self.io.ftruncate(self.fd, self.off)
        self.io.fdatasync(self.fd)

    def fits(self, n: int) -> bool:
        """Whether ``n`` more bytes go in the newest segment without rotating it."""
        return self.off + n <= self.segment_size

    def append(self, buf: bytes, sync: bool) -> tuple[int, int]:
        """Write ``buf`` (whole records) and, if ``sync``, fdatasync; returns (seq, offset)
        where it landed. Rotates first when it would overflow the segment."""
        off = self.off
        n = len(buf)
        if off + n > self.segment_size and off > self.header_end:
            try:
                self.seal()
            except BaseException:
                self._undo(off)
                raise
            # If this fails, the sealed segment stays the newest; its successor's temp
            # file is deleted at the next open, which starts a fresh segment.
            self.create_segment(self.checkpoint(self.seq + 1))
            off = self.off
        fd = self.fd
        try:
            written = self.io.pwrite(fd, buf, off)
            if written != n:  # a short write: finish it (or get the OSError that explains it)
                write_all(self.io, fd, memoryview(buf)[written:], off + written)
            if sync:
                self.io.fdatasync(fd)
        except BaseException:
            self._undo(off)
            raise
        self.off = off + n
        return self.seq, off

    def _undo(self, off: int) -> None:
        """After a failed write: cut the newest segment back to ``off``, so that the part
        that did get written (a short write can stop mid-record, off a sector boundary)
        cannot look like corruption at the next start. Best effort: the disk is failing."""
        try:
            self.io.ftruncate(self.fd, off)
            self.io.fsync(self.fd)
        except OSError as e:
            log.error("%s: could not cut the failed write back to offset %d: %s", self.tail.path, off, e)

    def remove_before(self, seq: int) -> list[Segment]:
        """Delete the segments older than ``seq``, oldest first, then sync the directory.
        Stops at the first failure (the rest go next time); returns what was deleted."""
        removed: list[Segment] = []
        try:
            while len(self.segments) > 1 and self.segments[0].seq < seq:
                seg = self.segments[0]
                self.io.unlink(seg.path)
                self.segments.pop(0)
                removed.append(seg)
            if removed:
                self.io.fsync_dir(self.wal_dir)
        except OSError as e:
            log.warning("could not delete old WAL segments (will retry at the next compaction): %s", e)
        return removed

    def read_fd(self, seq: int) -> int:
        return self._readers[seq]

    def path_of(self, seq: int) -> str:
        return self._paths.get(seq, f"segment {seq}")

    def forget(self, removed: list[Segment]) -> None:
        """Close the read handles of deleted segments (call where reads happen)."""
        for seg in removed:
            self._paths.pop(seg.seq, None)
            fd = self._readers.pop(seg.seq, None)
            if fd is not None:
                os.close(fd)

    def disk_bytes(self) -> int:
        """Bytes of records in the segments (not counting preallocated zeros)."""
        total = 0
        for seg in self.segments[:-1]:
            try:
                total += os.stat(seg.path).st_size
            except OSError:
                pass
        return total + self.off

    def close(self) -> None:
        for fd in set(self._readers.values()) | ({self.fd} if self.fd >= 0 else set()):
            os.close(fd)
        self._readers.clear()
        self.fd = -1
