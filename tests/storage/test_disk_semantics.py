"""DiskStorage answers exactly as MemoryStorage (the reference) does, before and after a
reopen: hypothesis drives random sequences of writes against both."""

from __future__ import annotations

import random
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from coord_server.raft import (
    CompactedError,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Snapshot,
    SnapshotMeta,
    SnapshotOutOfDateError,
    UnavailableError,
)
from .helpers import NO_SYNC, assert_same, entry, open_disk, outcome

conf_states = st.builds(
    lambda v, l: ConfState(voters=frozenset(v), learners=frozenset(l - v)),
    st.frozensets(st.integers(1, 9), max_size=4),
    st.frozensets(st.integers(1, 9), max_size=2),
)


class DiskMatchesMemory(RuleBasedStateMachine):
    """Every write goes to both; after every step, every read agrees."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="coord-storage-")
        self.ref = MemoryStorage()
        # Tiny segments and cache: rotation and reads from disk happen all the time.
        self.disk = open_disk(self.dir, cache_entries=3, io=NO_SYNC, segment_size=1024)
        self.rng = random.Random(0)

    def teardown(self) -> None:
        self.disk.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def both(self, name: str, *args: object) -> None:
        assert outcome(getattr(self.disk, name), *args) == outcome(getattr(self.ref, name), *args)

    @rule(data=st.data(), n=st.integers(0, 6), term=st.integers(1, 4), size=st.integers(0, 300))
    def append(self, data: st.DataObject, n: int, term: int, size: int) -> None:
        first, last = self.ref.first_index(), self.ref.last_index()
        start = data.draw(st.integers(max(1, first - 3), last + 1), label="start")
        entries = [
            Entry(term=term, index=start + i, type=EntryType(i % 2 if size % 3 == 0 else 0),
                  data=bytes([start % 256]) * (size if i == 0 else size // (i + 1)))
            for i in range(n)
        ]
        self.both("append", entries)

    @rule(term=st.integers(1, 4), count=st.integers(10, 40))
    def append_many(self, term: int, count: int) -> None:
        """Enough to fill a segment or more (they hold 1 KiB here)."""
        start = self.ref.last_index() + 1
        self.both("append", [entry(start + i, term, b"m" * 150) for i in range(count)])

    @rule(term=st.integers(0, 9), vote=st.integers(0, 9), commit=st.integers(0, 500))
    def set_hard_state(self, term: int, vote: int, commit: int) -> None:
        self.both("set_hard_state", HardState(term=term, vote=vote, commit=commit))

    @rule(data=st.data(), cs=conf_states, payload=st.binary(max_size=64))
    def create_snapshot(self, data: st.DataObject, cs: ConfState, payload: bytes) -> None:
        first, last = self.ref.first_index(), self.ref.last_index()
        index = data.draw(st.integers(max(0, first - 2), last + 1), label="index")
        try:
            want = self.ref.create_snapshot(index, cs, payload)
        except (SnapshotOutOfDateError, UnavailableError, CompactedError) as e:
            with pytest.raises(type(e)) as got:
                self.disk.create_snapshot(index, cs, payload)
            assert str(got.value) == str(e)
            return
        assert self.disk.create_snapshot(index, cs, payload) == want

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        first, last = self.ref.first_index(), self.ref.last_index()
        index = data.draw(st.integers(max(0, first - 2), last + 1), label="index")
        if first <= index <= last and index > self.ref.snapshot().meta.index:
            # The one deliberate difference: never compact what no snapshot covers.
            with pytest.raises(ValueError, match="snapshot covers only"):
                self.disk.compact(index)
            return
        self.both("compact", index)

    @rule(data=st.data(), term=st.integers(1, 9), cs=conf_states, payload=st.binary(max_size=64))
    def apply_snapshot(self, data: st.DataObject, term: int, cs: ConfState, payload: bytes) -> None:
        current = self.ref.snapshot().meta.index
        index = data.draw(st.integers(max(0, current - 1), max(current, self.ref.last_index()) + 5), label="index")
        snap = Snapshot(SnapshotMeta(index=index, term=term, conf_state=cs), payload)
        try:
            self.ref.apply_snapshot(snap)
        except SnapshotOutOfDateError:
            with pytest.raises(SnapshotOutOfDateError):
                self.disk.apply_snapshot(snap)
            return
        self.disk.apply_snapshot(snap)

    @rule(data=st.data(), hs=st.booleans(), n=st.integers(0, 4), term=st.integers(1, 4))
    def save_batch(self, data: st.DataObject, hs: bool, n: int, term: int) -> None:
        """A Ready's worth at once: maybe a snapshot, entries, maybe a hard state."""
        snap = None
        if data.draw(st.booleans(), label="with snapshot"):
            index = self.ref.snapshot().meta.index + data.draw(st.integers(1, 8), label="ahead")
            snap = Snapshot(SnapshotMeta(index=index, term=term, conf_state=ConfState(frozenset({1}))), b"s")
        base_last = snap.meta.index if snap else self.ref.last_index()
        base_first = snap.meta.index + 1 if snap else self.ref.first_index()
        start = data.draw(st.integers(base_first, base_last + 1), label="start")
        entries = [entry(start + i, term) for i in range(n)]
        hard = HardState(term=term, vote=1, commit=start) if hs else None
        if snap:
            self.ref.apply_snapshot(snap)
        self.ref.append(entries)
        if hard:
            self.ref.set_hard_state(hard)
        self.disk.save(hard, entries, snap)

    @rule()
    def reopen(self) -> None:
        self.disk.close()
        self.disk = open_disk(self.dir, cache_entries=self.rng.choice([1, 3, 1000]), io=NO_SYNC, segment_size=1024)

    @invariant()
    def reads_agree(self) -> None:
        assert_same(self.disk, self.ref)
        first, last = self.ref.first_index(), self.ref.last_index()
        for _ in range(6):
            lo = self.rng.randint(max(0, first - 2), last + 2)
            hi = self.rng.randint(lo, last + 2)
            max_bytes = self.rng.choice([None, 0, 1, 50, 300, 1000])
            assert outcome(self.disk.entries, lo, hi, max_bytes) == outcome(self.ref.entries, lo, hi, max_bytes)


