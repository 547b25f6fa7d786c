"""Starting child processes from a process that has gRPC channels open.

Two hazards: gRPC's fork handlers (pthread_atfork) run in a forked child and can restart
gRPC's poller there, which then aborts ("epoll_wait error: Bad file descriptor") before
the child gets to exec; and a ``preexec_fn`` forces CPython to fork (not vfork) and to
run Python code in the child. So the runner disables gRPC fork support (the environment
variable must be set before grpc is imported: ``tests/chaos/__main__.py`` does it), and
children are started without preexec_fn through a one-line launcher that asks Linux to
SIGKILL them when their parent dies (PR_SET_PDEATHSIG survives exec), then execs.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **kwargs)``, dying with this process, no preexec_fn."""
    import os

    return subprocess.Popen([sys.executable, "-c", LAUNCHER, str(os.getpid()), *argv], **kwargs)
