"""etcdctl and python-etcd3 keep working, with their own retry logic, while the coord
leader is killed (a 3-member coord cluster, real processes)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.etcd.servers import client_env, require_etcdctl, start_coord

CLIENTS = Path(__file__).parent / "clients"


def test_clients_survive_the_leader_being_killed(tmp_path: Path) -> None:
    etcdctl = require_etcdctl()
    if importlib.util.find_spec("etcd3") is None:
        pytest.skip("SKIPPED LOUDLY: etcd3 is not installed (pip install -e '.[etcd-tests]'); the failover test did not run")
    coord = start_coord(tmp_path, size=3)
    try:
        cluster = coord.cluster
        assert cluster is not None
        leader = cluster.wait_for_leader()
        follower = next(n for n in cluster.nodes if n != leader)
        endpoints = ",".join(node.address for node in cluster.nodes.values())
        writer = subprocess.Popen(
            [sys.executable, str(CLIENTS / "etcd3_failover.py"), cluster.nodes[follower].address, "200"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env(),
        )
        assert writer.stdout is not None
        while not writer.stdout.readline().startswith("wrote 20"):
            assert writer.poll() is None, writer.stderr.read() if writer.stderr else ""
        cluster.kill(leader)
        killed_at = time.monotonic()

        def ctl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [etcdctl, "--endpoints", endpoints, "--command-timeout", "5s", *args],
                capture_output=True, text=True, timeout=30, env=client_env(),
            )

        # etcdctl, retried by the caller until the cluster has a leader again...
        while ctl("put", "after-kill", "1").returncode != 0:
            assert time.monotonic() - killed_at < 20, "etcdctl could not write within 20 s of the leader's death"
            time.sleep(0.2)
        # ...then works on every call, whichever endpoint its balancer picks.
        for i in range(10):
            done = ctl("put", f"steady{i}", str(i))
            assert done.returncode == 0, done.stderr
        assert ctl("get", "steady9", "--print-value-only").stdout == "9\n"
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0 and out.strip().endswith("ALL OK"), f"{out[-2000:]}\n{err[-3000:]}"
    finally:
        coord.stop()
