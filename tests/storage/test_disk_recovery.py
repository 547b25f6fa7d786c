"""Recovery from damage: a torn tail is cut and everything before it comes back exactly;
any other damage refuses to open with StorageCorruptError naming the file and offset, and
leaves the directory as it was. Never a wrong record."""

from __future__ import annotations

import logging
import os
import random
import shutil
import struct
from dataclasses import dataclass

import pytest

from coord_server.raft import ConfState, HardState, MemoryStorage
from coord_server.storage import StorageCorruptError

from .helpers import NO_SYNC, entry, open_disk, state_of

CS = ConfState(frozenset({1, 2, 3}))


@dataclass
class Boundary:
    path: str
    offset: int
    state: dict[str, object]


def build_log(path: str) -> tuple[list[Boundary], list[str]]:
    """A small log over several segments where every save writes exactly one record.

    Returns every record boundary of the newest segment's records with the state the log
    has when it ends there, and the segment paths (oldest first).
    """
    ref = MemoryStorage()
    bounds: list[Boundary] = []
    with open_disk(path, preallocate=False, io=NO_SYNC) as disk:
        wal = disk._wal  # white box: where each save landed

        def step(op: str, *args: object) -> None:
            before_seq = wal.tail.seq
            before = state_of(ref)
            getattr(disk, op)(*args)
            getattr(ref, op)(*args)
            if wal.tail.seq != before_seq:  # rotated: the new segment starts from `before`
                bounds.append(Boundary(wal.tail.path, wal.header_end, before))
            bounds.append(Boundary(wal.tail.path, wal.off, state_of(ref)))

        bounds.append(Boundary(wal.tail.path, wal.off, state_of(ref)))
        for i in range(1, 81):
            step("append", [entry(i, 1 + i // 30, bytes([i]) * (40 + i % 50))])
            if i % 4 == 0:
                step("set_hard_state", HardState(term=1 + i // 30, vote=2, commit=i - 2))
            if i == 25:
                step("create_snapshot", 20, CS, b"image at 20")
            if i == 30:
                step("compact", 12)
            if i == 70:
                step("create_snapshot", 60, CS, b"image at 60")
        # The newest segment gets every kind of record a save writes alone.
        newest = wal.tail.seq
        step("create_snapshot", 75, CS, b"image at 75")
        step("compact", 30)  # deletes no segment: cutting it off stays recoverable
        for i in range(81, 86):
            step("append", [entry(i, 3, bytes([i]) * 30)])
            step("set_hard_state", HardState(term=3, vote=1, commit=i))
        assert wal.tail.seq == newest
        paths = [s.path for s in wal.segments]
    assert len(paths) >= 3
    return bounds, paths


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Boundary], list[str]]:
    path = os.path.join(os.fspath(tmp_path_factory.mktemp("pristine")), "data")
    bounds, paths = build_log(path)
    return path, bounds, paths


def snapshot_tree(path: str) -> dict[str, bytes]:
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            if f != "LOCK":
                p = os.path.join(root, f)
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, path)] = fh.read()
    return out


_pristine_files: dict[str, dict[str, bytes]] = {}


def reset(work: str, pristine_dir: str) -> None:
    """Make ``work`` a copy of ``pristine_dir`` again (cheaper than rmtree + copytree)."""
    files = _pristine_files.get(pristine_dir)
    if files is None:
        files = _pristine_files[pristine_dir] = snapshot_tree(pristine_dir)
    current = snapshot_tree(work) if os.path.isdir(work) else {}
    for rel_path in current.keys() - files.keys():
        os.unlink(os.path.join(work, rel_path))
    for rel_path, content in files.items():
        if current.get(rel_path) != content:
            path = os.path.join(work, rel_path)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(content)


def damage_and_open(pristine_dir: str, work: str, rel: str, offset: int, mode: str, bit: int = 0):  # type: ignore[no-untyped-def]
    """Copy, damage ``rel`` at ``offset`` ('truncate' or 'flip'), open. Returns the state or
    the StorageCorruptError; checks a refusal left the files untouched."""
    reset(work, pristine_dir)
    target = os.path.join(work, rel)
    if mode == "truncate":
        os.truncate(target, offset)
    else:
        with open(target, "r+b") as f:
            f.seek(offset)
            b = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([b ^ (1 << bit)]))
    before = snapshot_tree(work)
    try:
        disk = open_disk(work, io=NO_SYNC)
    except StorageCorruptError as e:
        assert snapshot_tree(work) == before, "a refused open changed the directory"
        return e
    try:
        got = state_of(disk)
        disk.append([entry(disk.last_index() + 1, 9)])  # and it keeps working
    finally:
        disk.close()
    with open_disk(work, io=NO_SYNC) as again:  # the cut stays cut: a second open agrees
        assert again.last_index() == got["last"] + 1  # type: ignore[operator]
        assert again.entries(again.first_index(), again.last_index()) == got["entries"][1]  # type: ignore[index]
    return got


