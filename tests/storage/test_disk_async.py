"""The asyncio face: writes run on one dedicated thread, memory changes on the loop after
the fsync, one write at a time."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from coord_server.raft import ConfState, HardState, Snapshot, SnapshotMeta
from coord_server.raft.errors import SnapshotOutOfDateError
from coord_server.storage import FileIO
from coord_server.storage import disk as disk_module
from coord_server.storage.disk import INLINE_SYNC_MAX_ENTRIES

from .helpers import entry, open_disk, state_of


class SlowSync(FileIO):
    """fdatasync blocks until the test lets it go, and records the thread it ran on."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.threads: set[str] = set()

    def fdatasync(self, fd: int) -> None:  # type: ignore[override]
        self.threads.add(threading.current_thread().name)
        assert self.gate.wait(10)
        super().fdatasync(fd)


def test_save_async_persists_off_the_loop_and_applies_after(data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disk_module, "INLINE_SYNC_MAX_ENTRIES", 0)  # every save on the thread
    io = SlowSync()

    async def main() -> None:
        with open_disk(data_dir, io=io) as disk:
            io.gate.clear()
            task = asyncio.create_task(disk.save_async(HardState(1, 1, 0), [entry(1), entry(2)]))
            ticks = 0
            while not io.threads:
                await asyncio.sleep(0.001)
            for _ in range(5):  # the loop keeps running while the fsync is stuck
                await asyncio.sleep(0.001)
                ticks += 1
            assert ticks == 5 and not task.done()
            assert disk.last_index() == 0  # not acknowledged, not visible
            with pytest.raises(RuntimeError, match="still in progress"):
                disk.append([entry(1)])
            io.gate.set()
            await task
            assert disk.last_index() == 2 and disk.hard_state == HardState(1, 1, 0)
            await disk.create_snapshot_async(2, ConfState(frozenset({1})), b"two")
            await disk.compact_async(1)
            assert (disk.first_index(), disk.snapshot().data) == (2, b"two")
            assert io.threads == {"coord-wal_0"}

    asyncio.run(main())
    with open_disk(data_dir) as disk:
        assert (disk.first_index(), disk.last_index()) == (2, 2)


def test_cancelling_save_async_still_applies_what_was_written(data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disk_module, "INLINE_SYNC_MAX_ENTRIES", 0)  # every save on the thread
    io = SlowSync()

    async def main() -> None:
        with open_disk(data_dir, io=io) as disk:
            io.gate.clear()
            task = asyncio.create_task(disk.save_async(None, [entry(1)]))
            while not io.threads:
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            io.gate.set()
            for _ in range(200):
                if disk.last_index() == 1:
                    break
                await asyncio.sleep(0.005)
            assert disk.last_index() == 1  # memory matches the disk
            await disk.save_async(None, [entry(2)])  # and the storage is free again
            want = state_of(disk)
        with open_disk(data_dir) as disk:
            assert state_of(disk) == want

    asyncio.run(main())


class SlowSnapshotFile(FileIO):
    """fsync of a file on the background snapshot thread blocks until the test lets it go."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()

    def fsync(self, fd: int) -> None:
        if threading.current_thread().name.startswith("coord-snap"):
            self.started.set()
            assert self.gate.wait(10)
        super().fsync(fd)


async def _until(event: threading.Event) -> None:
    for _ in range(2000):
        if event.is_set():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the background snapshot write never started")


def test_background_snapshot_file_lets_saves_go_on(data_dir: str) -> None:
    io = SlowSnapshotFile()

    async def main() -> None:
        with open_disk(data_dir, io=io) as disk:
            await disk.save_async(HardState(1, 1, 2), [entry(1), entry(2)])
            writing = asyncio.create_task(disk.write_snapshot_async(2, ConfState(frozenset({1})), b"two"))
            await _until(io.started)
            # The log goes on while the snapshot file is being written.
            await disk.save_async(HardState(1, 1, 3), [entry(3)])
            assert disk.last_index() == 3 and disk.snapshot().meta.index == 0
            io.gate.set()
            written = await writing
            assert disk.snapshot().meta.index == 0  # written, not yet recorded
            await disk.record_snapshot_async(written)
            await disk.compact_async(2)
            assert (disk.first_index(), disk.snapshot().data) == (3, b"two")

    asyncio.run(main())
    with open_disk(data_dir) as disk:
        assert (disk.first_index(), disk.last_index(), disk.snapshot().data) == (3, 3, b"two")


def test_snapshot_installed_while_ours_is_written_wins(data_dir: str) -> None:
    """A follower installs the leader's newer snapshot while its own is being written:
    the install must not delete the file being written (it is not a leftover yet), and
    recording ours afterwards is refused as out of date."""
    io = SlowSnapshotFile()
    conf = ConfState(frozenset({1}))

    async def main() -> None:
        with open_disk(data_dir, io=io) as disk:
            await disk.save_async(HardState(1, 1, 2), [entry(1), entry(2)])
            writing = asyncio.create_task(disk.write_snapshot_async(2, conf, b"ours"))
            await _until(io.started)
            leaders = Snapshot(meta=SnapshotMeta(index=9, term=1, conf_state=conf), data=b"leader's")
            await disk.save_async(HardState(1, 1, 9), [], leaders)
            io.gate.set()
            written = await writing  # its temporary file survived the install's clean-up
            with pytest.raises(SnapshotOutOfDateError):
                await disk.record_snapshot_async(written)
            assert disk.snapshot().data == b"leader's"
            await disk.save_async(None, [entry(10)])

    asyncio.run(main())
    with open_disk(data_dir) as disk:
        assert (disk.snapshot().meta.index, disk.snapshot().data, disk.last_index()) == (9, b"leader's", 10)


class SlowDirSync(FileIO):
    """The directory fsync after deleting old WAL segments waits for the test."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def fsync_dir(self, path: str) -> None:
        if not self.gate.is_set():
            self.started.set()
            assert self.gate.wait(10)
        super().fsync_dir(path)


