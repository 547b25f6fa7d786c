"""etcd's MemberUpdate over coord.v1 Cluster.MemberUpdate: etcdctl 3.4 moves a member's
peer URL, the member restarts on the new address, and the others replicate to it there."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.etcdserverpb import rpc_pb2_grpc as etcd_grpc
from tests.etcd.servers import client_env, require_etcdctl
from tests.integration.harness import Cluster, running_cluster, free_ports


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path / "c", 3) as c:
        yield c


def etcdctl(address: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [require_etcdctl(), "--endpoints", address, "--command-timeout", "20s", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=client_env())
    assert (done.returncode == 0) == ok, done.stderr or done.stdout
    return done


def test_member_update_moves_a_members_peer_address(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    mover = next(name for name in cluster.nodes if name != leader)
    via = cluster.nodes[leader].address
    with grpc.insecure_channel(via) as ch:
        members = etcd_grpc.ClusterStub(ch).MemberList(etcd.MemberListRequest(), timeout=20).members
    member = next(m for m in members if m.name == mover)
    other = next(m for m in members if m.name not in (mover,))
    (new_port,) = free_ports(1)
    new_address = f"127.0.0.1:{new_port}"

    refused = etcdctl(via, "member", "update", f"{member.ID:x}", f"--peer-urls={other.peerURLs[0]}", ok=False)
    assert "etcdserver: Peer URLs already exists" in refused.stderr
    done = etcdctl(via, "member", "update", f"{member.ID:x}", f"--peer-urls=http://{new_address}")
    assert f"Member {member.ID:16x} updated" in done.stdout
    with grpc.insecure_channel(via) as ch:
        after = etcd_grpc.ClusterStub(ch).MemberList(etcd.MemberListRequest(), timeout=20).members
    assert [list(m.peerURLs) for m in after if m.ID == member.ID] == [[f"http://{new_address}"]]

    # The member restarts on its new address; the leader replicates to it there.
    cluster.terminate(mover)
    node = cluster.nodes[mover]
    node.args[node.args.index("--listen") + 1] = new_address
    node.address = new_address
    cluster._drop_channel(mover)
    with grpc.insecure_channel(via) as ch:
        etcd_grpc.KVStub(ch).Put(etcd.PutRequest(key=b"moved", value=b"yes"), timeout=20)
    cluster.start_node(mover)
    deadline = time.monotonic() + 60
    value = None
    with grpc.insecure_channel(new_address) as ch:
        while time.monotonic() < deadline and value != b"yes":
            try:
                kvs = etcd_grpc.KVStub(ch).Range(etcd.RangeRequest(key=b"moved", serializable=True), timeout=5).kvs
                value = kvs[0].value if kvs else None
            except grpc.RpcError:
                pass  # not serving yet
            if value != b"yes":
                time.sleep(0.3)
    assert value == b"yes", cluster.describe()
