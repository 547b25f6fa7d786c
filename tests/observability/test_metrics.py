"""The metrics endpoint of real coord-server processes (--metrics-listen), scraped while
the cluster serves: counters move under load, errors show up by method and code, the
role gauges name exactly one leader, leader changes count a transfer, and every metric
the Grafana dashboard queries exists."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from coord.v1 import cluster_pb2, cluster_pb2_grpc, kv_pb2
from coord_client import Client
from tests.integration.harness import Cluster, wait_until

from tests.observability.scrape import Samples, scrape, scrape_text, total, value, with_metrics

pytestmark = pytest.mark.slow

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "coord-dashboard.json"


@pytest.fixture
def metered(make_cluster: Callable[..., Cluster]) -> tuple[Cluster, dict[str, str]]:
    cluster = make_cluster(start=False)
    addresses = with_metrics(cluster)
    cluster.start()
    cluster.wait_for_leader()
    return cluster, addresses


class Writer:
    """Puts through the real client from a thread until stopped."""

    def __init__(self, cluster: Cluster) -> None:
        self.client = Client([n.address for n in cluster.nodes.values()], timeout=20)
        self.stop = threading.Event()
        self.done = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.client.put(f"load/{self.done % 50}", f"v{self.done}")
            self.done += 1

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.client.close()


def scrape_all(addresses: dict[str, str]) -> dict[str, Samples]:
    return {name: scrape(address) for name, address in addresses.items()}


def test_counters_move_under_load_and_gauges_agree(metered: tuple[Cluster, dict[str, str]]) -> None:
    cluster, addresses = metered
    leader = cluster.wait_for_leader()
    followers = [n for n in addresses if n != leader]
    before = scrape(addresses[leader])
    with Writer(cluster) as writer:
        wait_until(lambda: writer.done >= 20, 60, "20 puts through the client")
        during = scrape(addresses[leader])
        assert value(during, "coord_proposals_committed_total") >= value(before, "coord_proposals_committed_total") + 20
        # Still moving between two scrapes taken while the load runs.
        wait_until(
            lambda: value(scrape(addresses[leader]), "coord_proposals_committed_total")
            >= value(during, "coord_proposals_committed_total") + 20,
            60, "the committed counter to move again during the load",
        )
    assert writer.done >= 40
    cluster.wait_caught_up()
    after = scrape_all(addresses)
    lead = after[leader]
    # Exactly one leader, and the role gauge says which.
    leaders = [n for n, s in after.items() if value(s, "coord_raft_role", role="leader") == 1]
    assert leaders == [leader]
    assert [n for n, s in after.items() if value(s, "coord_is_leader") == 1] == [leader]
    for name in followers:
        assert value(after[name], "coord_raft_role", role="follower") == 1
    terms = {value(s, "coord_raft_term") for s in after.values()}
    assert len(terms) == 1 and terms.pop() >= 1
    # Every member applied the load; nothing is left unapplied once caught up.
    for name, s in after.items():
        assert value(s, "coord_raft_applied_index") >= value(lead, "coord_raft_commit_index") - 5, name
        assert value(s, "coord_apply_lag_entries") == value(s, "coord_raft_commit_index") - value(s, "coord_raft_applied_index")
        assert value(s, "coord_proposals_committed_total") >= 40, name
        assert value(s, "coord_disk_wal_fsync_duration_seconds_count") > 0, name
        assert value(s, "coord_log_size_bytes") > 0, name
        header = cluster.status(name).header
        assert value(s, "coord_member_info", name=name, member_id=f"{header.member_id:x}", cluster_id=f"{header.cluster_id:x}") == 1
    # Commit latency is the leader's: one sample per proposal batch, each under a minute.
    batches = value(lead, "coord_commit_duration_seconds_count")
    assert 1 <= batches <= value(lead, "coord_proposals_committed_total")
    assert value(lead, "coord_commit_duration_seconds_bucket", le="+Inf") == batches
    # The leader measured heartbeat round trips to each follower, labelled by name.
    for name in followers:
        assert value(lead, "coord_peer_round_trip_seconds_count", peer=name) > 0, name
    # The Put calls of the load, by method and code.
    assert total(lead, "coord_grpc_requests_total", code="OK") > 0


def test_error_codes_are_counted_and_the_cluster_keeps_serving(metered: tuple[Cluster, dict[str, str]]) -> None:
    cluster, addresses = metered
    name = next(iter(addresses))
    method = "/coord.v1.KV/Put"
    before = value(scrape(addresses[name]), "coord_grpc_requests_total", method=method, code="INVALID_ARGUMENT")
    with pytest.raises(grpc.RpcError) as caught:
        cluster.kv(name).Put(kv_pb2.PutRequest(key=b"", value=b"v"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A call is counted when it ends (request_context.py), which may come just after the
    # client has its answer: wait for the count rather than read it once.
    wait_until(
        lambda: value(scrape(addresses[name]), "coord_grpc_requests_total", method=method, code="INVALID_ARGUMENT")
        == before + 1,
        10,
        "the refused Put to be counted",
    )
    assert value(scrape(addresses[name]), "coord_grpc_requests_total", method=method, code="INVALID_ARGUMENT") == before + 1
    cluster.put("still", "serving")
    assert value(scrape(addresses[name]), "coord_grpc_requests_total", method="/coord.v1.Cluster/Status", code="OK") > 0
    # The endpoint itself refuses what it does not serve, and keeps serving.
    for path, status in (("/nothing", 404),):
        with pytest.raises(urllib.error.HTTPError) as http_error:
            scrape_text(addresses[name], path)
        assert http_error.value.code == status
    text = scrape_text(addresses[name])
    assert "coord_raft_term" in text
    assert "coord_event_loop_longest_stall_seconds" in text and "coord_event_loop_lag_seconds_bucket" in text


def test_leader_changes_count_a_transfer(metered: tuple[Cluster, dict[str, str]]) -> None:
    cluster, addresses = metered
    leader = cluster.wait_for_leader()
    before = scrape_all(addresses)
    for s in before.values():
        assert value(s, "coord_leader_changes_total") >= 1  # the first leader counts
    target = next(n for n in addresses if n != leader)
    target_id = cluster.status(target).header.member_id
    stub = cluster.stub(leader, cluster_pb2_grpc.ClusterStub)
    stub.TransferLeadership(cluster_pb2.ClusterTransferLeadershipRequest(target_id=target_id), timeout=20)
    assert cluster.wait_for_leader(other_than=leader) == target

    def all_counted() -> bool:
        now = scrape_all(addresses)
        return all(
            value(now[n], "coord_leader_changes_total") >= value(before[n], "coord_leader_changes_total") + 1
            for n in addresses
        )

    wait_until(all_counted, 30, "every member to count the leader change")
    now = scrape_all(addresses)
    assert [n for n, s in now.items() if value(s, "coord_is_leader") == 1] == [target]


def test_leases_locks_and_watchers(metered: tuple[Cluster, dict[str, str]]) -> None:
    cluster, addresses = metered
    leader = cluster.wait_for_leader()
    endpoint = cluster.nodes[leader].address
    with Client([endpoint], timeout=20) as first, Client([endpoint], timeout=20) as second:
        held = first.lock("metrics-lock", ttl=10)
        assert held.acquire(timeout=20)
        waiter = second.lock("metrics-lock", ttl=10)
        acquired: list[bool] = []
        thread = threading.Thread(target=lambda: acquired.append(waiter.acquire(timeout=60)), daemon=True)
        thread.start()
        watch = first.watch("watched/", prefix=True).start()

        def gauges_show_everything() -> bool:
            s = scrape(addresses[leader])
            seen = {g: value(s, f"coord_{g}") for g in ("leases", "locks_held", "locks_waiting", "watchers")}
            assert seen == {"leases": 2, "locks_held": 1, "locks_waiting": 1, "watchers": 1}, seen
            return True

        wait_until(gauges_show_everything, 30, "2 leases, 1 lock held, 1 waiting, a watcher")
        held.release(timeout=20)
        thread.join(timeout=60)
        assert acquired == [True]
        wait_until(
            lambda: (lambda s: value(s, "coord_locks_held") == 1 and value(s, "coord_locks_waiting") == 0)(scrape(addresses[leader])),
            30, "the waiter to hold the lock",
        )
        watch.cancel()
        waiter.release(timeout=20)
    wait_until(lambda: value(scrape(addresses[leader]), "coord_locks_held") == 0, 30, "no lock held")


def dashboard_metric_names() -> set[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, item in node.items():
                if key in ("expr", "query") and isinstance(item, str):
                    exprs.append(item)
                else:
                    walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(board)
    assert exprs, "the dashboard queries nothing"
    return {name for expr in exprs for name in re.findall(r"\bcoord_[a-z_]+", expr)}


def test_every_dashboard_metric_exists(metered: tuple[Cluster, dict[str, str]]) -> None:
    cluster, addresses = metered
    cluster.put("k", "v")
    cluster.wait_caught_up()
    leader = cluster.wait_for_leader()
    # The leader's peer round-trip histogram fills with the first heartbeat answers.
    wait_until(lambda: total(scrape(addresses[leader]), "coord_peer_round_trip_seconds_count") > 0, 30, "a round trip")
    exposed = {name for s in scrape_all(addresses).values() for name, _ in s}
    missing = sorted(dashboard_metric_names() - exposed)
    assert not missing, f"the dashboard queries metrics no member exposes: {missing}"


def test_snapshots_are_counted_and_sized(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(start=False, options=("--snapshot-entries", "100"))
    addresses = with_metrics(cluster)
    cluster.start()
    cluster.wait_for_leader()
    assert all(value(s, "coord_snapshots_total", origin="local") == 0 for s in scrape_all(addresses).values())
    with Client([n.address for n in cluster.nodes.values()], timeout=20) as client:
        for i in range(150):
            client.put(f"snap/{i}", "x" * 100)
    cluster.wait_caught_up()

    def every_member_snapshotted() -> bool:
        for name, s in scrape_all(addresses).items():
            assert value(s, "coord_snapshots_total", origin="local") >= 1, name
            assert value(s, "coord_snapshot_size_bytes") > 0, name
        return True

    wait_until(every_member_snapshotted, 30, "a snapshot on every member")
    # A follower that missed more than the log keeps catches up from the leader's snapshot.
    leader = cluster.wait_for_leader()
    follower = next(n for n in addresses if n != leader)
    cluster.kill(follower)
    with Client([cluster.nodes[leader].address], timeout=20) as client:
        for i in range(300):
            client.put(f"snap/{i}", "y" * 100)
    cluster.start_node(follower)
    cluster.wait_caught_up()
    wait_until(
        lambda: value(scrape(addresses[follower]), "coord_snapshots_total", origin="leader") >= 1,
        30, f"{follower} to count the snapshot it installed from the leader",
    )
    # One snapshot file per member, and the size reported is that file's.
    def one_file_each() -> bool:
        for name, s in scrape_all(addresses).items():
            snap_dir = cluster.nodes[name].data_dir / "snap"
            files = [p for p in snap_dir.iterdir() if p.suffix == ".snap"]
            if len(files) != 1 or value(s, "coord_snapshot_size_bytes") != files[0].stat().st_size:
                return False
        return True

    wait_until(one_file_each, 30, "one snapshot file per member, its size reported")
