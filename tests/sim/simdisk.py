"""A simulated disk under the real DiskStorage: real files in a temporary directory, with
the page cache modelled, so a crash loses what a real crash would lose.

Rule 1: every write (pwrite, ftruncate, fallocate) through a ``SimFileIO`` is remembered
        with what it overwrote until an fsync/fdatasync of its file makes it durable.
Rule 2: at a ``crash``, of the writes not yet durable a prefix (in write order) reached the
        disk, the next one perhaps in part (a torn write, cut at a 512-byte sector boundary), and the rest is undone, newest
        first. (Pages written back out of order, a later write surviving an earlier lost
        one, are not modelled: the WAL, as etcd's, reads such a hole as corruption.)
Rule 3: an fsync can be made to fail (EIO). Then, as Linux does (PostgreSQL's fsyncgate),
        the file's unsynced writes are marked lost: they stay visible in the "page cache"
        until a crash, but no later successful fsync makes them durable. A node that goes
        on after a failed fsync therefore loses acknowledged data at the next crash.
Rule 4: each incarnation of a node has its own ``SimFileIO``; once it crashed, any call
        through it raises (a dead process does nothing), and ``crash`` closes the files it
        opened, so the next incarnation can lock the directory again.
Rule 5: ``SimExecutor`` is the writer thread: a submitted write runs ``latency()`` seconds
        later on the simulated loop. A synced write made on the loop itself (an inline
        save) moves the loop's clock by the same latency: it blocks the loop as a real one
        does, which is what makes DiskStorage send the next ones to the "thread".
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from coord_server.storage import FileIO


SECTOR = 512
"""The unit a disk writes atomically."""


class ProcessDead(BaseException):
    """A call through the FileIO of a crashed incarnation (Rule 4)."""


class SimDisk:
    """The durable truth of one node's directory, shared by its incarnations."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.undo: dict[str, list[tuple[str, int, bytes, int]]] = {}
        """path -> unsynced changes, oldest first: (kind, offset, old bytes, old size)."""
        self.lost: dict[str, list[tuple[str, int, bytes, int]]] = {}
        """path -> changes an fsync failed to make durable (Rule 3)."""
        self.fail_next_fsync = False
        self.swallow_fsync_errors = False
        """Report a failed fsync as a success (only plants.swallow_failed_fsync sets it)."""
        self.latency = 0.0005
        """Seconds a synced write takes (the simulator changes it: slow disks)."""
        self.torn_writes = 0
        self.lost_writes = 0

    def crash(self, io: SimFileIO) -> None:
        """Rules 2 and 4."""
        io.dead = True
        for path in set(self.undo) | set(self.lost):
            changes = self.lost.get(path, []) + self.undo.get(path, [])
            if not changes or not os.path.exists(path):
                continue
            fd = os.open(path, os.O_RDWR)
            try:
                # A prefix of the unsynced writes reached the disk, the first one after it
                # perhaps in part (torn); the rest is undone, newest first.
                survive = self.rng.randrange(len(changes) + 1)
                for i in range(len(changes) - 1, survive - 1, -1):
                    kind, offset, old, old_size = changes[i]
                    keep = 0
                    # Torn at a sector boundary: a 512-byte sector is written whole or not.
                    cuts = range((offset // SECTOR + 1) * SECTOR, offset + len(old), SECTOR)
                    if i == survive and kind == "write" and cuts and self.rng.random() < 0.5:
                        keep = self.rng.choice(cuts) - offset
                        self.torn_writes += 1
                    if old[keep:]:
                        os.pwrite(fd, old[keep:], offset + keep)
                    if not keep and os.fstat(fd).st_size > old_size:
                        os.ftruncate(fd, old_size)
                    self.lost_writes += 1
            finally:
                os.close(fd)
        self.undo.clear()
        self.lost.clear()
        for fd in list(io.fds):
            # The process closed some of them itself, and the number may be another
            # member's file now: close only what still is one of this member's files.
            try:
                if os.readlink(f"/proc/self/fd/{fd}").startswith(io.root):
                    os.close(fd)
            except OSError:
                pass
        io.fds.clear()


class SimFileIO(FileIO):
    """The system calls of one incarnation (Rules 1, 3, 4, 5)."""

    def __init__(self, disk: SimDisk, loop: Any, root: str) -> None:
        self.disk = disk
        self.root = os.path.realpath(root) + os.sep
        self.loop = loop
        self.dead = False
        self.on_writer = False
        """True while the SimExecutor runs a write: its latency is the executor's delay."""
        self.fds: set[int] = set()
        self._paths: dict[int, str] = {}
        self.fsyncs = 0
        self.failed_fsync = False
        """An fsync of this incarnation failed (reported or not)."""

    def _alive(self) -> None:
        if self.dead:
            raise ProcessDead("a crashed node touched its disk")

    def _record(self, fd: int, kind: str, offset: int, length: int) -> None:
        path = self._paths[fd]
        size = os.fstat(fd).st_size
        old = os.pread(fd, max(0, min(length, size - offset)), offset) if kind == "write" else b""
        if kind == "truncate":
            old = os.pread(fd, max(0, size - offset), offset)
        self.disk.undo.setdefault(path, []).append((kind, offset, old, size))

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        self._alive()
        if flags & os.O_WRONLY:  # read access too: a write remembers what it overwrites
            flags = (flags & ~os.O_WRONLY) | os.O_RDWR
        fd = os.open(path, flags, mode)
        self.fds.add(fd)
        self._paths[fd] = path
        if flags & os.O_TRUNC:
            self.disk.undo.pop(path, None)
        return fd

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:  # type: ignore[override]
        self._alive()
        self._record(fd, "write", offset, len(data))
        return os.pwrite(fd, data, offset)

    def _sync(self, fd: int) -> None:
        self._alive()
        self.fsyncs += 1
        if not self.on_writer and self.disk.latency:
            self.loop.advance(self.disk.latency)
        path = self._paths.get(fd)
        if self.disk.fail_next_fsync:
            self.disk.fail_next_fsync = False
            self.failed_fsync = True
            if path is not None:
                self.disk.lost.setdefault(path, []).extend(self.disk.undo.pop(path, []))
            if self.disk.swallow_fsync_errors:
                return
            raise OSError(errno.EIO, "simulated fsync failure")
        if path is not None:
            self.disk.undo.pop(path, None)

    def fdatasync(self, fd: int) -> None:  # type: ignore[override]
        self._sync(fd)

    def fsync(self, fd: int) -> None:
        self._sync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        self._alive()
        self._record(fd, "truncate", length, 0)
        os.ftruncate(fd, length)

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        self._alive()
        self._record(fd, "extend", offset, 0)
        super().fallocate(fd, offset, length)

    def replace(self, src: str, dst: str) -> None:
        self._alive()
        os.replace(src, dst)
        moved = self.disk.undo.pop(src, None)
        self.disk.undo.pop(dst, None)
        if moved:
            self.disk.undo[dst] = moved
        for fd, path in self._paths.items():
            if path == src:
                self._paths[fd] = dst

    def unlink(self, path: str) -> None:
        self._alive()
        os.unlink(path)
        self.disk.undo.pop(path, None)
        self.disk.lost.pop(path, None)

    def mkdir(self, path: str) -> None:
        self._alive()
        os.mkdir(path, 0o755)

    def fsync_dir(self, path: str) -> None:
        self._alive()


class SimExecutor(Executor):
    """The writer thread (Rule 5): one write at a time, each ``latency()`` seconds long."""

    def __init__(self, loop: asyncio.AbstractEventLoop, io: SimFileIO, latency: Callable[[], float]) -> None:
        self.loop = loop
        self.io = io
        self.latency = latency
        self._free_at = 0.0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        start = max(self.loop.time(), self._free_at)
        self._free_at = start + self.latency()

        def run() -> None:
            if self.io.dead:
                return  # the process died: the write never finishes
            self.io.on_writer = True
            try:
                result = fn(*args, **kwargs)
            except BaseException as err:  # noqa: BLE001 - handed to the awaiting caller
                fut.set_exception(err)
            else:
                fut.set_result(result)
            finally:
                self.io.on_writer = False

        self.loop.call_at(self._free_at, run)
        return fut
