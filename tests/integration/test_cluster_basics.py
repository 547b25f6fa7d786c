"""A real cluster of coord-server processes: election, replication, crash of the leader,
catch-up of a restarted member, and the one-node default.

Each test starts its own processes on free loopback ports (harness.py); deadlines are
generous because CI runs on two busy cores, and the measured times are printed (-s).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from coord.v1 import cluster_pb2, kv_pb2, kv_pb2_grpc
from tests.integration.harness import LEADER, RETRYABLE, Cluster, HarnessError, leader_hint, prefix_end, wait_until

pytestmark = pytest.mark.timeout(120)


def test_one_leader_that_every_node_agrees_on(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    statuses = {name: cluster.status(name) for name in cluster.nodes}
    leader_id = cluster.nodes[leader].member_id
    assert [n for n, s in statuses.items() if s.role == LEADER] == [leader]
    assert {s.leader for s in statuses.values()} == {leader_id}
    assert len({s.header.raft_term for s in statuses.values()}) == 1
    assert len({s.header.cluster_id for s in statuses.values()}) == 1
    assert len({s.header.member_id for s in statuses.values()}) == 3


def test_a_put_on_any_node_is_visible_on_every_node(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    names = list(cluster.nodes)
    for via in names:
        role = "leader" if via == leader else "follower"
        key, value = f"visible/{via}", f"written through {via} ({role})"
        put = cluster.put(key, value, via=via)
        assert put.header.revision > 0
        for reader in names:
            # Linearizable (the default): must see the acknowledged write at once.
            got = cluster.get(key, via=reader)
            assert [(kv.key, kv.value) for kv in got.kvs] == [(key.encode(), value.encode())], (via, reader)
            assert got.header.revision >= put.header.revision
    # Serializable reads are served from each node's own state machine: poll until every
    # node has applied all three writes, which shows the data reached every replica.
    for reader in names:
        wait_until(
            lambda: cluster.get("visible/", prefix=True, serializable=True, via=reader).count == 3,
            30,
            f"all three keys applied on {reader}",
        )


class Writer(threading.Thread):
    """Puts unique keys as fast as acknowledgements come back, spreading over the live
    nodes; records every acknowledged key with the start and end of its successful call."""

    def __init__(self, cluster: Cluster, index: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.cluster, self.index, self.stop_event = cluster, index, stop
        self.acked: list[tuple[float, float, bytes]] = []
        self.errors: list[str] = []
        self.channels: dict[str, grpc.Channel] = {}

    def run(self) -> None:
        seq = 0
        target: str | None = None
        while not self.stop_event.is_set():
            live = self.cluster.live_names()
            if target is None or target not in live:
                target = live[(self.index + seq) % len(live)]
            key = f"load/{self.index}/{seq:06d}".encode()
            address = self.cluster.nodes[target].address
            channel = self.channels.get(address) or self.channels.setdefault(address, grpc.insecure_channel(address))
            started = time.monotonic()
            try:
                kv_pb2_grpc.KVStub(channel).Put(kv_pb2.PutRequest(key=key, value=b"v" + key), timeout=2)
            except grpc.RpcError as err:
                if err.code() not in RETRYABLE:
                    self.errors.append(f"{err.code().name}: {err.details()}")
                leader = leader_hint(err)
                target = self.cluster.name_at(leader) if leader else None
                time.sleep(0.01)
                continue  # the same key again: an unacknowledged write may or may not exist
            self.acked.append((started, time.monotonic(), key))
            seq += 1
        for channel in self.channels.values():
            channel.close()


def test_killing_the_leader_under_writes_loses_no_acknowledged_write(cluster: Cluster) -> None:
    old = cluster.wait_for_leader()
    stop = threading.Event()
    writers = [Writer(cluster, i, stop) for i in range(4)]
    for w in writers:
        w.start()
    try:
        wait_until(lambda: sum(len(w.acked) for w in writers) >= 100, 30, "100 writes acknowledged before the crash")
        killed_at = time.monotonic()
        cluster.kill(old)
        new = cluster.wait_for_leader(timeout=30, other_than=old)
        elected_after = time.monotonic() - killed_at
        resumed = wait_until(
            lambda: min((end for w in writers for start, end, _ in w.acked if start > killed_at), default=None),
            30,
            "a write sent after the crash to be acknowledged",
        )
        # Keep writing a little longer against the two survivors.
        count = sum(len(w.acked) for w in writers)
        wait_until(lambda: sum(len(w.acked) for w in writers) >= count + 50, 30, "50 more writes")
    finally:
        stop.set()
        for w in writers:
            w.join(timeout=30)
    print(f"\nleader {old} killed: {new} leads after {elected_after:.2f}s, writes resumed after {resumed - killed_at:.2f}s")
    assert all(not w.errors for w in writers), [w.errors[:3] for w in writers]
    assert elected_after < 10, f"a new leader took {elected_after:.1f}s"
    acked = {key for w in writers for _, _, key in w.acked}
    stored = {kv.key for kv in cluster.get("load/", prefix=True, via=new).kvs}
    missing = acked - stored
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:5]}"

    # The old leader comes back as a follower and catches up with everything.
    cluster.start_node(old)
    cluster.wait_caught_up()
    on_old = {kv.key for kv in cluster.get("load/", prefix=True, serializable=True, via=old).kvs}
    assert acked <= on_old


def test_a_restarted_follower_catches_up_through_the_log(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    follower = next(n for n in cluster.nodes if n != leader)
    cluster.put("before", "crash")
    cluster.kill(follower)
    for i in range(50):
        cluster.put(f"while-down/{i:03d}", str(i))
    cluster.start_node(follower)
    index = cluster.wait_caught_up([follower])
    got = cluster.get("while-down/", prefix=True, serializable=True, via=follower)
    assert got.count == 50
    assert cluster.status(follower).applied_index >= index


def test_a_follower_far_behind_catches_up_through_a_snapshot(make_cluster) -> None:  # type: ignore[no-untyped-def]
    # Snapshot every 100 entries: the leader compacts its log while the follower is down,
    # so the follower can only catch up through InstallSnapshot.
    cluster = make_cluster(options=("--snapshot-entries", "100"))
    leader = cluster.wait_for_leader()
    follower = next(n for n in cluster.nodes if n != leader)
    cluster.kill(follower)
    behind = cluster.status(leader).commit_index
    for i in range(400):
        cluster.put(f"snap/{i:04d}", "x" * 100, via=leader)
    leader_status = cluster.wait_for_status(
        leader, lambda s: s.log_first_index > behind + 1, 30, "a log compacted past the follower"
    )
    cluster.start_node(follower)
    cluster.wait_caught_up([follower])
    status = cluster.status(follower)
    assert status.snapshot_index > behind, (status, leader_status)
    got = cluster.get("snap/", prefix=True, serializable=True, via=follower)
    assert got.count == 400


def test_default_coord_server_serves_a_one_node_cluster(tmp_path: Path) -> None:
    """`coord-server` with no arguments: one member on 127.0.0.1:7379, data in ./default.coord."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 7379))
        except OSError:
            pytest.skip("127.0.0.1:7379 (the default address) is in use on this machine")
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "coord_server.cli"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    channel = grpc.insecure_channel("127.0.0.1:7379")
    try:
        kv = kv_pb2_grpc.KVStub(channel)

        def put() -> kv_pb2.PutResponse:
            if proc.poll() is not None:
                raise HarnessError(f"coord-server exited with {proc.returncode}")
            return kv.Put(kv_pb2.PutRequest(key=b"hello", value=b"world"), timeout=2)

        try:
            wait_until(put, 30, "a Put on the default one-node server")
        except HarnessError as err:
            log.flush()
            raise HarnessError(f"{err}\n{(tmp_path / 'server.log').read_text(errors='replace')[-3000:]}") from None
        got = kv.Range(kv_pb2.RangeRequest(key=b"hello"), timeout=5)
        assert [(kv.key, kv.value) for kv in got.kvs] == [(b"hello", b"world")]
        from coord.v1 import cluster_pb2_grpc

        status = cluster_pb2_grpc.ClusterStub(channel).Status(cluster_pb2.ClusterStatusRequest(), timeout=5)
        assert status.role == LEADER
        assert (tmp_path / "default.coord").is_dir()
    finally:
        channel.close()
        proc.terminate()
        try:
            assert proc.wait(timeout=20) == 0, "coord-server did not exit cleanly on SIGTERM"
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, 9)
                proc.wait()
            log.close()


