"""Names a member's threads for the operating system, so that ``top -H``,
``/proc/<pid>/task/*/comm`` and py-spy tell them apart (CPython 3.11 names a thread only
for Python; the kernel sees every thread as "python").

Why: a stall of the event loop is either the loop's own work, another thread of the
member holding the GIL (the WAL writer, the snapshot writer), or the machine giving the
process no CPU; which thread was on the CPU meanwhile tells them apart, and only a named
thread can be found (bench/thread_probe.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_PR_SET_NAME = 15
_libc: ctypes.CDLL | None = None


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` (at most 15 bytes kept) as its OS name; a no-op
    where the system has no prctl."""
    global _libc
    if not sys.platform.startswith("linux"):
        return
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass
