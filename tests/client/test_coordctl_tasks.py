"""Daily tasks an etcd operator expects of coordctl (issue 17): move-leader, version,
status sorted by name, lock inspect, elect --leader, txn, watch -- COMMAND. Against the
shared cluster, in process unless a subprocess matters."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

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


def test_elect_leader_and_campaigners(endpoints: str, cli_env: dict[str, str], client: Client, ns: str) -> None:
    name = ns + "el"
    empty = {"name": name, "leader": None, "candidates": []}
    assert json.loads(run(endpoints, "elect", "--leader", name, "--json")) == empty
    with client.campaign(name, "host-a", ttl=10) as term:
        token = term.token
        waiting = subprocess.Popen([COORDCTL, "--endpoints", endpoints, "elect", name, "host-b"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            from tests.client.conftest import wait_for

            wait_for(lambda: len(client.candidates(name)) == 2, 20, "a second campaigner")
            shown = json.loads(run(endpoints, "elect", "--leader", name, "--json"))
            text = run(endpoints, "elect", "--leader", name)
        finally:
            waiting.kill()
            waiting.wait()
    assert shown["leader"]["value"] == "host-a" and shown["leader"]["token"] == token
    assert [(c["value"], c["token"]) for c in shown["candidates"]] == [("host-a", token), ("host-b", 0)]
    assert text.startswith(f"election {name}: leader host-a (token ")
    assert "leads" in text and "waits #1  host-b" in text
    run(endpoints, "elect", "--leader", name, "v", status=2)


def test_txn_from_stdin_runs_the_branch_its_comparisons_choose(endpoints: str, client: Client, ns: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    client.put(ns + "owner", "me")
    text = (f'value("{ns}owner") = "me"\nmod("{ns}owner") > 0\n\n'
            f"put {ns}config v2\nget {ns}config\n\n"
            f"get {ns}owner\n")
    assert run(endpoints, "txn", stdin=text, monkeypatch=monkeypatch) == f"SUCCESS\nOK\n{ns}config\nv2\n"
    other = text.replace('= "me"', '= "you"')
    result = json.loads(run(endpoints, "txn", "--json", stdin=other, monkeypatch=monkeypatch))
    assert result["succeeded"] is False
    assert result["responses"][0]["get"]["kvs"][0]["value"] == "me"
    run(endpoints, "txn", stdin="frob(x) = 1\n", monkeypatch=monkeypatch, status=2)
    run(endpoints, "txn", stdin=f'mod("{ns}x") > "a"\n', monkeypatch=monkeypatch, status=2)


def test_txn_from_a_file_and_interactively(endpoints: str, cli_env: dict[str, str], client: Client, ns: str,
                                           tmp_path: Path) -> None:
    path = tmp_path / "txn.txt"
    path.write_text(f'# create once\nversion("{ns}once") = 0\n\nput {ns}once "a b"\n\nget {ns}once\n')
    assert run(endpoints, "txn", "--file", str(path)) == "SUCCESS\nOK\n"
    assert run(endpoints, "txn", "--file", str(path)) == f"FAILURE\n{ns}once\na b\n"
    interactive = subprocess.run([COORDCTL, "txn", "-i"], env=cli_env, capture_output=True, text=True, timeout=45,
                                 input=f'version("{ns}once") > 0\n\ndel {ns}once\n\n')
    assert interactive.returncode == 0, interactive.stderr
    assert "compares:" in interactive.stderr and "success requests" in interactive.stderr
    assert interactive.stdout == "SUCCESS\n1\n"
    assert client.get(ns + "once") is None


def test_watch_runs_a_command_per_event(cli_env: dict[str, str], client: Client, ns: str, tmp_path: Path) -> None:
    first = client.put(ns + "w", "one").revision
    client.delete(ns + "w")
    log = tmp_path / "events"
    script = f'echo "$COORD_WATCH_EVENT_TYPE $COORD_WATCH_KEY $COORD_WATCH_VALUE $COORD_WATCH_REVISION" >> {log}'
    proc = subprocess.run([COORDCTL, "watch", ns + "w", "--rev", str(first), "--count", "2", "--", "sh", "-c", script],
                          env=cli_env, capture_output=True, text=True, timeout=45)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().splitlines() == [f"PUT {ns}w one {first}", f"DELETE {ns}w  {first + 1}"]
    assert proc.stdout.startswith("PUT\n")


def test_config_profiles_and_their_precedence(endpoints: str, client: Client, ns: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    client.put(ns + "p", "from the cluster")
    config = tmp_path / "coordctl.toml"
    config.write_text(f'[default]\nendpoints = "{endpoints}"\ncommand_timeout = 7\n\n'
                      f'[dead]\nendpoints = ["127.0.0.1:1"]\ncommand_timeout = 1\n')
    monkeypatch.setenv("COORD_CONFIG", str(config))
    monkeypatch.delenv("COORD_ENDPOINTS", raising=False)
    monkeypatch.delenv("COORD_PROFILE", raising=False)

    def ctl(*args: str) -> tuple[int, str]:
        out = io.StringIO()
        return cli.main(list(args), out=out), out.getvalue()

    assert ctl("get", ns + "p", "--print-value-only") == (0, "from the cluster\n")   # the default profile
    assert ctl("--profile", "dead", "get", ns + "p")[0] == 3                          # the profile named
    assert "profile 'dead'" in capsys.readouterr().err
    monkeypatch.setenv("COORD_PROFILE", "dead")
    assert ctl("get", ns + "p")[0] == 3
    monkeypatch.setenv("COORD_ENDPOINTS", endpoints)                                  # environment over profile
    assert ctl("get", ns + "p", "--print-value-only") == (0, "from the cluster\n")
    monkeypatch.setenv("COORD_ENDPOINTS", "127.0.0.1:1")                              # flag over environment
    assert ctl("--endpoints", endpoints, "get", ns + "p", "--print-value-only") == (0, "from the cluster\n")
    assert ctl("--profile", "nosuch", "get", "x")[0] == 2
    assert "no profile 'nosuch'" in capsys.readouterr().err
    config.write_text('[default]\nendpoint = "typo:1"\n')
    monkeypatch.delenv("COORD_PROFILE")
    assert ctl("get", "x")[0] == 2
    assert "unknown settings ['endpoint']" in capsys.readouterr().err


def complete(script: str, words: list[str]) -> list[str]:
    """What bash offers for the last of ``words`` (the word being typed)."""
    line = " ".join(f"'{w}'" for w in words)
    probe = (f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _coordctl; "
             'printf "%s\\n" "${COMPREPLY[@]}"')
    proc = subprocess.run(["bash", "--norc", "-c", probe], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return [w for w in proc.stdout.splitlines() if w]


def test_shell_completion_from_the_parser() -> None:
    out = io.StringIO()
    assert cli.main(["completion", "bash"], out=out) == 0  # no cluster needed
    script = out.getvalue()
    assert complete(script, ["coordctl", "le"]) == ["lease"]
    assert complete(script, ["coordctl", "lease", ""]) == ["grant", "keepalive", "list", "revoke", "timetolive"]
    assert "--from-key" in complete(script, ["coordctl", "get", "k", "--f"])
    assert complete(script, ["coordctl", "--endpoints", "h:1", "mo"]) == ["move-leader"]
    zsh = io.StringIO()
    assert cli.main(["completion", "zsh"], out=zsh) == 0
    assert "bashcompinit" in zsh.getvalue() and script in zsh.getvalue()
