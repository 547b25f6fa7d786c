"""Which thread had the CPU while a member's event loop stalled.

A member logs every stall of its event loop over 100 ms (coord_server/loop_lag.py). A
stall has three possible causes, and this probe tells them apart from the outside:

- **the loop was busy**: the loop's thread (the main thread, tid = pid) was on the CPU
  for most of the stall (py-spy then names the code);
- **another thread of the member held the GIL**: the loop's thread was off the CPU while
  another of the member's threads ran (threads are named for the OS,
  coord_server/thread_names.py: coord-wal, coord-snap, gRPC's own);
- **starved by the OS**: no thread of the member ran much, while the machine's cores
  were busy with other processes (the load generator, other jobs).

``ThreadProbe`` samples ``/proc/<pid>/task/*/stat`` of every member and ``/proc/stat``
every ``interval`` seconds in a thread; ``classify`` takes the stalls parsed from the
members' logs (``stalls_in_log``) and gives each its CPU breakdown and a verdict.
"""

from __future__ import annotations

import bisect
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
_STALL = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) WARNING \[[^\]]*\] coord\.loop: event loop stalled for (\d+) ms"
)


@dataclass
class Stall:
    member: str
    end: float
    """Wall-clock time the stall ended (time.time())."""
    seconds: float
    loop_cpu: float = 0.0
    other_threads: dict[str, float] = field(default_factory=dict)
    """CPU seconds of the member's other threads during the stall, by thread name."""
    machine_busy: float = 0.0
    """Fraction of all cores busy during the stall (every process)."""
    verdict: str = ""


def stalls_in_log(member: str, path: Path) -> list[Stall]:
    """The loop stalls a member's log reports (text log format)."""
    out = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        m = _STALL.match(line)
        if m:
            end = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append(Stall(member, end, int(m.group(2)) / 1000))
    return out


def _thread_times(pid: int) -> dict[int, tuple[str, int]]:
    """tid -> (name, utime + stime in clock ticks) of every thread of ``pid``."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2 :].split()
        out[int(tid)] = (name, int(rest[11]) + int(rest[12]))
    return out


def _machine_busy() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class ThreadProbe:
    """Samples the threads of ``pids`` (member name -> pid) until ``stop``."""

    def __init__(self, pids: dict[str, int], interval: float = 0.02) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.times: list[float] = []
        self.machine: list[tuple[int, int]] = []
        self.threads: dict[str, list[dict[int, tuple[str, int]]]] = {m: [] for m in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thread-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.times.append(time.time())
            self.machine.append(_machine_busy())
            for member, pid in self.pids.items():
                self.threads[member].append(_thread_times(pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def classify(self, stalls: list[Stall]) -> list[Stall]:
        """Fill in each stall's CPU breakdown and verdict (module docstring)."""
        for stall in stalls:
            if stall.member not in self.pids:
                continue
            i = max(0, bisect.bisect_left(self.times, stall.end - stall.seconds) - 1)
            j = min(len(self.times) - 1, bisect.bisect_left(self.times, stall.end))
            if j <= i:
                continue
            window = self.times[j] - self.times[i]
            pid = self.pids[stall.member]
            before, after = self.threads[stall.member][i], self.threads[stall.member][j]
            cpu: dict[str, float] = {}
            for tid, (name, ticks) in after.items():
                used = (ticks - before.get(tid, (name, 0))[1]) / TICK  # a thread new since: all of it
                if tid == pid:
                    stall.loop_cpu = used
                elif used > 0:
                    label = f"{name}/{tid}"
                    cpu[label] = cpu.get(label, 0.0) + used
            stall.other_threads = dict(sorted(cpu.items(), key=lambda kv: -kv[1]))
            (b0, t0), (b1, t1) = self.machine[i], self.machine[j]
            stall.machine_busy = (b1 - b0) / max(1, t1 - t0)
            stall.verdict = _verdict(stall, window)
        return stalls


def _verdict(stall: Stall, window: float) -> str:
    if stall.loop_cpu >= 0.5 * stall.seconds:
        return "loop busy"
    top = max(stall.other_threads.values(), default=0.0)
    if top >= 0.4 * stall.seconds:
        name = max(stall.other_threads, key=lambda k: stall.other_threads[k]).split("/")[0]
        return f"GIL: {name}"
    if stall.machine_busy >= 0.85:
        return "starved (machine busy)"
    return "unexplained"


def summary(stalls: list[Stall]) -> str:
    """One line: how many stalls, the longest, and how many of each verdict."""
    if not stalls:
        return "none"
    verdicts: dict[str, int] = {}
    for s in stalls:
        verdicts[s.verdict or "unsampled"] = verdicts.get(s.verdict or "unsampled", 0) + 1
    longest = max(s.seconds for s in stalls)
    parts = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items(), key=lambda kv: -kv[1]))
    return f"{len(stalls)} (longest {longest * 1000:.0f} ms): {parts}"


def details(stalls: list[Stall], limit: int = 15) -> str:
    """The longest stalls, one per line, with their CPU breakdown."""
    lines = []
    for s in sorted(stalls, key=lambda s: -s.seconds)[:limit]:
        others = ", ".join(f"{k} {v * 1000:.0f}" for k, v in list(s.other_threads.items())[:3])
        lines.append(
            f"  {s.member} {time.strftime('%H:%M:%S', time.localtime(s.end))} {s.seconds * 1000:.0f} ms: "
            f"loop {s.loop_cpu * 1000:.0f} ms CPU; other threads ms: {others or '-'}; "
            f"machine {s.machine_busy * 100:.0f}% busy -> {s.verdict}"
        )
    return "\n".join(lines)
