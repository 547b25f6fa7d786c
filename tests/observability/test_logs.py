"""Structured logs (--log-format json) of real coord-server processes, and the flags'
validation: every line is one JSON object carrying the member's name and, once the
node runs, its Raft term; a failed call logs its request id."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from coord.v1 import kv_pb2
from tests.integration.harness import Cluster, free_ports, wait_until

HARNESS_PREFIX = "---- harness:"


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line the server wrote, parsed; the harness's own marker lines skipped. A line
    that is not one JSON object fails the test."""
    lines = []
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if not text or text.startswith(HARNESS_PREFIX):
            continue
        try:
            line = json.loads(text)
        except ValueError:
            pytest.fail(f"{path.name}:{number} is not JSON: {text!r}")
        assert isinstance(line, dict), text
        lines.append(line)
    return lines


@pytest.mark.slow
def test_json_lines_carry_node_term_and_request_id(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(options=("--log-format", "json"), log_level="debug")
    leader = cluster.wait_for_leader()
    name = next(n for n in cluster.nodes if n != leader)
    metadata = (("coord-client-id", "obs-test-client"), ("coord-seq", "42"))
    with pytest.raises(grpc.RpcError) as caught:
        cluster.kv(name).Put(kv_pb2.PutRequest(key=b"", value=b"v"), metadata=metadata, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    term = cluster.status(name).header.raft_term

    def request_line() -> dict[str, Any] | None:
        return next((line for line in json_lines(cluster.nodes[name].log_path) if line.get("request_id")), None)

    line = wait_until(request_line, 30, "a log line with the request id")
    assert line["request_id"] == "obs-test-client/42"
    assert line["method"] == "/coord.v1.KV/Put"
    assert line["node"] == name and line["term"] == term
    assert line["level"] == "debug" and "INVALID_ARGUMENT" in line["message"]
    for member in cluster.nodes.values():
        lines = json_lines(member.log_path)
        assert len(lines) >= 2, member.name
        for entry in lines:
            assert {"time", "level", "logger", "message", "node"} <= set(entry), entry
            assert entry["node"] == member.name
            assert entry["time"].endswith("Z") and "T" in entry["time"]
        assert any(entry.get("term", 0) >= 1 for entry in lines), member.name
        assert any(entry["message"].startswith("serving on") for entry in lines), member.name


def test_text_stays_the_default(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(size=1)
    text = cluster.nodes["n1"].log_path.read_text()
    assert "coord-server: serving on" in text
    assert not any(line.startswith("{") for line in text.splitlines())


def run_server(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coord_server.cli", "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--log-format", "xml"], "log_format must be text or json, got 'xml'"),
        (["--metrics-listen", "9100"], "metrics_listen must be host:port, got '9100'"),
    ],
)
def test_bad_flags_are_refused_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_server(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_metrics_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (listen,) = free_ports(1)
        result = run_server(tmp_path, "--listen", f"127.0.0.1:{listen}", "--metrics-listen", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
