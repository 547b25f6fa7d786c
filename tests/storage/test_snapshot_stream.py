"""Snapshot files written piece by piece (SnapshotFileWriter) and kept on disk only
(FileSnapshot): the storage never holds a snapshot's bytes in memory."""

from __future__ import annotations

import asyncio
import functools
import os

import pytest

from coord_server.raft import ConfState, HardState
from coord_server.storage.errors import StorageCorruptError
from coord_server.storage.snapshot import FileSnapshot

from .helpers import entry, open_disk

CONF = ConfState(frozenset({1}))


async def stream(disk: object, index: int, pieces: list[bytes]) -> object:
    writer = disk.begin_snapshot(index, CONF)  # type: ignore[attr-defined]
    for piece in pieces:
        await disk.snapshot_io(functools.partial(writer.write, piece))  # type: ignore[attr-defined]
    return await disk.snapshot_io(writer.finish)  # type: ignore[attr-defined]


def test_streamed_snapshot_is_recorded_read_back_and_the_only_file(data_dir: str) -> None:
    pieces = [b"head", os.urandom(3 << 20), b"", b"tail"]

    async def main() -> None:
        with open_disk(data_dir, keep_snapshots=1) as disk:
            await disk.save_async(HardState(1, 1, 3), [entry(1), entry(2), entry(3)])
            written = await stream(disk, 2, [b"old"])
            await disk.record_snapshot_async(written)
            written = await stream(disk, 3, pieces)
            assert isinstance(written, FileSnapshot)
            await disk.record_snapshot_async(written)
            current = disk.snapshot()
            assert isinstance(current, FileSnapshot) and current.data == b"".join(pieces)
            names = sorted(os.listdir(os.path.join(data_dir, "snap")))
            assert len(names) == 1 and names[0].endswith(".snap"), names
            assert disk.disk_usage()["snapshot_bytes"] == os.path.getsize(os.path.join(data_dir, "snap", names[0]))

    asyncio.run(main())
    with open_disk(data_dir) as disk:
        snap = disk.snapshot()
        assert snap.meta.index == 3 and snap.data == b"".join(pieces) and snap.data == b"".join(pieces)


def test_a_damaged_snapshot_file_is_refused_when_read(data_dir: str) -> None:
    async def main() -> FileSnapshot:
        with open_disk(data_dir) as disk:
            await disk.save_async(HardState(1, 1, 2), [entry(1), entry(2)])
            written = await stream(disk, 2, [b"x" * 1000])
            await disk.record_snapshot_async(written)
            snap = disk.snapshot()
            assert isinstance(snap, FileSnapshot)
            return snap

    snap = asyncio.run(main())
    with open(snap.path, "r+b") as f:
        f.seek(100)
        f.write(b"y")
    with pytest.raises(StorageCorruptError, match="checksum"):
        snap.data


def test_an_abandoned_snapshot_leaves_no_file(data_dir: str) -> None:
    async def main() -> None:
        with open_disk(data_dir) as disk:
            await disk.save_async(HardState(1, 1, 2), [entry(1), entry(2)])
            writer = disk.begin_snapshot(2, CONF)
            await disk.snapshot_io(functools.partial(writer.write, b"part"))
            await disk.snapshot_io(writer.abort)
            disk.end_snapshot(writer)
            assert os.listdir(os.path.join(data_dir, "snap")) == []
            assert disk.snapshot().meta.index == 0

    asyncio.run(main())


def test_pieces_read_the_file_in_order_and_check_it_at_the_end(data_dir: str) -> None:
    """What a leader sends to a follower (grpc_peer.py): the file read piece by piece,
    never whole; a damaged file is refused by the last ``next``, before a sender could
    tell the follower the snapshot is complete."""
    body = os.urandom((1 << 20) + 123)

    async def main() -> FileSnapshot:
        with open_disk(data_dir) as disk:
            await disk.save_async(HardState(1, 1, 2), [entry(1), entry(2)])
            await disk.record_snapshot_async(await stream(disk, 2, [body]))
            snap = disk.snapshot()
            assert isinstance(snap, FileSnapshot)
            return snap

    snap = asyncio.run(main())
    length, pieces = snap.pieces(256 << 10)
    got = list(pieces)
    assert length == len(body) and b"".join(got) == body
    assert [len(p) for p in got] == [256 << 10] * 4 + [123]
    with open(snap.path, "r+b") as f:
        f.seek(-200, os.SEEK_END)
        f.write(b"y")
    length, pieces = snap.pieces(256 << 10)
    for _ in range(5):
        next(pieces)  # every piece is handed out...
    with pytest.raises(StorageCorruptError, match="checksum"):
        next(pieces)  # ...and the check follows the last
