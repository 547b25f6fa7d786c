"""What a newcomer meets with no flags and no environment: a bare ``coord-server`` and a
bare ``coordctl`` find each other (issue 17, defect 0), and with nothing running coordctl
fails fast, naming the endpoints it tried and how to choose others (defect 8)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.conftest import ROOT, VENV_BIN, wait_for

pytestmark = pytest.mark.timeout(90)

COORDCTL = str(VENV_BIN / "coordctl")


def bare_env() -> dict[str, str]:
    """The environment of a user who set nothing for coord."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORD_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    return env


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def bare_server(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``coord-server`` with no arguments, in an empty directory."""
    if not port_free(7379):
        pytest.skip("127.0.0.1:7379 (the embedded default's address) is in use on this machine")
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([str(VENV_BIN / "coord-server")], cwd=tmp_path, env=bare_env(), stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


def test_bare_coordctl_meets_bare_coord_server(bare_server: subprocess.Popen[bytes], tmp_path: Path) -> None:
    env = bare_env()

    def put() -> bool:
        assert bare_server.poll() is None, (tmp_path / "server.log").read_text(errors="replace")
        return subprocess.run([COORDCTL, "put", "a", "b"], env=env, capture_output=True, timeout=30).returncode == 0

    wait_for(put, 45, "coordctl put a b (no flags) to reach the bare coord-server")
    got = subprocess.run([COORDCTL, "get", "a", "--print-value-only"], env=env, capture_output=True, text=True,
                         timeout=30)
    assert (got.returncode, got.stdout) == (0, "b\n"), got.stderr
    # Only the member that runs is reported: the other default endpoints are candidates.
    status = subprocess.run([COORDCTL, "status"], env=env, capture_output=True, text=True, timeout=30)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "7001" not in status.stdout and "127.0.0.1:7379" in status.stdout
    # The Python client's defaults meet it too.
    code = "from coord_client import Client\nwith Client() as c:\n    print(c.get('a').value.decode())\n"
    py = subprocess.run([str(VENV_BIN / "python"), "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert (py.returncode, py.stdout) == (0, "b\n"), py.stderr


def test_nothing_listening_fails_fast_and_says_what_to_do() -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    endpoints = ",".join(f"127.0.0.1:{p}" for p in ports)
    start = time.monotonic()
    proc = subprocess.run([COORDCTL, "--endpoints", endpoints, "get", "x"], env=bare_env(), capture_output=True,
                          text=True, timeout=30)
    took = time.monotonic() - start
    assert proc.returncode == 3, proc.stderr
    assert took < 6, f"coordctl took {took:.1f}s to give up on endpoints that refuse (the deadline is 10s)"
    assert endpoints in proc.stderr and "--endpoints" in proc.stderr and "COORD_ENDPOINTS" in proc.stderr
    assert "refused" in proc.stderr


def test_make_cluster_on_other_ports_says_to_export_coord_endpoints() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("cluster_tool", ROOT / "tools" / "cluster.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    sys.modules["cluster_tool"] = tool
    spec.loader.exec_module(tool)
    assert "export COORD_ENDPOINTS=127.0.0.1:8001,127.0.0.1:8002" in tool.first_command(
        ["127.0.0.1:8001", "127.0.0.1:8002"])
    assert "COORD_ENDPOINTS" not in tool.first_command(["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"])
