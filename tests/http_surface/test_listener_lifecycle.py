"""A member with open HTTP streams still stops promptly on SIGTERM, and a client that
disconnects from a stream ends the gRPC call behind it."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import Request, urlopen

from tests.integration.harness import free_ports, wait_until


def _observe_request(url: str) -> Request:
    body = json.dumps({"name": "lifecycle"}).encode()
    return Request(url + "/coord.v1.Election/Observe", data=struct.pack(">BI", 0, len(body)) + body,
                   headers={"Content-Type": "application/connect+json"}, method="POST")


def test_a_member_with_open_streams_stops_promptly(tmp_path: Path) -> None:
    grpc_port, http_port = free_ports(2)
    url = f"http://127.0.0.1:{http_port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "coord_server.cli", "--name", "solo", "--data-dir", str(tmp_path / "solo"),
         "--listen", f"127.0.0.1:{grpc_port}", "--http-listen", f"127.0.0.1:{http_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        def status() -> bool:
            with urlopen(Request(url + "/coord.v1.Cluster/Status", data=b"{}",
                                 headers={"Content-Type": "application/json"}), timeout=2) as r:
                return r.status == 200 and b"RAFT_ROLE_LEADER" in r.read()

        wait_until(status, 30, "the member to lead")
        # One stream dropped by its client, one left open.
        dropped = urlopen(_observe_request(url), timeout=5)
        dropped.read(5)
        dropped.close()
        kept = urlopen(_observe_request(url), timeout=5)
        kept.read(5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        stopped = time.monotonic() - started
        print(f"stopped {stopped:.2f} s after SIGTERM with a stream open")
        assert stopped < 10
        kept.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
