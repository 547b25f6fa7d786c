"""File-system plumbing of the data directory: the system calls that change the disk, the
directory lock, the metadata file.

Layout of a data directory::

    LOCK    flock()ed by the process that has the directory open; holds its pid
    META    {"format": 1, "cluster_id": N} (JSON), written once, atomically
    wal/    <seq:016x>-<first index:016x>.wal   log segments (see wal.py)
    snap/   <term:016x>-<index:016x>.snap       snapshots (see snapshot.py)

Rule 1: every change to the disk goes through a ``FileIO``; tests substitute one that fails
        (a full disk, an I/O error) to check that nothing unstored is ever acknowledged.
Rule 2: a file appears under its final name only complete and synced (write a ``.tmp``,
        fsync, rename, fsync the directory); creating, renaming and removing a file is
        followed by an fsync of its directory before anything relies on it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os

from .errors import ClusterIdMismatchError, StorageCorruptError, StorageFormatError, StorageLockedError
from .records import FORMAT_VERSION

TMP_SUFFIX = ".tmp"


class FileIO:
    """The system calls that change the disk. Subclass and override to inject failures;
    every method has the signature and errors of the ``os`` function it names."""

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return os.open(path, flags, mode)

    # The hot two are the os functions themselves (no Python frame per call).
    pwrite = staticmethod(os.pwrite)
    """pwrite(fd, data, offset) -> bytes written"""
    fdatasync = staticmethod(getattr(os, "fdatasync", os.fsync))
    """fdatasync(fd): also syncs what is needed to read the data back (size, extents)"""

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        os.posix_fallocate(fd, offset, length)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


if not hasattr(os, "posix_fallocate"):  # pragma: no cover - macOS

    def _no_fallocate(self: FileIO, fd: int, offset: int, length: int) -> None:
        pass

    FileIO.fallocate = _no_fallocate  # type: ignore[method-assign]


def write_all(io: FileIO, fd: int, data: bytes | memoryview, offset: int) -> None:
    """pwrite until everything is written (a regular file may take less at once)."""
    view = memoryview(data)
    while view:
        n = io.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.EIO, "pwrite wrote nothing")
        view = view[n:]
        offset += n


def write_file_atomically(io: FileIO, directory: str, name: str, pieces: list[bytes]) -> str:
    """Write ``pieces`` to ``directory/name`` by Rule 2; return the final path. On failure
    the temporary file is removed (best effort) and the OSError propagates."""
    path = os.path.join(directory, name)
    tmp = path + TMP_SUFFIX
    fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        offset = 0
        for piece in pieces:
            write_all(io, fd, piece, offset)
            offset += len(piece)
        io.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    io.replace(tmp, path)
    io.fsync_dir(directory)
    return path


# -- the directory lock --------------------------------------------------------------------


def lock_directory(path: str) -> int:
    """Take the exclusive lock on ``path/LOCK``; return its fd (closing it releases the lock).
    Raises StorageLockedError naming the holder's pid when another opener holds it."""
    lock_path = os.path.join(path, "LOCK")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = int(os.pread(fd, 32, 0).decode().strip() or 0) or None
        except (OSError, ValueError):
            holder = None
        os.close(fd)
        raise StorageLockedError(path, holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


# -- the metadata file ---------------------------------------------------------------------

META = "META"


def read_meta(path: str, cluster_id: int | None) -> int | None:
    """The cluster id in ``path/META`` (None if there is no META yet). Checks the format and,
    when ``cluster_id`` is given, that it matches."""
    meta_path = os.path.join(path, META)
    try:
        with open(meta_path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        meta = json.loads(raw)
        fmt = meta["format"]
        found = meta["cluster_id"]
        if not isinstance(fmt, int) or not isinstance(found, int):
            raise ValueError("format and cluster_id must be integers")
    except (ValueError, KeyError, TypeError) as e:
        raise StorageCorruptError(meta_path, None, f"unreadable metadata ({e})") from None
    if fmt > FORMAT_VERSION:
        raise StorageFormatError(
            f"data directory {path} was written in storage format {fmt}, newer than the "
            f"format {FORMAT_VERSION} this coord reads: run a newer coord"
        )
    if fmt < 1:
        raise StorageFormatError(f"data directory {path} has unknown storage format {fmt}")
    if cluster_id is not None and found != cluster_id:
        raise ClusterIdMismatchError(path, found, cluster_id)
    return found


def write_meta(io: FileIO, path: str, cluster_id: int) -> None:
    body = json.dumps({"format": FORMAT_VERSION, "cluster_id": cluster_id}).encode() + b"\n"
    write_file_atomically(io, path, META, [body])
