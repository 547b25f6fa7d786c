"""No way around auth through the peer service (issue 16, point 1), on real coord-server
processes: a 3-member cluster with auth on and one port per member (clients and peers
share it), the peer secret on every member.

Before the peer secret, anyone could send the Raft service a forwarded PROPOSE of a
Put, and Raft.Send with a wrong cluster id answered with this cluster's id.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from coord.raft.v1 import command_pb2, raft_pb2, raft_pb2_grpc
from coord.v1 import kv_pb2
from tests.integration.harness import Cluster

from .conftest import PEER_SECRET, ROOT, write_auth_file, write_peer_secret

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(module_cluster) -> Cluster:  # type: ignore[no-untyped-def]
    return module_cluster(3, auth=True)  # type: ignore[no-any-return]


def forward_put(address: str, cluster_id: int, key: bytes, metadata: tuple[tuple[str, str], ...]) -> tuple[grpc.StatusCode, str, list[raft_pb2.ForwardResponse]]:
    """What a stranger would send: a forwarded PROPOSE of a Put."""
    command = command_pb2.Command(put=kv_pb2.PutRequest(key=key, value=b"owned"))
    request = raft_pb2.ForwardRequest(
        cluster_id=cluster_id, kind=raft_pb2.FORWARD_KIND_PROPOSE, payload=command.SerializeToString(), id=1,
        timeout_ms=5000,
    )
    with grpc.insecure_channel(address) as channel:
        try:
            answers = list(raft_pb2_grpc.RaftStub(channel).Forward(iter([request]), timeout=10, metadata=metadata))
        except grpc.RpcError as err:
            return err.code(), err.details() or "", []
    return grpc.StatusCode.OK, "", answers


def test_an_unauthenticated_forwarded_put_is_refused_everywhere(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    cluster_id = cluster.status(leader).header.cluster_id
    for name in cluster.nodes:
        for metadata in ((), (("coord-peer-secret", "not-the-secret-of-this-cluster"),),
                         (("authorization", "Bearer root-token-0123456789"),)):
            code, details, _ = forward_put(cluster.nodes[name].address, cluster_id, b"owned/" + name.encode(), metadata)
            assert code == grpc.StatusCode.UNAUTHENTICATED, (name, metadata, code, details)
            assert f"{cluster_id:x}" not in details and str(cluster_id) not in details
    got = cluster.get(b"owned/", prefix=True)
    assert list(got.kvs) == []
    # The secret is what opens it: a member's call goes through (so the refusals above
    # are the guard's, not a malformed request's).
    code, details, answers = forward_put(
        cluster.nodes[leader].address, cluster_id, b"member/forwarded", (("coord-peer-secret", PEER_SECRET),)
    )
    assert code == grpc.StatusCode.OK and [a.code for a in answers] == [0], (code, details, answers)
    assert [kv.value for kv in cluster.get(b"member/forwarded").kvs] == [b"owned"]


def test_send_with_another_cluster_id_names_no_id(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    status = cluster.status(leader)
    envelope = raft_pb2.RaftEnvelope(cluster_id=status.header.cluster_id ^ 1)
    answers = {}
    for label, metadata in (("stranger", ()), ("member of another cluster", (("coord-peer-secret", PEER_SECRET),))):
        with grpc.insecure_channel(cluster.nodes[leader].address) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                raft_pb2_grpc.RaftStub(channel).Send(iter([envelope]), timeout=10, metadata=metadata)
        details = refused.value.details() or ""
        answers[label] = refused.value.code()
        for secret_id in (status.header.cluster_id, status.header.cluster_id ^ 1, status.header.member_id):
            assert f"{secret_id:x}" not in details and str(secret_id) not in details, details
    assert answers == {"stranger": grpc.StatusCode.UNAUTHENTICATED,
                       "member of another cluster": grpc.StatusCode.FAILED_PRECONDITION}


def run_server(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coord_server.cli", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:1", *flags],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )


def test_auth_with_open_peer_rpcs_refuses_to_start(tmp_path: Path) -> None:
    auth = str(write_auth_file(tmp_path))
    one_port = run_server(tmp_path, "--auth-file", auth)
    assert one_port.returncode == 2
    assert "peer service on the client port would accept anyone" in one_port.stderr
    assert "peer_secret_file" in one_port.stderr and "peer mutual TLS" in one_port.stderr
    plain_peer_port = run_server(tmp_path, "--auth-file", auth, "--peer-listen", "127.0.0.1:2")
    assert plain_peer_port.returncode == 2 and "the peer port 127.0.0.1:2 would accept anyone" in plain_peer_port.stderr
    assert not (tmp_path / "data").exists()


def test_a_weak_or_exposed_peer_secret_refuses_to_start(tmp_path: Path) -> None:
    short = write_peer_secret(tmp_path, "short")
    assert "at least 16" in run_server(tmp_path, "--peer-secret-file", str(short)).stderr
    exposed = write_peer_secret(tmp_path, PEER_SECRET)
    exposed.chmod(0o644)
    assert "chmod 600" in run_server(tmp_path, "--peer-secret-file", str(exposed)).stderr
    assert "cannot read" in run_server(tmp_path, "--peer-secret-file", str(tmp_path / "missing")).stderr
