"""Bad input and failing disks: a clear error every time, and nothing acknowledged that was
not stored."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from coord_server.raft import ConfState, HardState, Snapshot, SnapshotMeta
from coord_server.storage import (
    ClusterIdMismatchError,
    DiskStorage,
    DiskStorageError,
    FileIO,
    StorageFormatError,
    StorageLockedError,
    StorageWriteError,
)

from .helpers import CLUSTER, entry, open_disk, state_of


class FailingIO(FileIO):
    """Fails with ``err`` once ``budget`` bytes have been written, or at the ``fail_at``-th
    call of ``op`` (a full disk, a dying disk)."""

    def __init__(self, err: int = errno.ENOSPC, budget: int | None = None, op: str = "", fail_at: int = 0) -> None:
        self.err = err
        self.budget = budget
        self.op = op
        self.fail_at = fail_at
        self.calls: dict[str, int] = {}

    def _maybe_fail(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1
        if op == self.op and self.calls[op] >= self.fail_at:
            raise OSError(self.err, os.strerror(self.err))

    def pwrite(self, fd: int, data, offset: int) -> int:  # type: ignore[no-untyped-def]
        self._maybe_fail("pwrite")
        if self.budget is not None:
            if self.budget <= 0:
                raise OSError(self.err, os.strerror(self.err))
            n = min(len(data), self.budget)
            self.budget -= n
            return os.pwrite(fd, memoryview(data)[:n], offset)
        return os.pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:  # type: ignore[override]
        self._maybe_fail("fdatasync")
        os.fdatasync(fd)

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        self._maybe_fail("fallocate")
        os.posix_fallocate(fd, offset, length)

    def fsync(self, fd: int) -> None:
        self._maybe_fail("fsync")
        os.fsync(fd)


def test_a_second_opener_is_refused_with_the_holder_pid(data_dir: str) -> None:
    with open_disk(data_dir):
        with pytest.raises(StorageLockedError) as e:
            open_disk(data_dir)
        assert e.value.holder_pid == os.getpid()
        assert data_dir in str(e.value) and str(os.getpid()) in str(e.value)
        # ... and from another process too.
        code = (
            "import sys; from coord_server.storage import DiskStorage, StorageLockedError\n"
            f"try:\n    DiskStorage({data_dir!r}, {CLUSTER})\n"
            "except StorageLockedError as e:\n    print(e.holder_pid); sys.exit(3)\n"
        )
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=root)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30)
        assert out.returncode == 3, out.stderr
        assert out.stdout.strip() == str(os.getpid())
    with open_disk(data_dir):  # released on close
        pass


def test_a_directory_of_another_cluster_is_refused(data_dir: str) -> None:
    with open_disk(data_dir) as disk:
        disk.append([entry(1)])
    with pytest.raises(ClusterIdMismatchError, match=f"belongs to cluster {CLUSTER:#x}, not 0x2a"):
        DiskStorage(data_dir, 42)
    with DiskStorage(data_dir) as disk:  # no expectation: take what is there
        assert disk.cluster_id == CLUSTER and disk.last_index() == 1


def test_a_newer_format_is_refused(data_dir: str) -> None:
    with open_disk(data_dir):
        pass
    meta = os.path.join(data_dir, "META")
    with open(meta, "w") as f:
        json.dump({"format": 2, "cluster_id": CLUSTER}, f)
    with pytest.raises(StorageFormatError, match="format 2, newer than the format 1"):
        open_disk(data_dir)
    with open(meta, "w") as f:
        f.write("{not json")
    with pytest.raises(DiskStorageError, match="META: unreadable metadata"):
        open_disk(data_dir)


def test_a_fresh_directory_needs_a_cluster_id(data_dir: str) -> None:
    with pytest.raises(DiskStorageError, match="a cluster id is needed"):
        DiskStorage(data_dir)


def test_an_uncreatable_directory_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Tests run as root, which chmod cannot stop: put the directory under a regular file.
    blocker = os.path.join(tmp_path, "a-file")
    with open(blocker, "w") as f:
        f.write("x")
    with pytest.raises(DiskStorageError, match=f"cannot create data directory {blocker}/data"):
        open_disk(os.path.join(blocker, "data"))
    with pytest.raises(DiskStorageError, match="not a directory"):
        open_disk(blocker)


@pytest.mark.parametrize(
    "io",
    [
        FailingIO(errno.ENOSPC, op="pwrite", fail_at=1),  # the disk is full
        FailingIO(errno.EIO, op="fdatasync", fail_at=1),  # the disk fails the sync
        FailingIO(errno.ENOSPC, budget=100),  # a short write, then full
    ],
    ids=["enospc", "eio-on-sync", "short-write"],
)
def test_a_failed_save_acknowledges_nothing_and_poisons(data_dir: str, io: FailingIO) -> None:
    with open_disk(data_dir) as disk:
        for i in range(1, 6):
            disk.save(HardState(1, 1, i - 1), [entry(i)])
        want = state_of(disk)
    with open_disk(data_dir, io=io) as disk:
        assert state_of(disk) == want
        with pytest.raises(StorageWriteError) as e:
            disk.save(HardState(2, 1, 5), [entry(6, 2), entry(7, 2)])
        assert e.value.errno == io.err and os.strerror(io.err) in str(e.value)
        assert state_of(disk) == want  # nothing of it is visible
        # Poisoned: even a write that would now succeed is refused.
        io.op, io.budget = "", None
        with pytest.raises(StorageWriteError, match="refuses writes after an earlier write failed"):
            disk.append([entry(6, 2)])
        with pytest.raises(StorageWriteError):
            disk.create_snapshot(3, ConfState(frozenset({1})), b"x")
        assert state_of(disk) == want
    with open_disk(data_dir) as disk:
        # After a restart: what was acknowledged, and perhaps the unacknowledged batch
        # (a write can reach the disk without its fsync returning), never half of a record.
        got = state_of(disk)
        assert got == want or (got["last"] == 7 and disk.entries(6, 8) == [entry(6, 2), entry(7, 2)])


def test_full_disk_when_a_segment_is_created(data_dir: str) -> None:
    with open_disk(data_dir) as disk:
        disk.append([entry(1)])
    io = FailingIO(errno.ENOSPC, op="fallocate", fail_at=1)
    with open_disk(data_dir, io=io) as disk:
        with pytest.raises(StorageWriteError, match="No space left"):
            for i in range(2, 200):  # rotates after ~4 KiB
                disk.append([entry(i, 1, b"p" * 100)])
        last = disk.last_index()
    with open_disk(data_dir) as disk:
        assert disk.last_index() == last  # the rotation never happened; all acknowledged


def test_a_snapshot_that_cannot_be_written_keeps_the_storage_usable(data_dir: str) -> None:
    io = FailingIO(errno.ENOSPC)
    with open_disk(data_dir, io=io) as disk:
        for i in range(1, 10):
            disk.append([entry(i)])
        io.op = "fsync"  # the disk fills up now
        with pytest.raises(StorageWriteError, match="cannot write snapshot 5"):
            disk.create_snapshot(5, ConfState(frozenset({1})), b"image")
        assert disk.snapshot().meta.index == 0
        assert not os.listdir(os.path.join(data_dir, "snap"))
        io.op = ""
        disk.create_snapshot(5, ConfState(frozenset({1})), b"image")
        disk.compact(5)
    with open_disk(data_dir) as disk:
        assert (disk.snapshot().data, disk.first_index()) == (b"image", 6)


def test_installing_a_snapshot_on_a_full_disk(data_dir: str) -> None:
    io = FailingIO(errno.ENOSPC)
    with open_disk(data_dir, io=io) as disk:
        disk.append([entry(1)])
        want = state_of(disk)
        io.op = "fsync"
        snap = Snapshot(SnapshotMeta(10, 2, ConfState(frozenset({1}))), b"leader's image")
        with pytest.raises(StorageWriteError):
            disk.save(HardState(2, 0, 10), [entry(11, 2)], snap)
        assert state_of(disk) == want
    with open_disk(data_dir) as disk:
        assert state_of(disk) == want


def test_invalid_arguments_write_nothing(data_dir: str) -> None:
    with open_disk(data_dir) as disk:
        disk.append([entry(1), entry(2)])
        with pytest.raises(ValueError, match="unknown type"):
            disk.append([entry(3, type=7)])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="snapshot covers only up to 0"):
            disk.compact(1)
        disk.append([entry(3)])  # not poisoned
        assert disk.last_index() == 3
    with pytest.raises(ValueError, match="segment_size"):
        open_disk(data_dir, segment_size=1000)
