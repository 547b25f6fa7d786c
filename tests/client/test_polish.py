"""Small things a new user tripped over (issue 17, defect 12): the subcommand's usage on a
usage error, help text on every option, coord-server --help naming restore, no Python
bytes reprs in error messages, leader changes in the log at INFO, and the sync client
refusing cancel_on_loss rather than ignoring it."""

from __future__ import annotations

import argparse
import subprocess
import time

import pytest

from coord_client import Client, cli, errors
from tests.client.conftest import VENV_BIN
from tests.integration.harness import Cluster

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("argv, usage", [
    (["member", "promote", "n4"], "usage: coordctl member promote"),
    (["elect", "onlyname"], "usage: coordctl elect"),
])
def test_usage_errors_show_the_subcommands_usage(endpoints: str, argv: list[str], usage: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--endpoints", endpoints, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(usage), err


def walk(parser: argparse.ArgumentParser, path: str = "coordctl") -> list[str]:
    """Options without help text, as "command --option"."""
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += walk(sub, f"{path} {name}")
        elif action.option_strings and not action.help:
            missing.append(f"{path} {action.option_strings[-1]}")
    return missing


def test_every_option_has_help() -> None:
    assert walk(cli.build_parser()) == []


def test_coord_server_help_mentions_restore() -> None:
    proc = subprocess.run([str(VENV_BIN / "coord-server"), "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "coord-server restore" in proc.stdout


def test_messages_show_keys_as_text_not_bytes_reprs() -> None:
    from coord_server.auth.requirements import Need

    assert Need("keys", (b"h", b"h\x00"), True).describe() == "write on key 'h'"
    assert Need("keys", (b"app/", b"app0"), False).describe() == "read on keys ['app/', 'app0')"
    assert errors.shown(b"\xff\x00") == "0xff00"


def test_compacted_watch_names_the_key_as_text(client: Client, ns: str) -> None:
    first = client.put(ns + "c", "1").revision
    last = client.put(ns + "c", "2").revision
    client.compact(last)
    # A watch may land on a follower that has not applied the compaction yet (it then
    # serves the old history, as etcd's followers do): ask again until one refuses.
    deadline = time.monotonic() + 30
    while True:
        try:
            with client.watch(ns + "c", start_revision=first) as events:
                next(iter(events))
        except errors.Compacted as err:
            compacted = err
            break
        assert time.monotonic() < deadline, "no member refused a watch from a compacted revision"
        time.sleep(0.05)
    assert "b'" not in str(compacted) and repr(ns + "c") in str(compacted)


def test_leader_changes_are_logged_at_info(shared_cluster: Cluster) -> None:
    logs = "\n".join(shared_cluster.log_tail(name, 400) for name in shared_cluster.nodes)
    assert " INFO " in logs and ("leader is now n" in logs and "this member is the leader now" in logs), logs[-2000:]


def test_sync_client_refuses_cancel_on_loss(client: Client, ns: str) -> None:
    for make in (lambda: client.lock(ns + "l", cancel_on_loss=True),
                 lambda: client.semaphore(ns + "s", 2, cancel_on_loss=True),
                 lambda: client.campaign(ns + "e", "v", cancel_on_loss=True)):
        with pytest.raises(errors.InvalidArgument, match="cancel_on_loss needs asyncio"):
            make()
