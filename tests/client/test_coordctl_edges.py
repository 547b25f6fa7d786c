"""coordctl's rough edges found by a new user (issue 17): Ctrl-C on streams, exit codes,
bytes that are not UTF-8, --hex, --from-key, bad options, and one JSON shape per
command. Against the shared cluster; subprocesses only where signals or argv bytes matter."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import subprocess

import pytest

from coord_client import Client, cli
from tests.client.conftest import VENV_BIN, wait_for

pytestmark = pytest.mark.timeout(60)

COORDCTL = str(VENV_BIN / "coordctl")


def run(endpoints: str, *args: str, status: int = 0) -> str:
    out = io.StringIO()
    code = cli.main(["--endpoints", endpoints, *args], out=out)
    assert code == status, f"coordctl {' '.join(args)} returned {code}, not {status}; output: {out.getvalue()}"
    return out.getvalue()


@pytest.mark.parametrize("command", [["watch", "{ns}k"], ["elect", "--observe", "{ns}e"]])
def test_ctrl_c_on_a_stream_ends_quietly_with_130(command: list[str], cli_env: dict[str, str], client: Client,
                                                  ns: str) -> None:
    argv = [COORDCTL, *(a.format(ns=ns) for a in command)]
    if command[0] == "watch":  # replay a put, so the first line says the watch is open
        argv += ["--rev", str(client.put(ns + "k", "v").revision)]
    proc = subprocess.Popen(argv, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        expected = "PUT\n" if command[0] == "watch" else "(no leader)\n"
        assert proc.stdout.readline() == expected  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 130
        err = proc.stderr.read()  # type: ignore[union-attr]
        assert "Traceback" not in err and "never retrieved" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_lock_timeout_has_its_own_exit_code(endpoints: str, client: Client, ns: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with client.lock(ns + "busy", ttl=10):
        run(endpoints, "lock", ns + "busy", "--timeout", "0.5", "--", "true", status=5)
        assert "within 0.5s" in capsys.readouterr().err
        with client.campaign(ns + "el", "a", ttl=10):
            run(endpoints, "elect", ns + "el", "b", "--timeout", "0.5", "--", "true", status=5)
    # Unreachable stays 3.
    assert cli.main(["--endpoints", "127.0.0.1:1", "--command-timeout", "1", "lock", "x", "--timeout", "1"]) == 3


def test_arguments_that_are_not_utf8_are_stored_as_bytes(cli_env: dict[str, str], client: Client, ns: str) -> None:
    key = ns.encode() + b"raw\xff"
    value = b"caf\xe9"
    proc = subprocess.run([COORDCTL.encode(), b"put", key, value], env=cli_env, capture_output=True, timeout=45)
    assert proc.returncode == 0, proc.stderr
    got = client.get(key)
    assert got is not None and got.value == value
    # JSON has one shape: text (null when not UTF-8) and base64, always both.
    out = json.loads(run(cli_env["COORD_ENDPOINTS"], "get", ns, "--prefix", "--json"))
    kv = out["kvs"][0]
    assert kv["key"] is None and kv["value"] is None
    assert base64.b64decode(kv["key_base64"]) == key and base64.b64decode(kv["value_base64"]) == value
    client.put(ns + "text", "plain")
    kv = json.loads(run(cli_env["COORD_ENDPOINTS"], "get", ns + "text", "--json"))["kvs"][0]
    assert kv["value"] == "plain" and kv["value_base64"] == base64.b64encode(b"plain").decode()


def test_hex_input_and_output(endpoints: str, client: Client, ns: str) -> None:
    key = ns.encode() + b"\x00\x01"
    run(endpoints, "put", "--hex", key.hex(), "ff00")
    got = client.get(key)
    assert got is not None and got.value == b"\xff\x00"
    assert run(endpoints, "get", "--hex", key.hex(), "--print-value-only") == "ff00\n"
    run(endpoints, "put", "--hex", "zz", "00", status=2)


def test_get_and_del_from_key(endpoints: str, client: Client, ns: str) -> None:
    for name in ("a", "b", "c"):
        client.put(ns + name, name)
    assert run(endpoints, "get", ns + "b", "--from-key", "--keys-only").splitlines()[:2] == [ns + "b", ns + "c"]
    run(endpoints, "get", ns + "b", ns + "c", "--from-key", status=2)
    assert run(endpoints, "del", ns + "b", "--from-key", "--json").startswith("{")
    assert [kv.key for kv in client.get_prefix(ns)] == [(ns + "a").encode()]


def test_elect_observe_json_has_one_shape(cli_env: dict[str, str], client: Client, ns: str) -> None:
    proc = subprocess.Popen([COORDCTL, "elect", "--observe", ns + "o", "--json", "--count", "2"], env=cli_env,
                            stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        with client.campaign(ns + "o", "me", ttl=10):
            assert proc.wait(20) == 0
        second = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first == {"name": ns + "o", "leader": None}
    assert set(second) == {"name", "leader"} and second["leader"]["value"] == "me"
    assert set(second["leader"]) == {"value", "value_base64", "lease", "token", "revision"}


@pytest.mark.parametrize("args", [["--command-timeout", "0", "get", "x"], ["--command-timeout", "-1", "get", "x"],
                                  ["--endpoints", "127.0.0.1:99999", "get", "x"],
                                  ["get", "x", "--endpoints", "localhost"],
                                  ["lock", "x", "--timeout", "-2"]])
def test_bad_options_are_usage_errors(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "Nones" not in err
    if "99999" in args[1]:
        assert "99999" in err and "65535" in err


def test_python_client_rejects_values_that_are_not_str_or_bytes(client: Client, ns: str) -> None:
    for bad in (5, 1000000, 1.5, None, [1]):
        with pytest.raises(TypeError, match="str or bytes"):
            client.put(ns + "n", bad)  # type: ignore[arg-type]
    assert client.get(ns + "n") is None
    with pytest.raises(TypeError):
        client.get(7)  # type: ignore[arg-type]


def test_interrupted_keepalive_is_130(cli_env: dict[str, str], client: Client) -> None:
    lease = client.grant_lease(30, keepalive=False)
    proc = subprocess.Popen([COORDCTL, "lease", "keepalive", str(lease.id)], env=cli_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "keepalived" in proc.stdout.readline()  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(20) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        client.revoke_lease(lease.id)


def test_lease_timetolive_lists_every_attachment(endpoints: str, client: Client, ns: str) -> None:
    lease = client.grant_lease(30)
    try:
        client.put(ns + "eph", "x", lease=lease)
        client.ring_join(ns + "ring", "m1", "10.0.0.1:1", lease=lease)
        with client.lock(ns + "lk", lease=lease), client.campaign(ns + "el", "v", lease=lease):
            info = json.loads(run(endpoints, "lease", "timetolive", str(lease.id), "--keys", "--json"))
            text = run(endpoints, "lease", "timetolive", str(lease.id), "--keys")
        assert info["keys"] == [ns + "eph"]
        assert info["locks"] == [ns + "lk"] and info["elections"] == [ns + "el"]
        assert info["ring_members"] == [{"ring": ns + "ring", "member_id": "m1"}]
        assert f"{ns}ring/m1" in text and f"{ns}lk" in text
    finally:
        client.revoke_lease(lease.id)


def test_the_command_under_a_lock_dies_with_a_killed_coordctl(cli_env: dict[str, str], client: Client,
                                                              ns: str) -> None:
    proc = subprocess.Popen([COORDCTL, "lock", ns + "pd", "--", "sh", "-c", "echo $$; exec sleep 60"], env=cli_env,
                            stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(proc.stdout.readline())  # type: ignore[union-attr]
        proc.kill()  # SIGKILL: coordctl gets no chance to stop the command itself
        proc.wait(10)

        def gone() -> bool:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            with open(f"/proc/{child}/stat") as f:  # a zombie waiting for its reaper is dead too
                return f.read().split(") ")[-1].startswith("Z")

        wait_for(gone, 10, f"the command (pid {child}) to die with coordctl")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def test_status_rows_have_one_shape_reachable_or_not(endpoints: str) -> None:
    from coord_client.cli import STATUS_KEYS

    rows = json.loads(run(endpoints + ",127.0.0.1:1", "status", "--json", "--command-timeout", "2", status=1))
    assert [tuple(r) for r in rows] == [STATUS_KEYS] * len(rows)
    dead = [r for r in rows if r["health"] == "unreachable"]
    assert len(dead) == 1 and dead[0]["endpoint"] == "127.0.0.1:1" and dead[0]["error"] and dead[0]["role"] is None