DiskMatchesMemory.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDiskMatchesMemory = DiskMatchesMemory.TestCase


# -- a few cases spelled out -----------------------------------------------------------------


def test_empty_storage_reads_like_memory(data_dir: str) -> None:
    with open_disk(data_dir) as disk:
        assert_same(disk, MemoryStorage())
        with pytest.raises(CompactedError):
            disk.entries(0, 1)
        with pytest.raises(UnavailableError):
            disk.entries(1, 2)
        assert disk.term(0) == 0


def test_save_is_one_batch_in_ready_order(data_dir: str) -> None:
    ref = MemoryStorage()
    with open_disk(data_dir) as disk:
        snap = Snapshot(SnapshotMeta(index=10, term=2, conf_state=ConfState(frozenset({1, 2, 3}))), b"image")
        entries = [entry(11, 2), entry(12, 3)]
        hs = HardState(term=3, vote=2, commit=11)
        disk.save(hs, entries, snap)
        ref.apply_snapshot(snap)
        ref.append(entries)
        ref.set_hard_state(hs)
        assert_same(disk, ref)
    with open_disk(data_dir) as disk:
        assert_same(disk, ref)


def test_conflicting_suffix_is_replaced_across_segments(data_dir: str) -> None:
    ref = MemoryStorage()
    with open_disk(data_dir) as disk:
        for i in range(1, 200):
            disk.append([entry(i, 1, b"x" * 40)])
            ref.append([entry(i, 1, b"x" * 40)])
        assert disk.disk_usage()["segments"] > 2
        disk.append([entry(20, 2), entry(21, 2)])
        ref.append([entry(20, 2), entry(21, 2)])
        assert_same(disk, ref)
    with open_disk(data_dir) as disk:
        assert_same(disk, ref)
        disk.append([entry(22, 2)])
        ref.append([entry(22, 2)])
        assert_same(disk, ref)


def test_gaps_and_non_contiguous_batches_are_refused_before_writing(data_dir: str) -> None:
    with open_disk(data_dir) as disk:
        disk.append([entry(1), entry(2)])
        with pytest.raises(ValueError, match="gap"):
            disk.append([entry(4)])
        with pytest.raises(ValueError, match="contiguous"):
            disk.append([entry(3), entry(5)])
        assert disk.last_index() == 2
    with open_disk(data_dir) as disk:
        assert disk.last_index() == 2