def test_range_end_helper() -> None:
    assert prefix_end(b"a/") == b"a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"


def test_a_joined_member_catches_up_as_a_learner_and_is_promoted(cluster: Cluster) -> None:
    from coord.v1 import cluster_pb2_grpc

    for i in range(20):
        cluster.put(f"before-join/{i:02d}", str(i))
    cluster.add_member("n4")
    status = cluster.wait_for_status("n4", lambda s: s.is_learner and s.leader != 0, 60, "a learner that knows the leader")
    cluster.wait_caught_up(["n4"])
    assert cluster.get("before-join/", prefix=True, serializable=True, via="n4").count == 20

    def promote() -> cluster_pb2.ClusterMemberPromoteResponse | None:
        try:
            response: cluster_pb2.ClusterMemberPromoteResponse = cluster.call(
                "MemberPromote", cluster_pb2.ClusterMemberPromoteRequest(id=status.header.member_id),
                stub_class=cluster_pb2_grpc.ClusterStub,
            )
            return response
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.FAILED_PRECONDITION:  # not caught up yet: retry
                return None
            raise

    promoted = wait_until(promote, 30, "MemberPromote of n4")
    assert [m.is_learner for m in promoted.members if m.name == "n4"] == [False]
    cluster.wait_for_status("n4", lambda s: not s.is_learner, 30, "a voter")
    # Four voters: the cluster survives one crash and keeps every write.
    leader = cluster.wait_for_leader()
    cluster.kill(leader)
    cluster.wait_for_leader(other_than=leader)
    cluster.put("after-promotion", "yes")
    assert cluster.get("after-promotion", via="n4").count == 1


