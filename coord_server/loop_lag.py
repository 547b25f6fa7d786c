"""How long the member's event loop was unable to run anything.

Why: everything a member does (heartbeats, vote replies, applying, answering clients)
runs on one asyncio loop. Whatever holds the loop longer than the election timeout
(300-600 ms) makes the followers elect another leader even though nothing failed. A
timer that should fire every ``interval`` seconds and fires late measures exactly that
holding: the lateness of each wake-up is one sample.

Rule 1: one sample per wake-up, into a histogram and the running maximum; a stall
        longer than ``log_above`` is logged at WARNING with its length, so a spurious
        election can be matched to what paused the loop (py-spy names the code).
Rule 2: the measurement costs one timer per ``interval`` and nothing per request.
Rule 3: the log line says how much of the stall the loop's thread spent on the CPU: most
        of it, and the loop was busy with something (py-spy shows what); little of it,
        and the process was waiting for a CPU (an overloaded machine) or for the GIL
        held by another of its threads. The thread's context switches during the stall
        tell those apart: involuntary ones (preempted: no CPU free) or voluntary ones
        (it waited: for the GIL, the disk, a lock).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable

log = logging.getLogger("coord.loop")
RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)

INTERVAL = 0.01
"""Seconds between wake-ups: a stall shorter than this is not seen, which is fine, as
the ones that matter are 10-100 times longer."""
LOG_ABOVE = 0.1
"""A stall this long (seconds) is logged: a third of the shortest election timeout."""


class LoopLag:
    """Measures the loop it is started on. ``longest`` is the longest stall seen (seconds);
    ``on_sample`` receives every sample (metrics.py's histogram)."""

    def __init__(self, interval: float = INTERVAL, log_above: float = LOG_ABOVE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.log_above = log_above
        self.clock = clock
        self.longest = 0.0
        self.stalls = 0
        """Stalls longer than ``log_above``."""
        self.on_sample: Callable[[float], None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        clock, interval = self.clock, self.interval
        while True:
            due = clock() + interval
            before = _thread_usage()
            await asyncio.sleep(interval)
            lag = max(0.0, clock() - due)
            if lag >= self.log_above:
                after = _thread_usage()
                self.record(lag, after[0] - before[0], (after[1] - before[1], after[2] - before[2]))
            else:
                self.record(lag)

    def record(self, lag: float, cpu: float | None = None, switches: tuple[int, int] | None = None) -> None:
        """One sample (Rule 1); ``cpu``: the loop thread's CPU time meanwhile and
        ``switches`` its (voluntary, involuntary) context switches (Rule 3)."""
        if lag > self.longest:
            self.longest = lag
        if self.on_sample is not None:
            self.on_sample(lag)
        if lag >= self.log_above:
            self.stalls += 1
            if cpu is None:
                log.warning("event loop stalled for %.0f ms", lag * 1000)
            else:
                voluntary, involuntary = switches or (0, 0)
                log.warning(
                    "event loop stalled for %.0f ms (%.0f ms of it on the CPU; %d waits, %d preemptions)",
                    lag * 1000, cpu * 1000, voluntary, involuntary,
                )


def _thread_usage() -> tuple[float, int, int]:
    """The calling thread's (CPU seconds, voluntary, involuntary context switches)."""
    try:
        usage = resource.getrusage(RUSAGE_THREAD)
    except (OSError, ValueError):
        return time.thread_time(), 0, 0
    return usage.ru_utime + usage.ru_stime, usage.ru_nvcsw, usage.ru_nivcsw
