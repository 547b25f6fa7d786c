"""Snapshot files: ``snap/<term:016x>-<index:016x>.snap``, one per snapshot (format in
``records.py``).

Rule 1: a snapshot file is written before the WAL record that names it (temp file, fsync,
        rename, directory fsync). The WAL decides which snapshot is current: a file newer
        than the WAL's snapshot is the leftover of a crash between the two writes and is
        deleted; the current one must exist and verify, or recovery fails.
Rule 2: the newest ``keep`` snapshots are kept (the current one and older ones, for an
        operator's recovery); older ones and leftover temporary files are deleted.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import zlib
from collections.abc import Collection, Iterator

from ..raft.messages import Snapshot, SnapshotMeta
from .errors import StorageCorruptError
from .files import TMP_SUFFIX, FileIO, write_all, write_file_atomically
from .records import (
    FormatError,
    check_snapshot_file_tail,
    encode_snapshot_file,
    read_snapshot_file_from,
    read_snapshot_file_head,
    snapshot_file_head,
    snapshot_file_tail,
)

log = logging.getLogger("coord.storage")

_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


def snapshot_name(meta: SnapshotMeta) -> str:
    return f"{meta.term:016x}-{meta.index:016x}.snap"


class SnapshotStore:
    def __init__(self, io: FileIO, snap_dir: str, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep_snapshots must be at least 1, not {keep}")
        self.io = io
        self.dir = snap_dir
        self.keep = keep

    def write(self, meta: SnapshotMeta, data: bytes) -> str:
        """Write the snapshot file durably (Rule 1); returns its path."""
        return write_file_atomically(self.io, self.dir, snapshot_name(meta), encode_snapshot_file(meta, data))

    def load(self, meta: SnapshotMeta) -> Snapshot:
        """Read and verify the snapshot the WAL names; its bytes serve one read."""
        path = os.path.join(self.dir, snapshot_name(meta))
        return FileSnapshot(meta, path, preloaded=read_snapshot_file(path, meta))

    def on_disk(self, snapshot: Snapshot) -> Snapshot:
        """``snapshot``, written by ``write``, as a FileSnapshot (its bytes left to the file)."""
        if snapshot.is_empty or isinstance(snapshot, FileSnapshot):
            return snapshot
        return FileSnapshot(snapshot.meta, os.path.join(self.dir, snapshot_name(snapshot.meta)))

    def writer(self, meta: SnapshotMeta) -> SnapshotFileWriter:
        return SnapshotFileWriter(self.io, self.dir, meta)

    def files(self) -> list[tuple[int, int, str]]:
        """(index, term, path) of every snapshot file, oldest first."""
        out = []
        for name in os.listdir(self.dir):
            m = _NAME.match(name)
            if m:
                out.append((int(m.group(2), 16), int(m.group(1), 16), os.path.join(self.dir, name)))
        out.sort()
        return out

    def clean(self, current: SnapshotMeta, spare: Collection[str] = ()) -> list[str]:
        """Delete leftovers and all but the newest ``keep`` snapshots up to ``current``
        (Rule 2). Failures are logged, not raised: nothing depends on the deletion.
        ``spare`` names files being written in the background right now (and their
        temporary files): they are not leftovers yet."""
        spared = set(spare) | {name + TMP_SUFFIX for name in spare}
        doomed = [os.path.join(self.dir, n) for n in os.listdir(self.dir) if n.endswith(TMP_SUFFIX) and n not in spared]
        kept = 0
        for index, term, path in reversed(self.files()):
            if os.path.basename(path) in spared:
                continue
            if (index, term) == (current.index, current.term):
                kept += 1
            elif index >= current.index:
                log.warning("deleting snapshot %s: newer than the WAL's (a crash before it was recorded)", path)
                doomed.append(path)
            elif kept < self.keep:
                kept += 1
            else:
                doomed.append(path)
        removed = []
        try:
            for path in doomed:
                self.io.unlink(path)
                removed.append(path)
            if removed:
                self.io.fsync_dir(self.dir)
        except OSError as e:
            log.warning("could not delete old snapshot files (will retry): %s", e)
        return removed

    def disk_bytes(self) -> int:
        total = 0
        for _, _, path in self.files():
            try:
                total += os.stat(path).st_size
            except OSError:
                pass
        return total


class FileSnapshot(Snapshot):
    """A snapshot whose data stays in its file until asked for: the storage holds the
    current snapshot for as long as it is current, and holding its bytes in memory
    cost as much as the store itself. ``data`` reads and verifies the file each time
    (only a follower's InstallSnapshot and a restart need it); ``preloaded`` bytes, read
    at recovery, serve the first read (the node restoring from them) and are dropped."""

    __slots__ = ("path", "_preloaded")
    path: str
    _preloaded: bytes | None

    def __init__(self, meta: SnapshotMeta, path: str, preloaded: bytes | None = None) -> None:
        object.__setattr__(self, "meta", meta)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "_preloaded", preloaded)

    @property
    def data(self) -> bytes:
        preloaded = self._preloaded
        if preloaded is not None:
            object.__setattr__(self, "_preloaded", None)
            return preloaded
        return read_snapshot_file(self.path, self.meta)

    def pieces(self, piece_bytes: int) -> tuple[int, Iterator[bytes]]:
        """The data's length and its pieces of at most ``piece_bytes``, read from the file
        one ``next`` at a time (blocking I/O: call it off the event loop), so that a
        member sending a large snapshot never holds it all, nor reads it all before the
        first piece goes out. The file's checksum is verified as the pieces pass: the last
        ``next`` raises StorageCorruptError instead of ending when it does not match, so
        a reader must not trust the data before the iterator has ended."""
        path, meta = self.path, self.meta
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise StorageCorruptError(path, None, f"snapshot {meta.index} (term {meta.term}) is missing") from None
        try:
            found, length, crc = read_snapshot_file_head(f, os.fstat(f.fileno()).st_size)
        except FormatError as e:
            f.close()
            raise StorageCorruptError(path, 0, f"snapshot does not verify: {e}") from None
        if found != meta:
            f.close()
            raise StorageCorruptError(path, 0, f"snapshot file holds {found}, the WAL names {meta}")

        def read() -> Iterator[bytes]:
            nonlocal crc
            with f:
                left = length
                while left:
                    piece = f.read(min(piece_bytes, left))
                    if not piece:
                        raise StorageCorruptError(path, None, "snapshot file is shorter than its header says")
                    crc = zlib.crc32(piece, crc)
                    left -= len(piece)
                    yield piece
                try:
                    check_snapshot_file_tail(f, crc)
                except FormatError as e:
                    raise StorageCorruptError(path, 0, f"snapshot does not verify: {e}") from None

        return length, read()

    def __repr__(self) -> str:
        return f"FileSnapshot(meta={self.meta!r}, path={self.path!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FileSnapshot) and (self.meta, self.path) == (other.meta, other.path):
            return True
        if isinstance(other, Snapshot):
            return self.meta == other.meta and self.data == other.data
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def read_snapshot_file(path: str, meta: SnapshotMeta) -> bytes:
    """The verified data of the snapshot file at ``path``, which must hold ``meta``."""
    try:
        with open(path, "rb") as f:
            try:
                found, data = read_snapshot_file_from(f, os.fstat(f.fileno()).st_size)
            except FormatError as e:
                raise StorageCorruptError(path, 0, f"snapshot does not verify: {e}") from None
    except FileNotFoundError:
        raise StorageCorruptError(
            path, None, f"the WAL names snapshot {meta.index} (term {meta.term}) but its file is missing"
        ) from None
    if found != meta:
        raise StorageCorruptError(path, 0, f"snapshot file holds {found}, the WAL names {meta}")
    return data


class SnapshotFileWriter:
    """One snapshot file written piece by piece as its data is produced (the state is
    encoded in chunks on the event loop, state/snapshot.py Rule 3), so its bytes are never
    all in memory. Same file as ``SnapshotStore.write`` (Rule 1: temp file, fsync,
    rename, directory fsync). ``write`` and ``finish`` do blocking I/O: call them on the
    storage's snapshot thread."""

    READ_BACK_BYTES = 1 << 20

    def __init__(self, io: FileIO, directory: str, meta: SnapshotMeta) -> None:
        self.io = io
        self.directory = directory
        self.meta = meta
        self.name = snapshot_name(meta)
        self.path = os.path.join(directory, self.name)
        self.tmp = self.path + TMP_SUFFIX
        self._head_size = len(snapshot_file_head(meta, 0))
        self._offset = self._head_size
        self._fd: int | None = None

    def write(self, piece: bytes) -> None:
        if self._fd is None:
            self._fd = self.io.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        write_all(self.io, self._fd, piece, self._offset)
        self._offset += len(piece)

    def finish(self) -> FileSnapshot:
        """Head, checksum (the CRC runs over the head, which holds the data's length, so the
        data is read back from the page cache in pieces), fsync, rename."""
        if self._fd is None:
            self.write(b"")
        fd = self._fd
        assert fd is not None
        head = snapshot_file_head(self.meta, self._offset - self._head_size)
        write_all(self.io, fd, head, 0)
        crc = zlib.crc32(head)
        at = self._head_size
        while at < self._offset:
            piece = os.pread(fd, min(self.READ_BACK_BYTES, self._offset - at), at)
            if not piece:
                raise OSError(errno.EIO, f"{self.tmp} is shorter than what was written to it")
            crc = zlib.crc32(piece, crc)
            at += len(piece)
        write_all(self.io, fd, snapshot_file_tail(crc), self._offset)
        self.io.fsync(fd)
        os.close(fd)
        self._fd = None
        self.io.replace(self.tmp, self.path)
        self.io.fsync_dir(self.directory)
        return FileSnapshot(self.meta, self.path)

    def abort(self) -> None:
        """Remove the temporary file (best effort; quick, so callable from the loop)."""
        try:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)
            self.io.unlink(self.tmp)
        except OSError:
            pass
