"""`make cluster TLS=1` (tools/cluster.py start --tls) on a temporary directory and free
ports: certificates are made, the members serve TLS, `status` and `restart` work
against them without being told TLS again, and coordctl reaches them with the printed
environment."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import MAKE_CLUSTER_HTTP_OFFSET, MAKE_CLUSTER_PEER_OFFSET, ports_for_make_cluster
from tests.integration.test_make_cluster import LocalCluster
from tests.security.tls_cluster import ROOT

pytestmark = pytest.mark.timeout(180)

PEER_OFFSET = MAKE_CLUSTER_PEER_OFFSET




@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "tls-local-cluster") as cluster:
        yield cluster


def test_make_cluster_tls_starts_reports_and_restarts(local: LocalCluster) -> None:
    ports = ports_for_make_cluster()
    started = local.run("start", "--tls", "--ports", " ".join(map(str, ports)))
    assert started.returncode == 0, started.stdout + started.stderr
    certs = local.dir / "certs"
    assert {"ca.pem", "n1.pem", "n1-key.pem", "client.pem", "client-key.pem"} <= {p.name for p in certs.iterdir()}
    assert f"export COORD_CACERT={certs / 'ca.pem'}" in started.stdout

    status = local.run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = [line.split() for line in status.stdout.splitlines()[1:] if line.strip()]
    assert sorted(row[2] for row in rows) == ["follower", "follower", "leader"], status.stdout
    assert len({row[4] for row in rows}) == 1, status.stdout  # everyone names the same leader
    assert "no answer" not in status.stdout

    env = {k: v for k, v in os.environ.items() if not k.startswith("COORD_")}
    env.update(COORD_ENDPOINTS=",".join(f"127.0.0.1:{p}" for p in ports), COORD_CACERT=str(certs / "ca.pem"),
               COORD_CERT=str(certs / "client.pem"), COORD_KEY=str(certs / "client-key.pem"))
    coordctl = str(ROOT / ".venv" / "bin" / "coordctl")
    put = subprocess.run([coordctl, "put", "made", "with TLS"], env=env, capture_output=True, text=True, timeout=60)
    assert put.returncode == 0, put.stderr
    # Without the certificates the same members refuse (exit 3: unreachable in time).
    plain = {k: v for k, v in env.items() if k not in ("COORD_CACERT", "COORD_CERT", "COORD_KEY")}
    refused = subprocess.run([coordctl, "--command-timeout", "2", "get", "made"], env=plain, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 3, refused.stdout + refused.stderr

    restarted = local.run("restart", "n2")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    again = local.run("start")
    assert again.returncode == 0 and "already running" in again.stdout
    stopped = local.run("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    mixed = local.run("start")  # without --tls on a TLS cluster's data
    assert mixed.returncode == 1 and "with TLS" in mixed.stderr
    local.run("clean")
