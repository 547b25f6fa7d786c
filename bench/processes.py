"""Process management shared by the benchmark clusters (coord and etcd): waiting for a
leader, crashing, restarting and stopping members that a subclass starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free right now (held together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values; NaN for none."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class MemberProcesses(ABC):
    """Members started by ``start_member(name)`` into ``self.procs``; a subclass also
    provides ``leader()`` (the agreed leader's name, or None) and ``system``."""

    system = ""
    base_dir: Path
    procs: dict[str, subprocess.Popen[bytes]]

    @abstractmethod
    def start_member(self, name: str) -> None:
        """Start member ``name`` and record its process in ``self.procs``."""

    @abstractmethod
    def leader(self) -> str | None:
        """The name of the leader every live member agrees on, or None."""

    def wait_for_leader(self, timeout: float = 60) -> str:
        """The leader's name once the members agree; a member that exited on its own
        (not SIGKILLed by us) is an error."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None and proc.returncode != -signal.SIGKILL:
                    raise RuntimeError(
                        f"{self.system} {name} exited with {proc.returncode}; see {self.base_dir / (name + '.log')}"
                    )
            leader = self.leader()
            if leader is not None:
                return leader
            time.sleep(0.05)
        raise RuntimeError(f"{self.system}: no leader within {timeout}s; logs in {self.base_dir}")

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def restart(self, name: str, timeout: float = 60) -> None:
        if self.procs[name].poll() is None:
            self.kill(name)
        self.start_member(name)
        self.wait_for_leader(timeout)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
