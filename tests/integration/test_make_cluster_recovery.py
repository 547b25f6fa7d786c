"""After a crash of every member, `make cluster-restart NODE=n1` starts n1 and says it
waits for a quorum (it cannot find a leader alone) instead of failing after its timeout;
restarting a second member brings the leader back (issue 17, defect 11)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import free_ports
from tests.integration.test_make_cluster import LocalCluster

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "recovery") as cluster:
        yield cluster


def test_restart_after_every_member_crashed(local: LocalCluster) -> None:
    started = local.run("start", "--ports", " ".join(map(str, free_ports(3))))
    assert started.returncode == 0, started.stdout + started.stderr
    for name in ("n1", "n2", "n3"):
        assert local.run("kill", name).returncode == 0
    begin = time.monotonic()
    first = local.run("restart", "n1", "--timeout", "20")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "waiting for quorum (1 of 3 members up" in first.stdout
    assert "make cluster-restart NODE=n2" in first.stdout
    assert time.monotonic() - begin < 15, "it must not wait out its timeout for a leader that cannot exist"
    second = local.run("restart", "n2", "--timeout", "60")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "waiting for quorum" not in second.stdout
    local.run("stop")
