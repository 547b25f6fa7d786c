"""etcd's MemberAdd and MemberPromote with etcdctl 3.4 and real coord-server processes:
``member add`` adds a voter (with etcd's strict reconfiguration check), ``member add
--learner`` a learner; each new member starts with the coord flags that stand for what
etcdctl prints (docs/etcd.md), names itself, and a learner is promoted once in sync.
A follower relays these calls to the leader."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.etcdserverpb import rpc_pb2_grpc as etcd_grpc
from coord.v1 import cluster_pb2, cluster_pb2_grpc
from tests.etcd.servers import client_env, require_etcdctl
from tests.integration.harness import Cluster, running_cluster, NodeProcess, free_ports, wait_until


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path / "c", 3) as c:
        yield c


def etcdctl(address: str, *args: str, ok: bool | None = True) -> subprocess.CompletedProcess[str]:
    """Run etcdctl; ``ok``: whether it must succeed (None: either)."""
    argv = [require_etcdctl(), "--endpoints", address, "--command-timeout", "20s", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=client_env())
    assert ok is None or (done.returncode == 0) == ok, done.stderr or done.stdout
    return done


def printed_environment(stdout: str) -> dict[str, str]:
    """The ETCD_* lines etcdctl prints after ``member add``."""
    return dict(re.findall(r'^(ETCD_[A-Z_]+)="(.*)"$', stdout, re.M))


def start_as_printed(cluster: Cluster, env: dict[str, str]) -> NodeProcess:
    """Start the member etcdctl described, with coord's equivalents of etcd's flags:
    ETCD_NAME is --name, ETCD_INITIAL_ADVERTISE_PEER_URLS is --listen (peers and clients
    share the port), and ETCD_INITIAL_CLUSTER_STATE=existing is --join through any
    other member of ETCD_INITIAL_CLUSTER that runs."""
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
    name = env["ETCD_NAME"]
    address = env["ETCD_INITIAL_ADVERTISE_PEER_URLS"].removeprefix("http://")
    others = [url for member, url in (m.split("=", 1) for m in env["ETCD_INITIAL_CLUSTER"].split(",")) if member != name]
    assert f"{name}=http://{address}" in env["ETCD_INITIAL_CLUSTER"].split(",")
    live = {node.address for node in cluster.nodes.values() if node.live}
    join = next(url.removeprefix("http://") for url in others if url.removeprefix("http://") in live)
    cluster.nodes[name] = cluster._node(name, address, ["--join", join])
    return cluster.start_node(name)


def members(address: str) -> list[etcd.Member]:
    with grpc.insecure_channel(address) as ch:
        return list(etcd_grpc.ClusterStub(ch).MemberList(etcd.MemberListRequest(linearizable=True), timeout=20).members)


def wait_named(address: str, member_id: int, name: str) -> etcd.Member:
    def named() -> etcd.Member | None:
        found = [m for m in members(address) if m.ID == member_id and m.name == name and m.clientURLs]
        return found[0] if found else None

    return wait_until(named, 60, f"member {name} named itself", interval=0.3)


def serves(address: str, key: bytes, value: bytes) -> bool:
    try:
        with grpc.insecure_channel(address) as ch:
            kvs = etcd_grpc.KVStub(ch).Range(etcd.RangeRequest(key=key, serializable=True), timeout=5).kvs
        return bool(kvs) and kvs[0].value == value
    except grpc.RpcError:
        return False


def added_id(stdout: str) -> int:
    match = re.search(r"Member\s+([0-9a-f]+) added to cluster", stdout)
    assert match, stdout
    return int(match.group(1), 16)


def test_member_add_adds_a_voter_that_starts_with_the_printed_flags(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    via = cluster.nodes[leader].address
    (port,) = free_ports(1)
    done = etcdctl(via, "member", "add", "n4", f"--peer-urls=http://127.0.0.1:{port}")
    n4 = added_id(done.stdout)
    env = printed_environment(done.stdout)
    assert env["ETCD_NAME"] == "n4" and env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == f"http://127.0.0.1:{port}"
    new = next(m for m in members(via) if m.ID == n4)
    assert not new.isLearner and new.name == "" and list(new.peerURLs) == [f"http://127.0.0.1:{port}"]

    # etcd's strict reconfiguration check: a voter that never started makes the
    # cluster unhealthy for another voter (a learner is still welcome).
    (spare,) = free_ports(1)
    refused = etcdctl(via, "member", "add", "n5", f"--peer-urls=http://127.0.0.1:{spare}", ok=False)
    assert "etcdserver: unhealthy cluster" in refused.stderr

    # A founding follower fails before n4 starts: 2 of 4 voters run, nothing commits
    # until n4 does. n4 starts anyway (joining needs no commit), and the cluster commits
    # again with its vote; then n4 names itself.
    follower = next(n for n in ("n1", "n2", "n3") if n != leader)
    cluster.terminate(follower)
    start_as_printed(cluster, env)
    with grpc.insecure_channel(via) as ch:
        etcd_grpc.KVStub(ch).Put(etcd.PutRequest(key=b"with-n4", value=b"1"), timeout=60)
    wait_until(lambda: serves(cluster.nodes["n4"].address, b"with-n4", b"1"), 60, "n4 caught up", interval=0.3)
    named = wait_named(via, n4, "n4")
    assert list(named.clientURLs) == [f"http://{cluster.nodes['n4'].address}"] and not named.isLearner
    status = cluster.status("n4", timeout=10)
    assert status.is_learner is False and status.header.member_id == n4
    cluster.start_node(follower)


def test_member_add_learner_then_promote_through_a_follower(cluster: Cluster) -> None:
    """A follower relays etcd's membership calls to the leader, as etcd's do."""
    leader = cluster.wait_for_leader()
    via = cluster.nodes[next(n for n in cluster.nodes if n != leader)].address
    (port,) = free_ports(1)
    done = etcdctl(via, "member", "add", "n4", "--learner", f"--peer-urls=http://127.0.0.1:{port}")
    n4 = added_id(done.stdout)
    assert next(m for m in members(via) if m.ID == n4).isLearner
    refused = etcdctl(via, "member", "promote", f"{n4:x}", ok=False)
    assert "etcdserver: can only promote a learner member which is in sync with leader" in refused.stderr

    start_as_printed(cluster, printed_environment(done.stdout))
    assert wait_named(via, n4, "n4").isLearner

    def promoted() -> bool:
        return etcdctl(via, "member", "promote", f"{n4:x}", ok=None).returncode == 0

    wait_until(promoted, 60, "the learner was promoted once in sync", interval=1)
    assert not next(m for m in members(via) if m.ID == n4).isLearner
    again = etcdctl(via, "member", "promote", f"{n4:x}", ok=False)
    assert "etcdserver: can only promote a learner member" in again.stderr


def test_a_one_member_cluster_refuses_a_voter_but_takes_a_learner(tmp_path: Path) -> None:
    """etcd lets a one-member cluster add a voter, which then must start before anything
    commits again, its own removal included; coord refuses (docs/etcd.md)."""
    c = Cluster(tmp_path / "one", 1)
    c.start()
    try:
        via = c.nodes[c.wait_for_leader()].address
        ports = free_ports(2)
        refused = etcdctl(via, "member", "add", "n2", f"--peer-urls=http://127.0.0.1:{ports[0]}", ok=False)
        assert "etcdserver: re-configuration failed due to not enough started members" in refused.stderr
        etcdctl(via, "member", "add", "n2", "--learner", f"--peer-urls=http://127.0.0.1:{ports[1]}")
        with grpc.insecure_channel(via) as ch:
            listed = cluster_pb2_grpc.ClusterStub(ch).MemberList(cluster_pb2.ClusterMemberListRequest(), timeout=20)
        assert sorted(m.is_learner for m in listed.members) == [False, True]
    finally:
        c.stop_all()
