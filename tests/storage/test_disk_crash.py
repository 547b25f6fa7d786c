"""Crash tests with real processes: a child appends and fsyncs, printing what ``save``
acknowledged; we SIGKILL it at random (seeded) moments, many times. After every restart
every acknowledged entry is there, intact, and the log is usable.

SIGKILL loses no page cache (the kernel still writes it back), so this tests what a
process crash can tear (a write stopped between pages, a rotation or snapshot half done),
not a power cut; the torn-write shapes of a power cut are covered in test_disk_recovery.py.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from coord_server.raft import EntryType
from coord_server.storage import DiskStorage

from .crash_child import CLUSTER, SEGMENT, payload, snapshot_data

CHILD = os.path.join(os.path.dirname(__file__), "crash_child.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KILLS = 30


def run_child(path: str, seed: int, rng: random.Random) -> tuple[int, int, str]:
    """Start the child, kill it at a random moment; returns (highest acked index, highest
    snapshot index, its stderr)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, CHILD, path, str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.0, 0.15))  # maybe while it is still recovering
        else:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line.startswith("ready"), (line, proc.stderr.read())  # type: ignore[union-attr]
            time.sleep(rng.uniform(0.0, 0.12))
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # only the process we started
        out, err = proc.communicate(timeout=30)
    acked = snap = 0
    for line in out.splitlines():
        kind, _, value = line.partition(" ")
        if kind == "ack":
            acked = max(acked, int(value))
        elif kind == "snap":
            snap = max(snap, int(value))
    assert proc.returncode == -signal.SIGKILL, err
    return acked, snap, err


def test_every_acknowledged_entry_survives_sigkill(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = os.path.join(tmp_path, "data")
    rng = random.Random(20240611)
    acked = snapshotted = 0
    for round_ in range(KILLS):
        got, snap, err = run_child(path, 1000 + round_, rng)
        assert "Traceback" not in err, err
        acked, snapshotted = max(acked, got), max(snapshotted, snap)
        with DiskStorage(path, CLUSTER, segment_size=SEGMENT) as st:
            assert st.last_index() >= acked, f"round {round_}: acked {acked}, recovered {st.last_index()}"
            hs, _ = st.initial_state()
            assert hs.commit >= acked
            first = st.first_index()
            assert first - 1 <= st.snapshot().meta.index  # compacted only what a snapshot covers
            assert st.snapshot().meta.index >= snapshotted
            if st.snapshot().meta.index:
                assert st.snapshot().data == snapshot_data(st.snapshot().meta.index)
            for e in st.entries(first, st.last_index() + 1):
                assert (e.term, e.type, e.data) == (1, EntryType.NORMAL, payload(e.index)), e.index
    assert acked > 100
