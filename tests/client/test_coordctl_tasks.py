"""Daily tasks an etcd operator expects of coordctl (issue 17): move-leader, version,
status sorted by name, lock inspect, elect --leader, txn, watch -- COMMAND. Against the
shared cluster, in process unless a subprocess matters."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from coord_client import Client, cli
from tests.client.conftest import VENV_BIN

pytestmark = pytest.mark.timeout(60)

COORDCTL = str(VENV_BIN / "coordctl")


def run(endpoints: str, *args: str, status: int = 0, stdin: str | None = None,
        monkeypatch: pytest.MonkeyPatch | None = None) -> str:
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    out = io.StringIO()
    code = cli.main(["--endpoints", endpoints, *args], out=out)
    assert code == status, f"coordctl {' '.join(args)} returned {code}, not {status}; output: {out.getvalue()}"
    return out.getvalue()


def test_move_leader_by_name_and_by_id(endpoints: str, client: Client) -> None:
    members = client.members()
    leader = client.status().leader
    target = next(m for m in members if m.id != leader)
    assert run(endpoints, "move-leader", target.name) == f"leadership moved to {target.name} ({target.id:x})\n"
    assert client.status().leader == target.id
    back = next(m for m in members if m.id == leader)
    moved = json.loads(run(endpoints, "move-leader", f"{back.id:x}", "--json"))
    assert moved == {"leader": f"{back.id:x}", "name": back.name, "moved": True}
    run(endpoints, "move-leader", "nosuchmember", status=2)


def test_version_and_status_sorted_by_name(endpoints: str) -> None:
    version = json.loads(run(endpoints, "version", "--json"))
    assert version["client"] and [m["name"] for m in version["members"]] == ["n1", "n2", "n3"]
    assert all(m["version"] for m in version["members"])
    assert run(endpoints, "version").startswith("coordctl ")
    # --endpoints in reverse order: the table is still by name.
    reverse = ",".join(reversed(endpoints.split(",")))
    rows = [line.split()[0] for line in run(reverse, "endpoint", "status").splitlines()[1:]]
    assert rows == ["n1", "n2", "n3"]
    assert [o["name"] for o in json.loads(run(reverse, "status", "--json"))] == ["n1", "n2", "n3"]


def test_lock_inspect_shows_holders_and_waiters_in_order(endpoints: str, client: Client, ns: str) -> None:
    name = ns + "insp"
    assert run(endpoints, "lock", "inspect", name) == f"lock {name}: free\n"
    with client.lock(name, ttl=10, owner="first") as held:
        token, lease = held.fencing_token, held.lease_id
        waiter = subprocess.Popen([COORDCTL, "--endpoints", endpoints, "lock", name, "--", "true"])
        try:
            from tests.client.conftest import wait_for

            wait_for(lambda: client.lock_info(name).waiters, 20, "coordctl to queue")
            info = json.loads(run(endpoints, "lock", "--inspect", name, "--json"))
            text = run(endpoints, "lock", "inspect", name)
        finally:
            waiter.kill()
            waiter.wait()
    assert info["holders"] == [{"token": token, "lease": lease,
                                "owner": "first", "revision": info["holders"][0]["revision"]}]
    assert len(info["waiters"]) == 1 and info["permits"] == 1
    assert text.splitlines()[2].split()[:3] == ["holds", str(token), str(lease)] and "waits #1" in text


def test_elect_leader(endpoints: str, client: Client, ns: str) -> None:
    name = ns + "el"
    assert json.loads(run(endpoints, "elect", "--leader", name, "--json")) == {"name": name, "leader": None}
    with client.campaign(name, "host-a", ttl=10):
        shown = json.loads(run(endpoints, "elect", "--leader", name, "--json"))
        assert shown["leader"]["value"] == "host-a" and shown["leader"]["token"] > 0
        assert run(endpoints, "elect", "--leader", name).startswith(f"election {name}: leader host-a (token ")
    run(endpoints, "elect", "--leader", name, "v", status=2)
