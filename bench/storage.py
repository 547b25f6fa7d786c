"""Storage benchmark: the WAL's append and fsync rates next to the disk's own floor, next to
SQLite, plus recovery time and bytes per entry.

    python -m bench storage [--dir DIR] [--runs N] [--seconds S] [--recovery-entries N]

What it measures, all in one run on the disk holding ``--dir`` (default: the current
directory; /tmp may be tmpfs, where fsync is free and the numbers mean nothing):

- bare: a loop of pwrite + fdatasync of the same bytes a WAL batch writes, into a
  preallocated file (what the WAL does) and into a growing file (append + fsync). This is
  the physical floor: no code can sync faster.
- wal: ``DiskStorage.save(hard_state, batch)`` with 100-byte entries at batch 1, 16, 64
  and 256 (one fdatasync per save).
- sqlite: the same batches as one transaction each into sqlite3 in WAL mode with
  synchronous=FULL (batch 1 and 64).
- recovery: opening a directory holding a 1,000,000-entry log, and its bytes per entry.

"cpu us/sync" is the CPU time (user + system, this thread) per save or sync: the part of
the cost that is Python and system calls rather than waiting for the disk. On a busy
machine (other processes competing for the cores) it is what inflates the wall-clock
figures, while the disk's own speed moves the floor.

The variants run in short interleaved slices (``--rounds`` of ``--slice`` seconds each) and
each figure is a median over the rounds; "vs floor" is the median of the round-by-round
ratio to the bare preallocated loop, so that drift in the disk's speed (large on shared
virtual disks) hits both sides of a comparison alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from typing import Any

from coord_server.raft.messages import Entry, HardState
from coord_server.storage import DiskStorage
from coord_server.storage.records import ENTRY_HEAD_SIZE, HEADER_SIZE

ENTRY_BYTES = 100
HS_RECORD = HEADER_SIZE + 24


def _wal_bytes_per_save(batch: int) -> int:
    return batch * (HEADER_SIZE + ENTRY_HEAD_SIZE + ENTRY_BYTES) + HS_RECORD


class Bare:
    """pwrite + sync of the bytes one WAL save writes: the physical floor. ``preallocate``:
    into a preallocated file with fdatasync, new file every 64 MiB (as the WAL does);
    otherwise appending to a growing file with fsync."""

    def __init__(self, path: str, batch: int, preallocate: bool) -> None:
        self.path = path
        self.chunk = os.urandom(_wal_bytes_per_save(batch))
        self.preallocate = preallocate
        self.size = 64 << 20
        self.fd = -1
        self._new_file()

    def _new_file(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        if self.preallocate:
            os.posix_fallocate(self.fd, 0, self.size)
        os.fsync(self.fd)
        self.off = 0

    def run(self, seconds: float) -> tuple[float, float]:
        sync = os.fdatasync if self.preallocate else os.fsync
        chunk, step, clock = self.chunk, len(self.chunk), time.perf_counter
        n = 0
        cpu = time.thread_time()
        start = clock()
        deadline = start + seconds
        while True:
            if self.off + step > self.size:
                self._new_file()
            os.pwrite(self.fd, chunk, self.off)
            sync(self.fd)
            self.off += step
            n += 1
            if clock() >= deadline:
                return n / (clock() - start), (time.thread_time() - cpu) / n

    def close(self) -> None:
        os.close(self.fd)
        os.unlink(self.path)


class Wal:
    """DiskStorage.save with ``batch`` 100-byte entries and a hard state per save. Only the
    time inside save() counts (building the Entry objects is the caller's cost)."""

    def __init__(self, path: str, batch: int) -> None:
        self.path = path
        self.batch = batch
        self.data = os.urandom(ENTRY_BYTES)
        self.st = DiskStorage(path, cluster_id=1)

    def run(self, seconds: float) -> tuple[float, float]:
        st, batch, data, clock, cpu_clock = self.st, self.batch, self.data, time.perf_counter, time.thread_time
        index = st.last_index() + 1
        n = 0
        busy = cpu = 0.0
        deadline = clock() + seconds
        while True:
            entries = [Entry(term=1, index=index + k, data=data) for k in range(batch)]
            index += batch
            hs = HardState(term=1, vote=1, commit=index - 1)
            c = cpu_clock()
            t = clock()
            st.save(hs, entries)
            busy += clock() - t
            cpu += cpu_clock() - c
            n += 1
            if t >= deadline:
                return n / busy, cpu / n

    def close(self) -> None:
        self.st.close()
        shutil.rmtree(self.path, ignore_errors=True)


class Sqlite:
    """One transaction per batch into sqlite3, WAL journal mode, synchronous=FULL."""

    def __init__(self, path: str, batch: int) -> None:
        self.path = path
        self.batch = batch
        self.data = os.urandom(ENTRY_BYTES)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE log (idx INTEGER PRIMARY KEY, term INTEGER, type INTEGER, data BLOB)")
        self.db.execute("CREATE TABLE hard_state (id INTEGER PRIMARY KEY, term INTEGER, vote INTEGER, commit_ INTEGER)")
        self.index = 1

    def run(self, seconds: float) -> tuple[float, float]:
        db, batch, data, clock, cpu_clock = self.db, self.batch, self.data, time.perf_counter, time.thread_time
        n = 0
        busy = cpu = 0.0
        deadline = clock() + seconds
        while True:
            rows = [(self.index + k, data) for k in range(batch)]
            self.index += batch
            c = cpu_clock()
            t = clock()
            db.execute("BEGIN")
            db.executemany("INSERT INTO log VALUES (?, 1, 0, ?)", rows)
            db.execute("INSERT OR REPLACE INTO hard_state VALUES (1, 1, 1, ?)", (self.index - 1,))
            db.execute("COMMIT")
            busy += clock() - t
            cpu += cpu_clock() - c
            n += 1
            if t >= deadline:
                return n / busy, cpu / n

    def close(self) -> None:
        self.db.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.unlink(self.path + suffix)


def build_log(path: str, entries: int) -> float:
    """Write an ``entries``-entry log (batches of 1000); returns seconds taken."""
    shutil.rmtree(path, ignore_errors=True)
    data = os.urandom(ENTRY_BYTES)
    start = time.perf_counter()
    with DiskStorage(path, cluster_id=1) as st:
        index = 1
        while index <= entries:
            n = min(1000, entries - index + 1)
            st.save(HardState(term=1, vote=1, commit=index - 1), [Entry(1, index + k, data=data) for k in range(n)])
            index += n
    return time.perf_counter() - start


def recover(path: str) -> tuple[float, int, int]:
    """Seconds to open the log at ``path``; its entries; record bytes on disk."""
    start = time.perf_counter()
    st = DiskStorage(path, cluster_id=1)
    took = time.perf_counter() - start
    count = st.last_index() - st.first_index() + 1
    usage = st.disk_usage()["wal_bytes"]
    st.close()
    return took, count, usage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench storage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=".", help="where to put the scratch files (the disk under test)")
    parser.add_argument("--rounds", type=int, default=25, help="interleaved rounds per batch size")
    parser.add_argument("--slice", type=float, default=0.1, help="seconds per variant per round")
    parser.add_argument("--runs", type=int, default=5, help="opens of the recovery log (median reported)")
    parser.add_argument("--batches", default="1,16,64,256", help="batch sizes for the WAL")
    parser.add_argument("--sqlite-batches", default="1,64", help="batch sizes for sqlite (empty: skip)")
    parser.add_argument("--recovery-entries", type=int, default=1_000_000, help="0 skips the recovery test")
    args = parser.parse_args(argv)

    scratch = tempfile.mkdtemp(prefix="coord-bench-storage-", dir=args.dir)
    try:
        _run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(args: argparse.Namespace, scratch: str) -> None:
    batches = [int(b) for b in args.batches.split(",") if b]
    sq_batches = [int(b) for b in args.sqlite_batches.split(",") if b]
    print(f"storage benchmark in {os.path.abspath(scratch)}: {ENTRY_BYTES}-byte entries, "
          f"{args.rounds} interleaved rounds of {args.slice:g} s per variant, medians; "
          f"python {sys.version.split()[0]}")
    print()
    print(f"{'batch':>5}  {'variant':<34} {'syncs/s':>8} {'entries/s':>10} {'vs floor':>8} {'cpu us/sync':>11}")
    floor_name = "bare pwrite+fdatasync (prealloc)"
    for b in sorted(set(batches) | set(sq_batches)):
        variants: dict[str, Any] = {
            floor_name: Bare(os.path.join(scratch, "bare-prealloc"), b, True),
            "bare append+fsync": Bare(os.path.join(scratch, "bare-append"), b, False),
        }
        if b in batches:
            variants["coord WAL save()"] = Wal(os.path.join(scratch, "wal"), b)
        if b in sq_batches:
            variants["sqlite WAL, synchronous=FULL"] = Sqlite(os.path.join(scratch, "db"), b)
        samples: dict[str, list[float]] = {k: [] for k in variants}
        cpus: dict[str, list[float]] = {k: [] for k in variants}
        try:
            for _ in range(args.rounds):
                for name, v in variants.items():
                    rate, cpu = v.run(args.slice)
                    samples[name].append(rate)
                    cpus[name].append(cpu)
        finally:
            for v in variants.values():
                v.close()
        floor = samples[floor_name]
        for name, rates in samples.items():
            # The ratio is taken round by round (the slices of a round are adjacent in
            # time), so a slow spell of the disk hits both sides of it.
            ratio = statistics.median(r / f for r, f in zip(rates, floor))
            rate = statistics.median(rates)
            cpu_us = statistics.median(cpus[name]) * 1e6
            print(f"{b:>5}  {name:<34} {rate:>8.0f} {rate * b:>10.0f} {ratio:>8.0%} {cpu_us:>11.1f}")
    if args.recovery_entries:
        n = args.recovery_entries
        path = os.path.join(scratch, "recovery")
        built = build_log(path, n)
        times = []
        for _ in range(args.runs):
            took, count, usage = recover(path)
            assert count == n, (count, n)
            times.append(took)
        wal_dir = os.path.join(path, "wal")
        allocated = sum(os.stat(os.path.join(wal_dir, f)).st_blocks * 512 for f in os.listdir(wal_dir))
        print()
        print(f"recovery of a {n:,}-entry log (written in {built:.1f} s, batches of 1000): "
              f"median {statistics.median(times):.2f} s of {args.runs} opens "
              f"(min {min(times):.2f}, max {max(times):.2f})")
        print(f"bytes on disk per entry: {usage / n:.1f} in records "
              f"({HEADER_SIZE} header + {ENTRY_HEAD_SIZE} term/index/type + {ENTRY_BYTES} data), "
              f"{allocated / n:.1f} allocated (the newest segment is preallocated)")


if __name__ == "__main__":
    main()