def test_compaction_deletes_covered_segments_and_survives_restart(data_dir: str) -> None:
    ref = MemoryStorage()
    with open_disk(data_dir) as disk:
        for i in range(1, 400):
            disk.save(HardState(1, 1, i - 1), [entry(i, 1, b"y" * 50)])
            ref.append([entry(i, 1, b"y" * 50)])
            ref.set_hard_state(HardState(1, 1, i - 1))
        before = disk.disk_usage()["segments"]
        cs = ConfState(frozenset({1}))
        assert disk.create_snapshot(300, cs, b"state@300") == ref.create_snapshot(300, cs, b"state@300")
        disk.compact(290)
        ref.compact(290)
        after = disk.disk_usage()["segments"]
        assert after < before
        assert_same(disk, ref)
    with open_disk(data_dir) as disk:
        assert_same(disk, ref)
        assert disk.entries(291, 293) == ref.entries(291, 293)


def test_snapshot_files_kept_are_the_newest_few(data_dir: str) -> None:
    import os

    with open_disk(data_dir, keep_snapshots=2) as disk:
        for i in range(1, 11):
            disk.append([entry(i)])
        for i in (3, 5, 7, 9):
            disk.create_snapshot(i, ConfState(frozenset({1})), b"s%d" % i)
        names = sorted(os.listdir(os.path.join(data_dir, "snap")))
        assert [int(n.split("-")[1].split(".")[0], 16) for n in names] == [7, 9]
    with open_disk(data_dir) as disk:
        assert disk.snapshot().data == b"s9"


def test_install_snapshot_drops_every_older_segment(data_dir: str) -> None:
    with open_disk(data_dir) as disk:
        for i in range(1, 300):
            disk.append([entry(i, 1, b"z" * 60)])
        assert disk.disk_usage()["segments"] > 3
        disk.apply_snapshot(Snapshot(SnapshotMeta(1000, 5, ConfState(frozenset({1, 2}))), b"leader's"))
        assert disk.disk_usage()["segments"] == 1
        assert (disk.first_index(), disk.last_index(), disk.term(1000)) == (1001, 1000, 5)
    with open_disk(data_dir) as disk:
        assert (disk.first_index(), disk.last_index(), disk.snapshot().data) == (1001, 1000, b"leader's")


def test_old_entries_are_read_back_from_disk_and_limited_by_size(data_dir: str) -> None:
    ref = MemoryStorage()
    with open_disk(data_dir, cache_entries=2) as disk:
        for i in range(1, 120):
            e = entry(i, 1 + i // 50, b"d" * (i % 37))
            disk.append([e])
            ref.append([e])
        for lo, hi, mb in [(1, 120, None), (1, 120, 100), (5, 6, 0), (40, 119, 500), (117, 120, 10)]:
            assert disk.entries(lo, hi, mb) == ref.entries(lo, hi, mb)


def test_install_snapshot_behind_a_longer_log_survives_restart(data_dir: str) -> None:
    """A follower with a long uncommitted tail installs a snapshot at a lower index; the
    older segments go, and the newest one starts from a state the install replaces."""
    ref = MemoryStorage()
    with open_disk(data_dir) as disk:
        for i in range(1, 300):
            disk.append([entry(i, 1, b"z" * 60)])
            ref.append([entry(i, 1, b"z" * 60)])
        snap = Snapshot(SnapshotMeta(100, 1, ConfState(frozenset({1, 2}))), b"at 100")
        disk.save(None, [entry(101, 2)], snap)
        ref.apply_snapshot(snap)
        ref.append([entry(101, 2)])
        assert disk.disk_usage()["segments"] == 1
        assert_same(disk, ref)
    with open_disk(data_dir) as disk:
        assert_same(disk, ref)
        # The one segment left starts at 300 (before the install); compacting below that
        # must keep it, it holds live entries.
        for i in range(102, 200):
            disk.append([entry(i, 2, b"w" * 60)])
            ref.append([entry(i, 2, b"w" * 60)])
        cs = ConfState(frozenset({1}))
        assert disk.create_snapshot(110, cs, b"110") == ref.create_snapshot(110, cs, b"110")
        assert disk.disk_usage()["segments"] > 2
        disk.compact(105)
        ref.compact(105)
        assert_same(disk, ref)
    with open_disk(data_dir) as disk:
        assert_same(disk, ref)
