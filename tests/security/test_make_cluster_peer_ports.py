"""`make cluster TLS=1 PEER_PORTS="..."` (tools/cluster.py start --tls --peer-ports): the
peer ports are the ones asked for, not the client ports + 100, and bad lists are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import free_ports
from tests.integration.test_make_cluster import LocalCluster

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "tls-peer-ports") as cluster:
        yield cluster


def test_peer_ports_are_settable(local: LocalCluster) -> None:
    ports = free_ports(6)
    client, peer = ports[:3], ports[3:]
    bad = local.run("start", "--tls", "--ports", " ".join(map(str, client)), "--peer-ports", str(peer[0]))
    assert bad.returncode == 1 and "one port per member" in bad.stderr
    plain = local.run("start", "--ports", " ".join(map(str, client)), "--peer-ports", " ".join(map(str, peer)))
    assert plain.returncode == 1 and "TLS=1" in plain.stderr
    started = local.run("start", "--tls", "--ports", " ".join(map(str, client)), "--peer-ports",
                        " ".join(map(str, peer)))
    assert started.returncode == 0, started.stdout + started.stderr
    recorded = json.loads((local.dir / "cluster.json").read_text())
    assert [m["peer_address"] for m in recorded["members"]] == [f"127.0.0.1:{p}" for p in peer]
    status = local.run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    local.run("stop")
