"""etcdctl 3.4, unmodified, through its daily commands: the same script and the same
assertions against coord and against real etcd 3.4."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.etcd.servers import Endpoint, client_env, require_etcdctl


class Ctl:
    def __init__(self, endpoint: Endpoint) -> None:
        self.binary = require_etcdctl()
        self.endpoint = endpoint

    def args(self, *args: str) -> list[str]:
        return [self.binary, "--endpoints", self.endpoint.grpc, "--command-timeout", "20s", *args]

    def run(self, *args: str, input: str | None = None, ok: bool = True) -> str:
        done = subprocess.run(self.args(*args), input=input, capture_output=True, text=True, timeout=60, env=client_env())
        if ok:
            assert done.returncode == 0, f"etcdctl {' '.join(args)} failed: {done.stderr}"
            return done.stdout
        assert done.returncode != 0, f"etcdctl {' '.join(args)} should have failed: {done.stdout}"
        return done.stderr

    def background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.args(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env())


@pytest.fixture(scope="module")
def ctl(endpoint: Endpoint) -> Ctl:
    return Ctl(endpoint)


def wait_for_output(proc: subprocess.Popen[str], lines: int, timeout: float = 20) -> list[str]:
    """The first ``lines`` lines ``proc`` prints (it is then killed)."""
    assert proc.stdout is not None
    out: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < lines and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line.rstrip("\n"))
    finally:
        proc.kill()
        proc.wait(10)
    return out


def test_put_get_delete_with_options(ctl: Ctl) -> None:
    assert ctl.run("put", "foo", "bar") == "OK\n"
    assert ctl.run("get", "foo") == "foo\nbar\n"
    assert ctl.run("put", "foo", "baz", "--prev-kv") == "OK\nfoo\nbar\n"
    assert ctl.run("get", "foo", "--print-value-only") == "baz\n"
    assert ctl.run("put", "foo2", "x") == "OK\n"
    assert ctl.run("get", "foo", "--prefix", "--keys-only").split() == ["foo", "foo2"]
    assert ctl.run("get", "foo", "--prefix", "--limit", "1") == "foo\nbaz\n"
    assert ctl.run("get", "foo", "--prefix", "--sort-by", "MODIFY", "--order", "DESCEND", "--keys-only").split() == [
        "foo2", "foo",
    ]
    assert ctl.run("get", "foo", "foo3", "--keys-only").split() == ["foo", "foo2"]  # a range [foo, foo3)
    limited = json.loads(ctl.run("get", "foo", "--prefix", "--limit", "1", "-w", "json"))
    assert limited["count"] == 2 and limited["more"] is True and len(limited["kvs"]) == 1
    assert limited["header"]["revision"] > 0
    assert ctl.run("del", "foo", "--prev-kv") == "1\nfoo\nbaz\n"
    assert ctl.run("del", "foo2") == "1\n"
    assert ctl.run("del", "foo2") == "0\n"
    assert ctl.run("get", "foo", "--prefix") == ""


def test_txn_both_branches(ctl: Ctl) -> None:
    script = 'create("txk") = "0"\n\nput txk 1\n\nget txk\n\n'
    assert ctl.run("txn", input=script) == "SUCCESS\n\nOK\n"
    assert ctl.run("txn", input=script) == "FAILURE\n\ntxk\n1\n"
    assert ctl.run("txn", input='value("txk") = "1"\n\nput txk 2\nput txk 3\n\n\n', ok=False).find(
        "duplicate key given in txn request"
    ) >= 0


def test_revisions_and_compaction(ctl: Ctl) -> None:
    ctl.run("put", "rk", "v1")
    rev1 = json.loads(ctl.run("get", "rk", "-w", "json"))["kvs"][0]["mod_revision"]
    ctl.run("put", "rk", "v2")
    assert ctl.run("get", "rk", f"--rev={rev1}", "--print-value-only") == "v1\n"
    current = json.loads(ctl.run("get", "rk", "-w", "json"))["header"]["revision"]
    assert ctl.run("compact", str(current)) == f"compacted revision {current}\n"
    assert "etcdserver: mvcc: required revision has been compacted" in ctl.run("get", "rk", f"--rev={rev1}", ok=False)
    assert "etcdserver: mvcc: required revision is a future revision" in ctl.run("get", "rk", f"--rev={current + 1000}", ok=False)


def test_watch_sees_puts_and_deletes(ctl: Ctl) -> None:
    watcher = ctl.background("watch", "wk", "--prefix")
    time.sleep(1.0)  # etcdctl prints nothing when the watch is created; give it time to start
    ctl.run("put", "wk1", "a")
    ctl.run("put", "wk2", "b")
    ctl.run("del", "wk1")
    assert wait_for_output(watcher, 9) == ["PUT", "wk1", "a", "PUT", "wk2", "b", "DELETE", "wk1", ""]


def test_watch_from_a_past_revision(ctl: Ctl) -> None:
    ctl.run("put", "hist", "h1")
    rev = json.loads(ctl.run("get", "hist", "-w", "json"))["kvs"][0]["mod_revision"]
    ctl.run("put", "hist", "h2")
    watcher = ctl.background("watch", "hist", f"--rev={rev}", "--prev-kv")
    assert wait_for_output(watcher, 8) == ["PUT", "hist", "h1", "PUT", "hist", "h1", "hist", "h2"]


def test_lease_lifecycle(ctl: Ctl) -> None:
    granted = ctl.run("lease", "grant", "60")
    match = re.fullmatch(r"lease ([0-9a-f]+) granted with TTL\(60s\)\n", granted)
    assert match, granted
    lease = match.group(1)
    assert ctl.run("put", "lk", "v", f"--lease={lease}") == "OK\n"
    ttl = ctl.run("lease", "timetolive", lease, "--keys")
    assert re.fullmatch(rf"lease {lease} granted with TTL\(60s\), remaining\((59|60)s\), attached keys\(\[lk\]\)\n", ttl), ttl
    assert lease in ctl.run("lease", "list")
    assert ctl.run("lease", "keep-alive", "--once", lease) == f"lease {lease} keepalived with TTL(60)\n"
    assert ctl.run("lease", "revoke", lease) == f"lease {lease} revoked\n"
    assert ctl.run("get", "lk") == ""
    assert ctl.run("lease", "timetolive", lease) == f"lease {lease} already expired\n"
    assert "etcdserver: requested lease not found" in ctl.run("lease", "revoke", lease, ok=False)
    assert "etcdserver: requested lease not found" in ctl.run("put", "lk", "v", "--lease=1234abcd", ok=False)


def test_lock_runs_a_command_while_held(ctl: Ctl) -> None:
    out = ctl.run("lock", "biglock", "echo", "held")
    assert out.strip().endswith("held")
    assert ctl.run("get", "biglock", "--prefix") == ""  # released: the lock key is gone


def test_lock_keys_are_ordinary_keys(ctl: Ctl) -> None:
    holder = ctl.background("lock", "vislock")
    key = wait_for_output(holder, 1)[0]  # killed once it printed: its lease then expires
    assert key.startswith("vislock/")


def test_elect_and_observe_the_leader(ctl: Ctl) -> None:
    campaigner = ctl.background("elect", "el", "p1")
    try:
        assert campaigner.stdout is not None
        first = campaigner.stdout.readline().strip()
        assert first.startswith("el/")
        observer = ctl.background("elect", "-l", "el")
        assert wait_for_output(observer, 2) == [first, "p1"]
        assert ctl.run("get", "el", "--prefix", "--print-value-only") == "p1\n"
    finally:
        campaigner.kill()
        campaigner.wait(10)


def test_cluster_and_endpoint_commands(ctl: Ctl, tmp_path: Path) -> None:
    members = ctl.run("member", "list").strip().splitlines()
    assert len(members) == 1 and ", started, " in members[0]
    health = subprocess.run(ctl.args("endpoint", "health"), capture_output=True, text=True, timeout=60, env=client_env())
    assert health.returncode == 0 and f"{ctl.endpoint.grpc} is healthy" in health.stdout + health.stderr
    status = json.loads(ctl.run("endpoint", "status", "-w", "json"))[0]["Status"]
    assert status["leader"] == status["header"]["member_id"]
    assert status["version"].startswith("3.")
    saved = ctl.run("snapshot", "save", str(tmp_path / "backup.db"))
    assert "Snapshot saved at" in saved
    assert (tmp_path / "backup.db").stat().st_size > 0
