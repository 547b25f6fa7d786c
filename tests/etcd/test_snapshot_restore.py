"""A backup taken with ``etcdctl snapshot save`` from coord restores with ``coord-server
restore`` (etcd's own restore needs a bbolt file, which coord does not make:
docs/etcd.md): the restored member serves the saved keys to etcdctl."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.etcd.servers import Endpoint, client_env, require_etcdctl
from tests.integration.harness import free_ports


def etcdctl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_etcdctl(), "--endpoints", endpoint, "--command-timeout", "20s", *args],
        capture_output=True, text=True, timeout=60, env=client_env(),
    )


def test_etcdctl_snapshot_restores_with_coord_server_restore(coord: Endpoint, tmp_path: Path) -> None:
    assert etcdctl(coord.grpc, "put", "backed/up", "before the backup").returncode == 0
    backup = tmp_path / "backup.db"
    saved = etcdctl(coord.grpc, "snapshot", "save", str(backup))
    assert saved.returncode == 0, saved.stderr
    assert backup.stat().st_size % 512 == 32  # etcd's layout: 512-byte blocks, then a SHA-256
    assert etcdctl(coord.grpc, "put", "backed/up", "after the backup").returncode == 0

    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    data_dir = tmp_path / "r1"
    restored = subprocess.run(
        [sys.executable, "-m", "coord_server.cli", "restore", "--snapshot", str(backup), "--name", "r1",
         "--initial-cluster", f"r1={address}", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120,
    )
    assert restored.returncode == 0, restored.stderr
    with open(tmp_path / "r1.log", "wb") as log:
        member = subprocess.Popen(
            [sys.executable, "-m", "coord_server.cli", "--name", "r1", "--data-dir", str(data_dir), "--listen", address],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        got = None
        while time.monotonic() < deadline:
            assert member.poll() is None, (tmp_path / "r1.log").read_text()
            got = etcdctl(address, "get", "backed/up", "--print-value-only")
            if got.returncode == 0:
                break
            time.sleep(0.5)
        assert got is not None and got.returncode == 0 and got.stdout.strip() == "before the backup", got
    finally:
        member.kill()
        member.wait(10)
