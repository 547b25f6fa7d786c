"""coordctl against the shared cluster. ``lock``/``elect`` with commands, signals and exit
statuses run the installed console script in a subprocess with COORD_ENDPOINTS set (as a
user runs it); output formats are checked in process through ``cli.main`` (each
subprocess costs about a second of interpreter start-up on the busy test machine).
``coordctl lock NAME -- COMMAND`` runs the command under the lock and exits with its
status."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys

import pytest

from coord_client import Client, cli
from tests.client.conftest import VENV_BIN, wait_for

pytestmark = pytest.mark.timeout(60)

COORDCTL = str(VENV_BIN / "coordctl")


def ctl(env: dict[str, str], *args: str, check: int | None = 0, input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([COORDCTL, *args], env=env, capture_output=True, text=True, timeout=45, input=input)
    if check is not None:
        assert proc.returncode == check, f"coordctl {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
    return proc


class InProcess:
    """``coordctl ARGS`` through ``cli.main`` in this process: (status, stdout)."""

    def __init__(self, endpoints: str) -> None:
        self.endpoints = endpoints

    def __call__(self, *args: str, status: int = 0) -> str:
        out = io.StringIO()
        code = cli.main(["--endpoints", self.endpoints, *args], out=out)
        assert code == status, f"coordctl {' '.join(args)} returned {code}, not {status}; output: {out.getvalue()}"
        return out.getvalue()


@pytest.fixture
def run(endpoints: str) -> InProcess:
    return InProcess(endpoints)


def test_put_get_del(run: InProcess, ns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("put", ns + "a", "hello") == "OK\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin")))
    run("put", ns + "b")
    assert run("get", ns + "a") == f"{ns}a\nhello\n"
    assert run("get", ns + "a", "--print-value-only") == "hello\n"
    got = json.loads(run("get", ns, "--prefix", "--json"))
    assert [kv["value"] for kv in got["kvs"]] == ["hello", "from stdin"] and got["count"] == 2
    rev = got["kvs"][0]["mod_revision"]
    run("put", ns + "a", "changed")
    assert run("get", ns + "a", "--rev", str(rev), "--print-value-only") == "hello\n"
    assert run("get", ns + "missing") == ""
    assert run("del", ns, "--prefix") == "2\n"


def test_exit_statuses(run: InProcess, cli_env: dict[str, str], ns: str, capsys: pytest.CaptureFixture[str]) -> None:
    run("put", "", "x", status=1)                                      # refused by the cluster
    assert "key" in capsys.readouterr().err
    run("get", ns + "k", "--rev", str(10**9), status=1)
    run("lease", "revoke", "987654321", status=1)
    assert "coordctl: LeaseNotFound" in capsys.readouterr().err
    run("frobnicate", status=2)                                        # usage
    assert cli.main(["--endpoints", "127.0.0.1:1", "--command-timeout", "1", "get", "x"]) == 3  # unreachable
    # The installed script, with the environment's endpoints:
    assert ctl(cli_env, "get", ns + "a").returncode == 0
    assert ctl(dict(cli_env, COORD_ENDPOINTS="127.0.0.1:1"), "get", "x", "--command-timeout", "1", check=3)


def test_leases(run: InProcess, ns: str) -> None:
    granted = json.loads(run("lease", "grant", "30", "--json"))
    lease = str(granted["id"])
    run("put", ns + "eph", "x", "--lease", lease)
    assert lease in run("lease", "list")
    assert "keepalived with TTL" in run("lease", "keepalive", lease, "--once")
    assert (ns + "eph") in run("lease", "timetolive", lease, "--keys")
    assert run("lease", "revoke", lease) == f"lease {lease} revoked\n"
    assert run("get", ns + "eph") == ""


def test_lock_runs_the_command_under_the_lock_and_returns_its_status(
    cli_env: dict[str, str], client: Client, ns: str
) -> None:
    name = ns + "nightly"
    # The command checks, through the cluster, that it runs while its token holds the lock.
    check = (
        "import os, sys; from coord_client import Client; "
        f"holders = Client().lock_info({name!r}).holders; "
        "token = int(os.environ['COORD_FENCING_TOKEN']); "
        "print('token', token, 'holders', [h.token for h in holders]); "
        "sys.exit(7 if [h.token for h in holders] == [token] else 1)"
    )
    proc = ctl(cli_env, "lock", name, "--ttl", "5", "--", sys.executable, "-c", check, check=None)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert proc.stdout.startswith("token ")
    assert client.lock_info(name).holders == ()  # released when the command exited
    assert ctl(cli_env, "lock", name, "--", "sh", "-c", "kill -TERM $$", check=None).returncode == 128 + signal.SIGTERM


def test_lock_waits_for_the_holder_and_stops_the_command_when_the_lock_is_lost(
    cli_env: dict[str, str], client: Client, ns: str
) -> None:
    name = ns + "contended"
    with client.lock(name, ttl=5) as held:
        waiting = subprocess.Popen(
            [COORDCTL, "lock", name, "--ttl", "3", "--", "sh", "-c", "echo got $COORD_FENCING_TOKEN; sleep 30"],
            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        wait_for(lambda: client.lock_info(name).waiters, 20, "coordctl to queue for the lock")
        first = held.fencing_token
    line = waiting.stdout.readline()  # type: ignore[union-attr]
    assert line.startswith("got ") and int(line.split()[1]) > first
    holder = wait_for(lambda: client.lock_info(name).holders, 10, "coordctl to hold the lock")[0]
    client.revoke_lease(holder.lease)
    assert waiting.wait(20) == 4
    assert "lost" in waiting.stderr.read()  # type: ignore[union-attr]


def test_elect_and_observe(cli_env: dict[str, str], ns: str) -> None:
    name = ns + "sched"
    observer = subprocess.Popen([COORDCTL, "elect", "--observe", name, "--count", "2", "--json"],
                                env=cli_env, stdout=subprocess.PIPE, text=True)
    assert json.loads(observer.stdout.readline())["leader"] is None  # type: ignore[union-attr]
    out = ctl(cli_env, "elect", name, "host-a", "--", "sh", "-c", "echo $COORD_LEADER_TOKEN; sleep 1").stdout
    token = int(out.strip())
    assert token > 0
    assert observer.wait(20) == 0
    second = json.loads(observer.stdout.read().splitlines()[0])  # type: ignore[union-attr]
    assert second["leader"]["value"] == "host-a" and second["leader"]["token"] == token


def test_watch_prints_events(run: InProcess, client: Client, ns: str) -> None:
    start = client.put(ns + "w", "1").revision
    client.put(ns + "w", "2")
    out = run("watch", ns, "--prefix", "--rev", str(start), "--count", "2")
    assert out == f"PUT\n{ns}w\n1\nPUT\n{ns}w\n2\n"
    lines = run("watch", ns + "w", "--rev", str(start), "--count", "1", "--json").splitlines()
    assert json.loads(lines[0])["type"] == "PUT"


def test_rings_members_status_health(run: InProcess, ns: str) -> None:
    ring = ns + "cache"
    run("ring", "join", ring, "a", "10.0.0.1:1")
    run("ring", "join", ring, "b", "10.0.0.2:1", "--weight", "3")
    server = run("ring", "lookup", ring, "user:1", "-n", "2")
    assert run("ring", "lookup", ring, "user:1", "-n", "2", "--local") == server
    assert len(server.splitlines()) == 2
    shown = json.loads(run("ring", "show", ring, "--json"))
    assert [m["id"] for m in shown["members"]] == ["a", "b"]
    run("ring", "leave", ring, "a")

    members = json.loads(run("member", "list", "--json"))
    assert len(members) == 3 and all(int(m["id"], 16) for m in members)
    status = json.loads(run("status", "--json"))
    assert len(status) == 3
    assert {s["role"] for s in status} == {"leader", "follower"}
    assert all(set(s) >= {"name", "endpoint", "role", "term", "leader", "commit", "applied", "lag", "health"} for s in status)
    assert all(s["health"] == "ok" and s["lag"] == s["commit"] - s["applied"] for s in status)
    table = run("status").splitlines()
    assert table[0].split() == [
        "NAME", "ENDPOINT", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG", "LOG", "SNAPSHOT", "HEALTH",
    ] and len(table) == 4
    assert all(row.split()[-1] == "ok" for row in table[1:])
    assert run("endpoint", "health").count("is healthy") == 3


def test_member_add_promote_remove(run: InProcess, client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    added = json.loads(run("member", "add", "127.0.0.1:9", "--name", "ghost", "--json"))
    try:
        assert added["is_learner"] and added["name"] == "ghost"
        listed = {m["id"]: m for m in json.loads(run("member", "list", "--json", "--consistency", "l"))}
        assert listed[added["id"]]["is_learner"]
        run("member", "promote", added["id"], status=1)  # a learner that never caught up
        assert "FailedPrecondition" in capsys.readouterr().err
        run("member", "promote", "not-hex", status=2)
    finally:
        assert run("member", "remove", added["id"]) == f"member {added['id']} removed\n"
    assert len(client.members(linearizable=True)) == 3  # a follower may not have applied the removal yet
