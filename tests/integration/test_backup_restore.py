"""Backup and restore through the real processes: ``coordctl snapshot save`` against a
running cluster, ``coord-server restore`` for each member of a fresh 3-node cluster, and
the restored cluster electing, serving the old data (with its history) and taking new
writes; a damaged snapshot file is refused with a clear message and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from coord_client import Client
from coord_client import cli as coordctl_cli
from coord_server import cli as server_cli
from tests.integration.harness import Cluster

pytestmark = pytest.mark.slow


def _coordctl(*args: str, endpoints: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coord_client.cli", "--endpoints", endpoints, *args],
        capture_output=True, text=True, timeout=60,
    )


def _restore(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coord_server.cli", "restore", *args], capture_output=True, text=True, timeout=60
    )


def _endpoints(cluster: Cluster) -> str:
    return ",".join(node.address for node in cluster.nodes.values())


def _write_history(client: Client) -> dict[str, int]:
    """Keys with several versions, a deleted key, a compaction and a leased key;
    returns the revisions to read back at."""
    marks: dict[str, int] = {}
    for i in range(40):
        revision = client.put(f"app/item/{i:03d}", f"value-{i}").revision
        if i == 20:
            marks["compacted"] = revision
    client.compact(marks["compacted"])
    for i in range(5):
        client.put("app/config", f"v{i}")
    marks["config_v4"] = client.get("app/config").mod_revision  # type: ignore[union-attr]
    client.put("app/config", "v5")
    client.put("app/gone", "soon deleted")
    client.delete("app/gone")
    lease = client.grant_lease(60, keepalive=False)
    client.put("app/session", "held", lease=lease)
    with client.lock("nightly-job", ttl=10) as lock:
        marks["token"] = lock.fencing_token
    marks["final"] = client.put("app/config", "v6").revision
    return marks


def _dump(client: Client) -> list[tuple[bytes, bytes, int, int, int]]:
    return [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) for kv in client.get_prefix("app/")]


def test_backup_restore_round_trip(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    source = make_cluster(3)
    with Client(_endpoints(source)) as client:
        marks = _write_history(client)
        before = _dump(client)
        old_header = client.range("app/config")
        old_config_at_v4 = client.get("app/config", revision=marks["config_v4"])
        old_cluster_ids = {m.id for m in client.members()}

    backup = tmp_path / "backup.snap"
    saved = _coordctl("snapshot", "save", str(backup), endpoints=_endpoints(source))
    assert saved.returncode == 0, saved.stderr
    assert "Snapshot saved" in saved.stdout and backup.exists() and not Path(f"{backup}.part").exists()
    status = _coordctl("snapshot", "status", str(backup), "--json", endpoints=_endpoints(source))
    assert status.returncode == 0, status.stderr
    assert f'"revision": {marks["final"]}' in status.stdout

    restored = make_cluster(3, start=False)
    initial = ",".join(f"{name}={node.address}" for name, node in restored.nodes.items())
    for name, node in restored.nodes.items():
        done = _restore("--snapshot", str(backup), "--name", name, "--initial-cluster", initial, "--data-dir", str(node.data_dir))
        assert done.returncode == 0, done.stderr
        assert f"restored revision {marks['final']}" in done.stdout
    restored.start()
    restored.wait_for_leader(timeout=60)

    with Client(_endpoints(restored)) as client:
        assert _dump(client) == before
        # History survives, and so does the compaction point.
        assert client.get("app/config", revision=marks["config_v4"]) == old_config_at_v4
        with pytest.raises(Exception, match="compacted"):
            client.get("app/item/000", revision=marks["compacted"] - 5)
        # Revisions continue where the backup stopped.
        header = client.range("app/config")
        assert header.revision == old_header.revision == marks["final"]
        assert client.put("app/after-restore", "new").revision == marks["final"] + 1
        assert client.get("app/after-restore").value == b"new"  # type: ignore[union-attr]
        # The new membership, new member ids, and the leased key still attached.
        members = client.members(linearizable=True)
        assert sorted(m.name for m in members) == ["n1", "n2", "n3"]
        assert sorted(m.client_address for m in members) == sorted(n.address for n in restored.nodes.values())
        assert not {m.id for m in members} & old_cluster_ids
        session = client.get("app/session")
        assert session is not None and session.lease != 0
        # Fencing tokens come from log indexes, which continue: no token repeats.
        with client.lock("nightly-job", ttl=10) as lock:
            assert lock.fencing_token > marks["token"]
    # A fresh cluster id: the restored cluster is not the source cluster.
    assert restored.status("n1").header.cluster_id != source.status("n1").header.cluster_id

    # Every member restarted from its data directory keeps serving the same data.
    restored.terminate("n2")
    restored.start_node("n2")
    restored.wait_caught_up()
    with Client(restored.nodes["n2"].address) as client:
        assert client.get("app/after-restore", serializable=True).value == b"new"  # type: ignore[union-attr]


def test_damaged_snapshot_is_refused(cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The refusals run the two CLIs in-process (the same ``main`` the console scripts
    call), to spare a Python start per case."""

    def restore(*args: str) -> subprocess.CompletedProcess[str]:
        code = server_cli.main(["restore", *args])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    def coordctl(*args: str, endpoints: str) -> subprocess.CompletedProcess[str]:
        code = coordctl_cli.main(["--endpoints", endpoints, *args])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    with Client(_endpoints(cluster)) as client:
        client.put("k", "v")
    backup = tmp_path / "good.snap"
    saved = _coordctl("snapshot", "save", str(backup), "--endpoint", cluster.nodes["n2"].address,
                      "--serializable", endpoints=_endpoints(cluster))
    assert saved.returncode == 0, saved.stderr
    content = backup.read_bytes()

    flipped = tmp_path / "flipped.snap"
    flipped.write_bytes(content[:10] + bytes([content[10] ^ 0xFF]) + content[11:])
    truncated = tmp_path / "truncated.snap"
    truncated.write_bytes(content[: len(content) // 2])
    tiny = tmp_path / "tiny.snap"
    tiny.write_bytes(b"hello")
    for bad, message in ((flipped, "checksum does not match"), (truncated, "checksum does not match"),
                         (tiny, "not a coord snapshot file"), (tmp_path / "missing.snap", "cannot read")):
        data_dir = tmp_path / f"restore-{bad.stem}"
        done = restore("--snapshot", str(bad), "--name", "n1", "--initial-cluster", "n1=127.0.0.1:7001",
                        "--data-dir", str(data_dir))
        assert done.returncode == 1, (bad, done.stdout, done.stderr)
        assert message in done.stderr, done.stderr
        assert not data_dir.exists(), "a refused restore must not leave a data directory"
        assert not [p for p in os.listdir(tmp_path) if ".restoring-" in p]
        status = coordctl("snapshot", "status", str(bad), endpoints=_endpoints(cluster))
        assert status.returncode == 1 and message in status.stderr, status.stderr

    # A data directory that already holds something is never overwritten.
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    done = restore("--snapshot", str(backup), "--name", "n1", "--initial-cluster", "n1=127.0.0.1:7001",
                    "--data-dir", str(occupied))
    assert done.returncode == 1 and "not empty" in done.stderr
    assert (occupied / "keep.txt").read_text() == "mine"
    # The name must be one of the new members.
    done = restore("--snapshot", str(backup), "--name", "n9", "--initial-cluster", "n1=127.0.0.1:7001",
                    "--data-dir", str(tmp_path / "n9"))
    assert done.returncode == 2 and "must name this member" in done.stderr
    # A destination that cannot be written is a clear error too.
    unwritable = coordctl("snapshot", "save", str(tmp_path / "no-such-dir" / "x.snap"), endpoints=_endpoints(cluster))
    assert unwritable.returncode == 1 and "cannot write" in unwritable.stderr, unwritable.stderr
    # Tools find the service by reflection, as grpcurl does.
    answers = reflection_pb2_grpc.ServerReflectionStub(cluster.channel("n1")).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    assert "coord.v1.Maintenance" in {s.name for a in answers for s in a.list_services_response.service}
    # The source cluster was not disturbed by any of this.
    with Client(_endpoints(cluster)) as client:
        assert client.get("k").value == b"v"  # type: ignore[union-attr]


def test_single_member_restore_serves(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    """A one-member restore campaigns at once (no peers to wait for) and serves."""
    source = make_cluster(1)
    with Client(_endpoints(source)) as client:
        rev = client.put("solo", "1").revision
    backup = tmp_path / "solo.snap"
    assert _coordctl("snapshot", "save", str(backup), endpoints=_endpoints(source)).returncode == 0
    target = make_cluster(1, start=False)
    node = target.nodes["n1"]
    done = _restore("--snapshot", str(backup), "--name", "n1", "--initial-cluster", f"n1={node.address}",
                    "--data-dir", str(node.data_dir))
    assert done.returncode == 0, done.stderr
    target.start()
    target.wait_for_leader(timeout=60)
    with Client(node.address) as client:
        assert client.get("solo").mod_revision == rev  # type: ignore[union-attr]
        assert client.put("solo", "2").revision == rev + 1


def test_restore_keeps_client_and_peer_addresses_apart(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    """With peers on a port of their own (--peer-listen, as with TLS), the restored
    membership sends clients to the client addresses, not to the peer port."""
    import json

    from coord_server.state import StateMachine
    from coord_server.storage import DiskStorage

    source = make_cluster(1)
    with Client(_endpoints(source)) as client:
        client.put("k", "v")
    backup = tmp_path / "split.snap"
    assert _coordctl("snapshot", "save", str(backup), endpoints=_endpoints(source)).returncode == 0
    peers = "n1=127.0.0.1:17101,n2=127.0.0.1:17102"
    clients = "n1=127.0.0.1:17001,n2=127.0.0.1:17002"
    data = tmp_path / "n1.coord"
    done = _restore("--snapshot", str(backup), "--name", "n1", "--initial-cluster", peers,
                    "--initial-cluster-clients", clients, "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    assert "127.0.0.1:17001" in done.stdout  # the address to serve clients on
    identity = json.loads((data / "member.json").read_text())
    assert identity["initial_cluster_clients"] == {"n1": "127.0.0.1:17001", "n2": "127.0.0.1:17002"}
    with DiskStorage(str(data)) as storage:
        state = StateMachine.restore(storage.snapshot().data)
    assert {(m.name, m.peer_address, m.client_address) for m in state.members()} == {
        ("n1", "127.0.0.1:17101", "127.0.0.1:17001"), ("n2", "127.0.0.1:17102", "127.0.0.1:17002"),
    }