def test_a_paused_leader_is_replaced_and_follows_when_resumed(cluster: Cluster) -> None:
    old = cluster.wait_for_leader()
    cluster.put("before-pause", "1")
    cluster.pause(old)  # SIGSTOP: its sockets stay open, it answers nothing
    new = cluster.wait_for_leader(other_than=old)
    cluster.put("during-pause", "2")
    cluster.resume(old)
    # The old leader learns of the new term, follows, and catches up.
    assert cluster.wait_for_leader() == new
    cluster.wait_caught_up([old])
    assert cluster.get("during-pause", serializable=True, via=old).count == 1
    assert cluster.terminate(old) == 0  # and it shuts down cleanly on SIGTERM


def test_a_founder_whose_bootstrap_never_reached_the_disk_bootstraps_again(make_cluster) -> None:  # type: ignore[no-untyped-def]
    """A founding member that crashed after writing its identity (member.json) but before
    its bootstrap entries were durable must bootstrap again when restarted. Coming back
    with an empty log and no bootstrap, it would adopt the leader's membership entries one
    at a time and could, after the first, think itself the only voter and elect itself
    (found by tests/sim, churn profile seed 2404)."""
    import json

    from coord_server.settings import cluster_id_of, member_id_of

    cluster = make_cluster(start=False)
    for name in ("n1", "n2"):
        cluster.start_node(name)
    wait_until(cluster.leader, timeout=60, what="a leader among n1 and n2")
    for i in range(20):
        cluster.put(f"before/{i}", "v")
    victim = cluster.nodes["n3"]
    founders = {name: node.address for name, node in cluster.nodes.items()}
    cluster_id = cluster_id_of(founders)
    victim.data_dir.mkdir(parents=True, exist_ok=True)
    (victim.data_dir / "member.json").write_text(json.dumps({
        "name": "n3", "member_id": member_id_of(cluster_id, "n3"), "cluster_id": cluster_id,
        "initial_cluster": founders,
    }))
    cluster.start_node("n3")
    cluster.wait_caught_up(["n3"])
    assert cluster.get("before/", prefix=True, serializable=True, via="n3").count == 20
    statuses = {name: cluster.status(name) for name in cluster.nodes}
    assert sum(1 for s in statuses.values() if s.role == LEADER) == 1
    assert len({s.header.raft_term for s in statuses.values()}) == 1