def expected_at(bounds: list[Boundary], path: str, offset: int) -> dict[str, object] | None:
    """The state when ``path`` (the newest segment) ends at ``offset``: the last boundary
    at or before it (None: inside the segment header)."""
    best = None
    for b in bounds:
        if b.path == path and b.offset <= offset:
            best = b.state
    return best


def offsets_to_try(size: int, boundaries: list[int], rng: random.Random) -> list[int]:
    picks: set[int] = set()
    for b in boundaries:
        picks.update(o for o in (b - 1, b, b + 1, b + 7) if 0 <= o < size)
    picks.update(rng.sample(range(size), min(size, 60)))
    return sorted(picks)


def test_damage_in_the_newest_segment(pristine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Truncation anywhere past the header is a torn tail: exactly the records before it
    come back. A flipped bit either refuses or (if it looks torn) gives the records before
    the damaged one. Never anything else."""
    src, bounds, paths = pristine
    newest = paths[-1]
    rel = os.path.relpath(newest, src)
    size = os.path.getsize(newest)
    mine = [b.offset for b in bounds if b.path == newest]
    header_end = min(mine)
    rng = random.Random(7)
    work = os.path.join(tmp_path, "work")
    recovered = refused = 0
    for off in offsets_to_try(size, mine, rng):
        want = expected_at(bounds, newest, off)
        got = damage_and_open(src, work, rel, off, "truncate")
        if off < header_end:
            assert isinstance(got, StorageCorruptError), off
            assert got.path.endswith(os.path.basename(newest))
            continue
        assert not isinstance(got, Exception), (off, got)
        assert got == want, f"truncated at {off}"
        got = damage_and_open(src, work, rel, off, "flip", bit=rng.randrange(8))
        if isinstance(got, StorageCorruptError):
            assert os.path.basename(newest) in str(got) and got.offset is not None
            refused += 1
        else:
            # Only ever the records before the damaged one.
            assert got == expected_at(bounds, newest, off), f"flipped a bit at {off}"
            recovered += 1
    # Flips are refused (a checksum cannot tell a flip from anything but a torn write)
    # unless the damaged record happens to look torn; either way no wrong record.
    assert refused > recovered


@pytest.mark.parametrize("which", [0, 1, -2])
def test_damage_in_an_older_segment_refuses(pristine, tmp_path, which: int) -> None:  # type: ignore[no-untyped-def]
    src, bounds, paths = pristine
    path = paths[which]
    rel = os.path.relpath(path, src)
    size = os.path.getsize(path)
    rng = random.Random(which)
    work = os.path.join(tmp_path, "work")
    mine = [b.offset for b in bounds if b.path == path]
    assert len(mine) > 10
    for off in offsets_to_try(size, mine, rng):
        for mode in ("truncate", "flip"):
            got = damage_and_open(src, work, rel, off, mode, bit=rng.randrange(8))
            assert isinstance(got, StorageCorruptError), (mode, off, got)
            assert got.path.endswith(os.path.basename(path)), got
            assert got.offset is not None


def test_missing_segments_and_snapshots_refuse(pristine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src, _, paths = pristine
    work = os.path.join(tmp_path, "work")
    for victim, match in [
        (paths[1], "missing between"),  # a middle segment
        (paths[0], "missing"),  # the oldest, whose entries were never compacted
    ]:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(src, work)
        os.unlink(os.path.join(work, os.path.relpath(victim, src)))
        with pytest.raises(StorageCorruptError, match=match):
            open_disk(work)
    snap_dir = os.path.join(src, "snap")
    newest_snap = sorted(os.listdir(snap_dir))[-1]
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(src, work)
    os.unlink(os.path.join(work, "snap", newest_snap))
    with pytest.raises(StorageCorruptError, match="file is missing"):
        open_disk(work)
    size = os.path.getsize(os.path.join(snap_dir, newest_snap))
    for off in range(0, size, 5):
        got = damage_and_open(src, work, os.path.join("snap", newest_snap), off, "flip", bit=off % 8)
        assert isinstance(got, StorageCorruptError) and "snap" in got.path, off


def test_zero_tail_of_a_preallocated_segment(data_dir: str, caplog: pytest.LogCaptureFixture) -> None:
    """The newest segment is preallocated: its zeros are the end of the log, silently; a
    partial record in front of them is cut with a log line naming file, offset, bytes."""
    with open_disk(data_dir, preallocate=True, segment_size=1 << 20) as disk:
        for i in range(1, 11):
            disk.save(HardState(1, 1, i - 1), [entry(i)])
        path, end = disk._wal.tail.path, disk._wal.off
        want = state_of(disk)
    assert os.path.getsize(path) == 1 << 20
    with open_disk(data_dir, segment_size=1 << 20) as disk:
        assert state_of(disk) == want
    assert "torn" not in caplog.text
    # A half-written save after the end: its first sector reached the disk, the next one
    # did not (zeros from the sector boundary on).
    word = (2 << 24) | 600
    boundary = (end // 512 + 1) * 512
    with open(path, "r+b") as f:
        f.seek(end)
        f.write(struct.pack("<III", word, word ^ 0xFFFFFFFF, 12345) + b"\x07" * (boundary - end - 12))
    caplog.set_level(logging.WARNING, logger="coord.storage")
    with open_disk(data_dir, segment_size=1 << 20) as disk:
        assert state_of(disk) == want
    assert f"{path}: cut a torn tail of {boundary - end} bytes at offset {end}" in caplog.text
    assert os.path.getsize(path) == 1 << 20  # preallocated again


def test_unwritten_sector_in_the_last_write_is_a_torn_tail(data_dir: str) -> None:
    """A crash may persist a later page of a write but not an earlier one."""
    with open_disk(data_dir, preallocate=False, segment_size=1 << 20) as disk:
        for i in range(1, 6):
            disk.append([entry(i)])
        want = state_of(disk)
        start = disk._wal.off
        disk.append([entry(i, data=b"\xff" * 3000) for i in range(6, 9)])
        path = disk._wal.tail.path
    with open(path, "r+b") as f:
        first_sector = (start // 512 + 1) * 512
        f.seek(first_sector)
        f.write(bytes(512))  # the second sector of the batch never reached the disk
    with open_disk(data_dir, segment_size=1 << 20) as disk:
        assert state_of(disk) == want


def test_restart_in_the_middle_of_writing_a_snapshot(data_dir: str) -> None:
    with open_disk(data_dir) as disk:
        for i in range(1, 30):
            disk.append([entry(i)])
        disk.create_snapshot(10, CS, b"ten")
        want = state_of(disk)
    snap_dir = os.path.join(data_dir, "snap")
    # Crashed while writing the temp file of snapshot 20, and after renaming snapshot 25
    # but before its WAL record: both are leftovers.
    with open(os.path.join(snap_dir, f"{1:016x}-{20:016x}.snap.tmp"), "wb") as f:
        f.write(b"half a snap")
    with open(os.path.join(snap_dir, f"{1:016x}-{10:016x}.snap"), "rb") as f:
        good = f.read()
    with open(os.path.join(snap_dir, f"{1:016x}-{25:016x}.snap"), "wb") as f:
        f.write(good)
    with open_disk(data_dir) as disk:
        assert state_of(disk) == want
        assert sorted(os.listdir(snap_dir)) == [f"{1:016x}-{10:016x}.snap"]
        disk.create_snapshot(20, CS, b"twenty")
        disk.compact(15)
    with open_disk(data_dir) as disk:
        assert (disk.snapshot().data, disk.first_index(), disk.last_index()) == (b"twenty", 16, 29)


def test_crash_during_rotation(data_dir: str) -> None:
    """Sealed but the next segment never renamed into place: the leftover temp file is
    deleted and a fresh segment continues the log."""
    with open_disk(data_dir) as disk:
        for i in range(1, 20):
            disk.append([entry(i)])
        disk._wal.seal()
        want = state_of(disk)
        tail = disk._wal.tail.path
    with open(os.path.join(data_dir, "wal", "0000000000000009-0000000000000014.wal.tmp"), "wb") as f:
        f.write(b"partial")
    with open_disk(data_dir) as disk:
        assert state_of(disk) == want
        assert disk._wal.tail.path != tail
        disk.append([entry(20)])
    with open_disk(data_dir) as disk:
        assert disk.last_index() == 20
        assert not [n for n in os.listdir(os.path.join(data_dir, "wal")) if n.endswith(".tmp")]


def test_interrupted_initialisation_starts_afresh(data_dir: str) -> None:
    with open_disk(data_dir) as disk:
        pass
    os.unlink(os.path.join(data_dir, "META"))  # as if we crashed before writing it
    with open_disk(data_dir) as disk:
        disk.append([entry(1)])
    os.unlink(os.path.join(data_dir, "META"))  # but now the log holds data
    with pytest.raises(StorageCorruptError, match="metadata file is missing"):
        open_disk(data_dir)


def test_entries_damaged_after_opening_are_detected_on_read(data_dir: str) -> None:
    with open_disk(data_dir, cache_entries=1) as disk:
        for i in range(1, 10):
            disk.append([entry(i)])
        pos = disk._positions[2] & ((1 << 40) - 1)
        path = disk._wal.tail.path
        with open(path, "r+b") as f:
            f.seek(pos + 20)
            f.write(b"!")
        assert disk.entries(1, 3) == [entry(1), entry(2)]
        with pytest.raises(StorageCorruptError, match="entry 3 no longer verifies"):
            disk.entries(1, 5)
