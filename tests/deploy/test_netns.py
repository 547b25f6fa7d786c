"""Three coord-server processes in three network namespaces of their own, joined by veth
pairs to a bridge in a fourth namespace (the switch), addressed 10.77.0.1-3: the cluster
elects a leader and serves a client running in one of the namespaces; after the link of
one member is cut at the switch, the other two keep serving.

Needs root and a working ``ip netns`` (skipped otherwise, saying which). Everything it
creates lives in its own namespaces, named uniquely per run, and is deleted in a
``finally`` (deleting a namespace removes its veth ends and the bridge); the servers are
killed by pid. Bounded: about 60 s at worst on a busy machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

SUBNET = "10.77.0"
PORT = 7379
CLIENT = Path(__file__).with_name("netns_client.py")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


def _netns_unavailable() -> str:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"coord-probe-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return f"`ip netns add` does not work here: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return ""


class Topology:
    """The namespaces of one run: ``switch`` holds bridge br0; member i lives in
    ``nodes[i]`` with eth0 = SUBNET.(i+1), wired to port p<i+1> of the bridge."""

    def __init__(self, tag: str, size: int) -> None:
        self.switch = f"coord-{tag}-sw"
        self.nodes = [f"coord-{tag}-n{i + 1}" for i in range(size)]
        self.created: list[str] = []

    def build(self) -> None:
        for ns in (self.switch, *self.nodes):
            _ip("netns", "add", ns)
            self.created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for i, ns in enumerate(self.nodes, 1):
            _ip("-n", self.switch, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.switch, "link", "set", f"p{i}", "master", "br0")
            _ip("-n", self.switch, "link", "set", f"p{i}", "up")
            _ip("-n", ns, "addr", "add", f"{SUBNET}.{i}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def cut(self, member: int) -> None:
        """Unplug member ``member`` (1-based) at the switch."""
        _ip("-n", self.switch, "link", "set", f"p{member}", "down")

    def destroy(self) -> list[str]:
        problems = []
        for ns in reversed(self.created):
            done = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                problems.append(f"{ns}: {done.stderr.strip()}")
        return problems


def _client(ns: str, endpoints: list[str], key: str, value: str, limit: float) -> dict[str, object]:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, str(CLIENT), ",".join(endpoints), key, value, str(limit)],
        capture_output=True, text=True, timeout=limit + 60, cwd=ROOT,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"the client in {ns} printed nothing (exit {done.returncode}): {done.stderr[-2000:]}"
    result: dict[str, object] = json.loads(lines[-1])
    return result


def test_cluster_across_network_namespaces(tmp_path: Path) -> None:
    reason = _netns_unavailable()
    if reason:
        pytest.skip(f"network namespace test not run: {reason}")
    topo = Topology(uuid.uuid4().hex[:6], 3)
    addresses = [f"{SUBNET}.{i}:{PORT}" for i in range(1, 4)]
    initial = ",".join(f"n{i}={a}" for i, a in enumerate(addresses, 1))
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        topo.build()
        for i, (ns, address) in enumerate(zip(topo.nodes, addresses), 1):
            log = open(tmp_path / f"n{i}.log", "wb")  # noqa: SIM115 - closed in finally
            logs.append(log)
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "coord_server.cli", "--name", f"n{i}",
                 "--listen", address, "--initial-cluster", initial, "--data-dir", str(tmp_path / f"n{i}")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
            ))
        first = _client(topo.nodes[0], addresses, "netns/before", "elected", limit=30)
        assert first.get("value") == "elected", f"{first}; logs:\n{_tails(tmp_path)}"
        leader = str(first["leader"])
        assert leader in ("n1", "n2", "n3")

        # Cut the leader's link, unless the leader is n1 (the client's own namespace):
        # then cut n3 and n1 keeps leading.
        victim = int(leader[1:]) if leader != "n1" else 3
        cut_at = time.monotonic()
        topo.cut(victim)
        rest = [a for i, a in enumerate(addresses, 1) if i != victim]
        after = _client(topo.nodes[0], rest, "netns/after", "still serving", limit=30)
        assert after.get("value") == "still serving", f"{after}; logs:\n{_tails(tmp_path)}"
        assert after["leader"] != f"n{victim}"
        print(f"netns: first write {first['took']}s into the client (leader {leader}); n{victim} cut; write and "
              f"read served {time.monotonic() - cut_at:.2f}s after the cut, client start included "
              f"(leader {after['leader']})")
        for proc in procs:
            assert proc.poll() is None, f"a member exited: logs:\n{_tails(tmp_path)}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for log in logs:
            log.close()
        problems = topo.destroy()
    assert not problems, f"could not delete namespaces: {problems}"


def _tails(directory: Path, lines: int = 15) -> str:
    out = []
    for log in sorted(directory.glob("n*.log")):
        out.append(f"== {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
    return "\n".join(out)
