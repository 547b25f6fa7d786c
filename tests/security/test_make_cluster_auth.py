"""`make cluster AUTH=1` (tools/cluster.py start --auth) on a temporary directory and
free ports: the admin token and the peer secret are made (mode 600), the members start
with auth on (so with a peer secret: they would refuse otherwise), `status` and
`restart` work, coordctl works with the printed token and is refused without it, and
`endpoint health` needs no token."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import free_ports
from tests.integration.test_make_cluster import LocalCluster
from tests.security.tls_cluster import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "auth-local-cluster") as cluster:
        yield cluster


def test_make_cluster_auth_starts_with_a_token_and_a_peer_secret(local: LocalCluster) -> None:
    ports = free_ports(3)
    started = local.run("start", "--auth", "--ports", " ".join(map(str, ports)))
    assert started.returncode == 0, started.stdout + started.stderr
    for name in ("auth.toml", "root-token", "peer-secret"):
        mode = stat.S_IMODE((local.dir / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    token = (local.dir / "root-token").read_text().strip()
    assert f"export COORD_TOKEN=$(cat {local.dir / 'root-token'})" in started.stdout
    assert token not in started.stdout  # the token itself is not printed

    status = local.run("status")
    assert status.returncode == 0 and "no answer" not in status.stdout, status.stdout + status.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith("COORD_")}
    env["COORD_ENDPOINTS"] = ",".join(f"127.0.0.1:{p}" for p in ports)
    coordctl = str(ROOT / ".venv" / "bin" / "coordctl")

    def ctl(*argv: str, token_env: str | None = None) -> subprocess.CompletedProcess[str]:
        run_env = dict(env, COORD_TOKEN=token_env) if token_env else env
        return subprocess.run([coordctl, "--command-timeout", "5", *argv], env=run_env, capture_output=True, text=True, timeout=60)

    assert ctl("put", "made", "with auth", token_env=token).returncode == 0
    refused = ctl("get", "made")
    assert refused.returncode == 1 and "UNAUTHENTICATED" in (refused.stdout + refused.stderr).upper(), refused.stderr
    health = ctl("endpoint", "health")
    assert health.returncode == 0 and health.stdout.count("is healthy") == 3, health.stdout + health.stderr

    restarted = local.run("restart", "n2")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    mismatch = local.run("stop")
    assert mismatch.returncode == 0
    plain = local.run("start")
    assert plain.returncode == 1 and "with auth" in plain.stderr, plain.stdout + plain.stderr
