"""Make a command that ``coordctl lock``/``elect`` runs die with coordctl.

When coordctl is killed with SIGKILL it cannot stop the command it runs under a lock,
and the lock passes to another holder once its lease expires: two holders would work at
once. On Linux the child asks the kernel (prctl PR_SET_PDEATHSIG) to be sent SIGKILL when
its parent dies. That covers the command itself, not what it starts in turn; fencing
tokens are what protect the resource from those (docs/coordctl.md).

The hook runs in the child between fork and exec: it calls one libc function loaded
beforehand and allocates nothing, so the threads gRPC runs in the parent cannot leave it
waiting on a lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies, or None
    where the kernel offers no such thing (not Linux, no libc found)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        prctl = ctypes.CDLL(name, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    sig = int(signal.SIGKILL)

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl took effect
            os._exit(1)

    return hook