def test_entries_of_a_segment_being_compacted_away_stay_readable(data_dir: str) -> None:
    """A compaction deletes old segments on the writer thread before memory moves the
    log's start; meanwhile the loop may read those entries (for a slow follower). They
    must read as before, not fail because the file is gone."""
    conf = ConfState(frozenset({1}))
    with open_disk(data_dir, cache_entries=1) as disk:
        for i in range(1, 61):  # a segment holds a few batches of this size
            disk.save(HardState(1, 1, i), [entry(i, data=b"x" * 200)])
        assert len(disk._wal.segments) > 2
        want = disk.entries(1, 10)
    io = SlowDirSync()

    async def main() -> None:
        with open_disk(data_dir, io=io, cache_entries=1) as disk:  # reopened: old segments not read yet
            await disk.create_snapshot_async(50, conf, b"fifty")
            io.gate.clear()
            compacting = asyncio.create_task(disk.compact_async(50))
            await _until(io.started)  # old segments unlinked, memory not yet moved
            assert disk.entries(1, 10) == want
            io.gate.set()
            await compacting
            assert disk.first_index() == 51

    asyncio.run(main())


class TimedSync(FileIO):
    """fdatasync takes ``delay`` seconds and records the thread it ran on."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.threads: list[str] = []

    def fdatasync(self, fd: int) -> None:  # type: ignore[override]
        self.threads.append(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)


def test_small_saves_on_a_fast_disk_skip_the_writer_thread_and_a_slow_disk_brings_it_back(
    data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A threshold far above a page-cache write even on a busy machine, a "slow" sync far
    # above it, and a clock of the test's own: nothing depends on this machine's timing.
    monkeypatch.setattr(disk_module, "INLINE_SYNC_BELOW", 0.02)
    io = TimedSync()
    loop_thread = threading.current_thread().name
    wal = "coord-wal_0"
    clock = [100.0]

    async def main() -> None:
        with open_disk(data_dir, io=io) as disk:
            disk._clock = lambda: clock[0]
            await disk.save_async(HardState(1, 1, 0), [entry(1)])
            await disk.save_async(None, [entry(2), entry(3)])
            assert io.threads == [loop_thread, loop_thread], "a small save on a fast disk: on the loop"
            big = [entry(i) for i in range(4, 4 + INLINE_SYNC_MAX_ENTRIES + 1)]
            await disk.save_async(None, big)
            assert io.threads[-1] == wal, "a larger save: the thread"
            index = big[-1].index
            io.delay = 0.15  # one such sync lifts the average above the threshold
            for step in (0.0, 0.5, 0.4, 0.1, 0.5):  # seconds since the previous save
                clock[0] += step
                index += 1
                await disk.save_async(None, [entry(index)])
            # The first finds the disk slow; then the thread, except one save on the loop
            # a probe interval (1 s) after the last one there, to measure again.
            assert io.threads[-5:] == [loop_thread, wal, wal, loop_thread, wal]
            assert disk.last_index() == index

    asyncio.run(main())
    with open_disk(data_dir) as disk:
        assert disk.last_index() == 4 + INLINE_SYNC_MAX_ENTRIES + 5
