"""bench/thread_probe.py: each logged loop stall gets the verdict its CPU samples support."""

from __future__ import annotations

import os
from pathlib import Path

from bench.thread_probe import TICK, Stall, ThreadProbe, stalls_in_log, summary

PID = 1000


def probe_with(samples: list[tuple[float, tuple[int, int], dict[int, tuple[str, int]]]]) -> ThreadProbe:
    probe = ThreadProbe({}, interval=3600)
    probe.stop()
    probe.pids = {"n1": PID}
    probe.times = [t for t, _, _ in samples]
    probe.machine = [m for _, m, _ in samples]
    probe.threads = {"n1": [threads for _, _, threads in samples]}
    return probe


def test_the_three_verdicts() -> None:
    t = TICK  # one second of CPU, in clock ticks
    busy, idle = (0, 0), (0, 0)
    cases = {
        # loop thread ran 0.9 s of the 1 s stall
        "loop busy": [(100.0, busy, {PID: ("python", 0), 7: ("coord-wal", 0)}),
                      (101.0, (2 * t, 2 * t), {PID: ("python", int(0.9 * t)), 7: ("coord-wal", 0)})],
        # the WAL thread ran, the loop did not
        "GIL: coord-wal": [(100.0, busy, {PID: ("python", 0), 7: ("coord-wal", 0)}),
                           (101.0, (2 * t, 2 * t), {PID: ("python", 0), 7: ("coord-wal", int(0.8 * t))})],
        # nothing of the member ran; the machine's cores were busy
        "starved (machine busy)": [(100.0, idle, {PID: ("python", 0)}),
                                   (101.0, (2 * t, 2 * t), {PID: ("python", 0)})],
        # nothing ran and the machine idled: not explained by CPU
        "unexplained": [(100.0, idle, {PID: ("python", 0)}), (101.0, (0, 2 * t), {PID: ("python", 0)})],
    }
    for verdict, samples in cases.items():
        stall = probe_with(samples).classify([Stall("n1", end=101.0, seconds=1.0)])[0]
        assert stall.verdict == verdict, (verdict, stall)
    assert summary([Stall("n1", 1.0, 0.3, verdict="loop busy")]) == "1 (longest 300 ms): 1 loop busy"


def test_stalls_are_read_from_a_members_text_log(tmp_path: Path) -> None:
    log = tmp_path / "n1.log"
    log.write_text(
        "2026-12-08 01:02:03,456 WARNING [n1] coord.loop: event loop stalled for 350 ms "
        "(3 ms of it on the CPU; 0 waits, 2 preemptions)\n"
        "2026-12-08 01:02:04,000 INFO [n1] coord.node: leader is now n2\n"
    )
    (stall,) = stalls_in_log("n1", log)
    assert stall.seconds == 0.35 and stall.member == "n1"
    assert stalls_in_log("n1", tmp_path / "missing.log") == []
    assert os.sysconf("SC_CLK_TCK") == TICK
