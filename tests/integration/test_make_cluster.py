"""tools/cluster.py, the program behind `make cluster` and its friends, on a temporary
directory and free ports (so a developer's own `make cluster` is never touched)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import free_ports, wait_until

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "cluster.py"


def _cmdline(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


class LocalCluster:
    """Runs tools/cluster.py on one directory and remembers every pid it recorded."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.pids: set[int] = set()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_leftovers()

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, str(TOOL), "--dir", str(self.dir), *args],
            capture_output=True, text=True, timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL,
        )
        self.remember()
        return result

    def remember(self) -> None:
        for pid_file in self.dir.glob("*.pid"):
            try:
                self.pids.add(int(pid_file.read_text()))
            except (OSError, ValueError):
                pass

    def pid(self, name: str) -> int:
        return int((self.dir / f"{name}.pid").read_text())

    def kill_leftovers(self) -> None:
        """SIGKILL, by pid, members still running; only our own: their command line names
        a data directory inside this test's directory."""
        self.remember()
        for pid in self.pids:
            if _alive(pid) and any(str(self.dir).encode() in arg for arg in _cmdline(pid)):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "local-cluster") as cluster:
        yield cluster


def table(output: str) -> dict[str, dict[str, str]]:
    """The rows of the status table, by member name."""
    lines = [line for line in output.splitlines() if line.strip()]
    head = next(i for i, line in enumerate(lines) if line.startswith("NAME"))
    columns = lines[head].lower().split()
    rows = {}
    for line in lines[head + 1:]:
        if not re.match(r"n\d+\s", line):
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = dict(zip(columns, cells))
    return rows


def test_start_status_kill_restart_stop(local: LocalCluster) -> None:
    ports = free_ports(3)
    endpoints = [f"127.0.0.1:{p}" for p in ports]

    started = local.run("start", "--ports", " ".join(map(str, ports)))
    assert started.returncode == 0, started.stdout + started.stderr
    assert ",".join(endpoints) in started.stdout
    assert "leader:" in started.stdout
    for name in ("n1", "n2", "n3"):
        assert (local.dir / name).is_dir() and (local.dir / f"{name}.log").exists()
        assert _alive(local.pid(name))

    status = local.run("status")
    assert status.returncode == 0, status.stderr
    rows = table(status.stdout)
    assert sorted(rows) == ["n1", "n2", "n3"]
    assert [r["endpoint"] for r in rows.values()] == endpoints
    leaders = [n for n, r in rows.items() if r["role"] == "leader"]
    assert len(leaders) == 1 and {r["leader"] for r in rows.values()} == set(leaders)

    # A second start leaves the running cluster alone, says so, and succeeds.
    pids = {n: local.pid(n) for n in rows}
    again = local.run("start", "--ports", " ".join(map(str, ports)))
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert {n: local.pid(n) for n in rows} == pids

    # Crash a follower: it shows as down and the others keep a leader.
    victim = next(n for n in rows if n not in leaders)
    killed = local.run("kill", victim)
    assert killed.returncode == 0, killed.stderr
    assert not _alive(pids[victim])
    rows = table(local.run("status").stdout)
    assert rows[victim]["role"] == "down"

    restarted = local.run("restart", victim)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    new_pid = local.pid(victim)
    assert new_pid != pids[victim] and _alive(new_pid)

    def all_following() -> dict[str, dict[str, str]] | None:
        rows = table(local.run("status").stdout)
        leaders = {r["leader"] for r in rows.values()}
        return rows if len(leaders) == 1 and "none" not in leaders and "-" not in leaders else None

    wait_until(all_following, 60, "every member to name one leader after the restart", interval=0.5)

    logs = local.run("logs", "--lines", "5")
    assert logs.returncode == 0 and all(f"{n}.log" in logs.stdout for n in ("n1", "n2", "n3"))

    stopped = local.run("stop")
    assert stopped.returncode == 0, stopped.stderr
    for pid in (*pids.values(), new_pid):
        assert not _alive(pid)
    assert not list(local.dir.glob("*.pid"))
    assert local.run("status").returncode == 1

    # Starting again brings the same cluster back, data included.
    back = local.run("start")
    assert back.returncode == 0, back.stdout + back.stderr
    assert "again" in back.stdout and ",".join(endpoints) in back.stdout

    cleaned = local.run("clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert not local.dir.exists()


def test_refuses_busy_ports_and_unknown_members(local: LocalCluster) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        others = free_ports(2)
        result = local.run("start", "--ports", f"{port} {others[0]} {others[1]}")
        assert result.returncode == 1
        assert f"port {port}" in result.stderr and "in use" in result.stderr
    assert local.run("kill", "n9").returncode == 1
    assert "NODE=" in local.run("kill").stderr
