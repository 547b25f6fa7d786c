"""Make a command that ``coordctl lock``/``elect``/``watch`` runs die with coordctl.

When coordctl is killed with SIGKILL it cannot stop the command it runs under a lock,
and the lock passes to another holder once its lease expires: two holders would work at
once. On Linux a process can ask the kernel (prctl PR_SET_PDEATHSIG) to be sent SIGKILL
when its parent dies, and the request survives exec. coordctl runs the command through a
small launcher, ``python -S -c LAUNCHER COMMAND...``, that makes that request and execs
the command, so the command itself carries it. (Doing it in a ``preexec_fn`` instead
would run Python between fork and exec in a process whose gRPC threads were left behind
by fork: that crashes.) What the command starts in turn is not covered; fencing tokens
protect the resource from those (docs/coordctl.md).

The launcher exits 127 when the command is not found and 126 when it cannot be run, as
a shell does.
"""

from __future__ import annotations

import sys

LAUNCHER = """\
import ctypes, ctypes.util, os, signal, sys
parent = int(sys.argv[1])
try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != parent:  # coordctl died before the request took effect
    sys.exit(1)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as err:
    print(f"coordctl: cannot run {sys.argv[2]!r}: {err}", file=sys.stderr)
    sys.exit(127 if isinstance(err, FileNotFoundError) else 126)
"""


def dying_with_parent(command: list[str], parent: int) -> list[str]:
    """``command`` run so that it gets SIGKILL when process ``parent`` (coordctl) dies;
    unchanged where the kernel offers no such thing (not Linux)."""
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-S", "-c", LAUNCHER, str(parent), *command]
