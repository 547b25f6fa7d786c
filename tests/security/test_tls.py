"""TLS end to end on real coord-server processes (docs/security.md): a 3-node cluster
serving clients with TLS (client certificates required) and peers with mutual TLS on
separate ports, with certificates made by tools/certs.py, the code behind `make certs`.

One cluster serves the whole module (starting one costs seconds on the busy machine);
no test here stops a member of it. Every refusal is checked with the cluster serving
afterwards."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from coord.raft.v1 import raft_pb2, raft_pb2_grpc
from coord.v1 import cluster_pb2, cluster_pb2_grpc, kv_pb2, kv_pb2_grpc
from coord_client import AsyncClient, Client, TLSConfig, errors
from coord_server.raft import Message, MessageType
from coord_server.transport.codec import message_to_pb
from tests.integration.harness import free_ports, running_cluster, wait_until
from tests.security.tls_cluster import ROOT, TLSCluster, channel_credentials, make_certs, server_tls_flags

pytestmark = pytest.mark.timeout(120)

COORDCTL = str(ROOT / ".venv" / "bin" / "coordctl")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates of another CA, with the same names: what a stranger could make."""
    return make_certs(tmp_path_factory.mktemp("other-certs"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[TLSCluster]:
    with running_cluster(tmp_path_factory.mktemp("tls-cluster"), 3, cluster_class=TLSCluster, certs=certs, leader_timeout=60) as cluster:
        assert isinstance(cluster, TLSCluster)
        yield cluster


def tls(certs: Path) -> TLSConfig:
    return TLSConfig(ca_file=str(certs / "ca.pem"), cert_file=str(certs / "client.pem"), key_file=str(certs / "client-key.pem"))


def assert_serving(cluster: TLSCluster, certs: Path, key: str) -> None:
    with Client(cluster.endpoints, tls=tls(certs), timeout=20) as client:
        client.put(key, "still serving")
        got = client.get(key)
        assert got is not None and got.value == b"still serving"


def test_cluster_serves_the_client_library_over_tls(cluster: TLSCluster, certs: Path) -> None:
    with Client(cluster.endpoints, tls=tls(certs), timeout=20) as client:
        client.put("tls/greeting", "hello")
        got = client.get("tls/greeting")
        assert got is not None and got.value == b"hello"
        with client.lock("tls/lock", ttl=5) as held:
            first = held.fencing_token
        with client.lock("tls/lock", ttl=5) as held:
            assert held.fencing_token > first

    async def async_round() -> bytes:
        async with AsyncClient(cluster.endpoints, tls=tls(certs), timeout=20) as aclient:
            await aclient.put("tls/async", "yes")
            kv = await aclient.get("tls/async")
            assert kv is not None
            return kv.value

    assert asyncio.run(async_round()) == b"yes"


def test_membership_keeps_client_and_peer_addresses_apart(cluster: TLSCluster, certs: Path) -> None:
    leader = cluster.wait_for_leader()
    with Client(cluster.endpoints, tls=tls(certs), timeout=20) as client:
        members = {m.name: m for m in client.members()}
    assert {n: m.client_address for n, m in members.items()} == cluster.client_addresses
    assert {n: m.peer_address for n, m in members.items()} == cluster.peer_addresses
    # A follower refusing a leader-only call points the client at the leader's CLIENT port.
    follower = next(n for n in cluster.nodes if n != leader)
    stub = cluster_pb2_grpc.ClusterStub(cluster.channel(follower))
    with pytest.raises(grpc.RpcError) as refused:
        stub.MemberPromote(cluster_pb2.ClusterMemberPromoteRequest(id=12345), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    hint = dict(refused.value.trailing_metadata() or ()).get("coord-leader")
    assert hint == cluster.client_addresses[leader]


def test_follower_forwards_writes_to_the_leader_over_mutual_tls(cluster: TLSCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = next(n for n in cluster.nodes if n != leader)
    # A plain stub follows no hints: the follower itself must relay the write to the
    # leader (Raft.Forward over the mutual-TLS peer channel).
    kv = kv_pb2_grpc.KVStub(cluster.channel(follower))
    response = kv.Put(kv_pb2.PutRequest(key=b"tls/forwarded", value=b"via follower"), timeout=20)
    assert response.header.revision > 0
    got = kv.Range(kv_pb2.RangeRequest(key=b"tls/forwarded"), timeout=20)
    assert [item.value for item in got.kvs] == [b"via follower"]


def test_coordctl_with_flags_and_environment(cluster: TLSCluster, certs: Path) -> None:
    endpoints = ",".join(cluster.endpoints)
    flags = ["--cacert", str(certs / "ca.pem"), "--cert", str(certs / "client.pem"), "--key", str(certs / "client-key.pem")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORD_")}
    put = subprocess.run([COORDCTL, "--endpoints", endpoints, *flags, "put", "tls/ctl", "from coordctl"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert put.returncode == 0, put.stderr
    tls_env = {**env, "COORD_ENDPOINTS": endpoints, "COORD_CACERT": str(certs / "ca.pem"),
               "COORD_CERT": str(certs / "client.pem"), "COORD_KEY": str(certs / "client-key.pem")}
    get = subprocess.run([COORDCTL, "get", "tls/ctl", "--print-value-only"], env=tls_env, capture_output=True, text=True, timeout=60)
    assert get.returncode == 0, get.stderr
    assert get.stdout.strip() == "from coordctl"
    locked = subprocess.run([COORDCTL, "lock", "tls/ctl-lock", "--", sys.executable, "-c", "print('under the lock')"],
                            env=tls_env, capture_output=True, text=True, timeout=60)
    assert locked.returncode == 0, locked.stderr
    assert "under the lock" in locked.stdout
    status = subprocess.run([COORDCTL, "status"], env=tls_env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("leader") >= 1


REFUSAL_DEADLINE = 5.0
"""Long enough for a handshake to fail and be reported on a loaded machine (with less, a
call may end while its channel is still connecting: DeadlineExceeded, no reason)."""


def _refused(client_tls: TLSConfig | None, cluster: TLSCluster, timeout: float = REFUSAL_DEADLINE) -> tuple[errors.CoordError, float]:
    started = time.monotonic()
    with Client(cluster.endpoints, tls=client_tls, timeout=timeout) as client:
        with pytest.raises(errors.CoordError) as refused:
            client.get("tls/greeting")
    return refused.value, time.monotonic() - started


def test_client_with_the_wrong_ca_is_refused_within_its_deadline(cluster: TLSCluster, certs: Path, other_certs: Path) -> None:
    err, took = _refused(TLSConfig(ca_file=str(other_certs / "ca.pem"), cert_file=str(other_certs / "client.pem"),
                                   key_file=str(other_certs / "client-key.pem")), cluster)
    assert isinstance(err, errors.Unavailable)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err) and "not signed by the CA given" in str(err)
    assert took < REFUSAL_DEADLINE + 3.0, f"refused only after {took:.1f}s with a {REFUSAL_DEADLINE}s deadline"
    assert_serving(cluster, certs, "tls/after-wrong-ca")


def test_client_without_tls_or_without_a_client_certificate_is_refused(cluster: TLSCluster, certs: Path) -> None:
    err, took = _refused(None, cluster)
    assert isinstance(err, errors.Unavailable)
    assert "serve TLS only" in str(err)
    assert took < REFUSAL_DEADLINE + 3.0
    err, took = _refused(TLSConfig(ca_file=str(certs / "ca.pem")), cluster)
    assert isinstance(err, errors.Unavailable)
    assert "client certificate" in str(err)
    assert took < REFUSAL_DEADLINE + 3.0
    assert_serving(cluster, certs, "tls/after-plain")


def test_peer_port_accepts_only_peer_certificates_of_the_cluster(cluster: TLSCluster, certs: Path, other_certs: Path) -> None:
    leader = cluster.wait_for_leader()
    target = next(n for n in cluster.nodes if n != leader)
    status = cluster.status(target)
    term_before = status.header.raft_term
    # A message that would disrupt the target if accepted: an election at a far higher term.
    vote = Message(MessageType.VOTE, to=status.header.member_id, from_=0x5EED, term=term_before + 1000,
                   index=10**9, log_term=term_before + 999)
    envelope = raft_pb2.RaftEnvelope(cluster_id=status.header.cluster_id, messages=[message_to_pb(vote)])
    peer_address = cluster.peer_addresses[target]

    def send(channel: grpc.Channel, env: raft_pb2.RaftEnvelope = envelope) -> grpc.StatusCode:
        with channel:
            try:
                raft_pb2_grpc.RaftStub(channel).Send(iter([env]), timeout=5)
            except grpc.RpcError as err:
                return err.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    # Another CA's peer certificate, however named, does not get through the handshake.
    stranger = channel_credentials(other_certs, "n1", ca=certs / "ca.pem")
    assert send(grpc.secure_channel(peer_address, stranger)) == grpc.StatusCode.UNAVAILABLE
    # Neither does a TLS client without a certificate, nor a plain one.
    no_cert = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.pem").read_bytes())
    assert send(grpc.secure_channel(peer_address, no_cert)) == grpc.StatusCode.UNAVAILABLE
    assert send(grpc.insecure_channel(peer_address)) == grpc.StatusCode.UNAVAILABLE
    # A genuine peer certificate with another cluster's id: the cluster-id check refuses
    # it, without naming either cluster's id.
    foreign = raft_pb2.RaftEnvelope(cluster_id=status.header.cluster_id ^ 1, messages=[message_to_pb(vote)])
    genuine = channel_credentials(certs, "n1")
    n1 = (("coord-peer-member", f"{member_ids(cluster)['n1']:x}"),)
    with grpc.secure_channel(peer_address, genuine) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            raft_pb2_grpc.RaftStub(channel).Send(iter([foreign]), timeout=5, metadata=n1)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"{status.header.cluster_id:x}" not in (refused.value.details() or "")
    # The peer port serves Raft and health only, the client port no Raft.
    with grpc.secure_channel(peer_address, genuine) as channel:
        with pytest.raises(grpc.RpcError) as not_here:
            kv_pb2_grpc.KVStub(channel).Range(kv_pb2.RangeRequest(key=b"x"), timeout=5)
        assert not_here.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as no_raft:
        raft_pb2_grpc.RaftStub(cluster.channel(target)).Send(iter([envelope]), timeout=5)
    assert no_raft.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert cluster.status(target).header.raft_term < term_before + 1000
    assert_serving(cluster, certs, "tls/after-stranger")


def member_ids(cluster: TLSCluster) -> dict[str, int]:
    with Client(cluster.endpoints, tls=tls(cluster.certs), timeout=20) as client:
        return {m.name: m.id for m in client.members()}


def test_a_peer_certificate_speaks_only_for_the_member_it_names(cluster: TLSCluster, certs: Path) -> None:
    """A valid certificate of the cluster's CA is not enough: the member a peer call
    claims to be (``coord-peer-member``) must be named by its certificate, and every
    message it sends must come from that member."""
    leader = cluster.wait_for_leader()
    target = next(n for n in cluster.nodes if n != leader)
    sender = next(n for n in cluster.nodes if n not in (leader, target))
    ids = member_ids(cluster)
    status = cluster.status(target)
    term_before = status.header.raft_term

    def vote_from(member: str) -> raft_pb2.RaftEnvelope:
        m = Message(MessageType.VOTE, to=ids[target], from_=ids[member], term=term_before + 1000,
                    index=10**9, log_term=term_before + 999)
        return raft_pb2.RaftEnvelope(cluster_id=status.header.cluster_id, messages=[message_to_pb(m)])

    def send(cert: str, claim: str | None, envelope: raft_pb2.RaftEnvelope) -> tuple[grpc.StatusCode, str]:
        metadata = (("coord-peer-member", f"{ids[claim]:x}"),) if claim else ()
        with grpc.secure_channel(cluster.peer_addresses[target], channel_credentials(certs, cert)) as channel:
            try:
                raft_pb2_grpc.RaftStub(channel).Send(iter([envelope]), timeout=5, metadata=metadata)
            except grpc.RpcError as err:
                return err.code(), err.details() or ""
        return grpc.StatusCode.OK, ""

    # The leader's valid certificate claiming to be another member: refused, no id named.
    code, details = send(leader, sender, vote_from(sender))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert not any(f"{i:x}" in details for i in (*ids.values(), status.header.cluster_id))
    # No claim, or the CA's client certificate (it names no member): refused.
    assert send(sender, None, vote_from(sender))[0] == grpc.StatusCode.UNAUTHENTICATED
    assert send("client", sender, vote_from(sender))[0] == grpc.StatusCode.UNAUTHENTICATED
    # Its own name, but a message from another member: refused.
    assert send(sender, sender, vote_from(leader))[0] == grpc.StatusCode.PERMISSION_DENIED
    assert cluster.status(target).header.raft_term < term_before + 1000
    assert_serving(cluster, certs, "tls/after-impersonation")


def test_member_with_another_cas_certificate_cannot_join(cluster: TLSCluster, certs: Path, other_certs: Path) -> None:
    leader = cluster.wait_for_leader()
    client_port, peer_port = free_ports(2)
    rogue = cluster._node("rogue", f"127.0.0.1:{client_port}", [
        "--join", cluster.client_addresses[leader], "--peer-listen", f"127.0.0.1:{peer_port}",
        *server_tls_flags(other_certs, "n1"),
    ])
    cluster.nodes["rogue"] = rogue
    try:
        cluster.start_node("rogue")
        wait_until(
            lambda: "CERTIFICATE_VERIFY_FAILED" in rogue.log_path.read_text(errors="replace")
            and "joining through" in rogue.log_path.read_text(errors="replace"),
            60, "the rogue member to report its refused join",
        )
        with Client(cluster.endpoints, tls=tls(certs), timeout=20) as client:
            assert sorted(m.name for m in client.members()) == ["n1", "n2", "n3"]
    finally:
        if rogue.running:
            cluster.kill("rogue")
        del cluster.nodes["rogue"]
    assert_serving(cluster, certs, "tls/after-rogue")


def test_a_member_with_tls_joins_as_a_learner(cluster: TLSCluster, certs: Path) -> None:
    """The join path itself works over TLS: a new member with a certificate of the CA
    joins through a client port and catches up over mutual TLS."""
    leader = cluster.wait_for_leader()
    names = ("n4",)
    make_certs(certs, names)  # keeps the CA, adds n4's certificate
    client_port, peer_port = free_ports(2)
    node = cluster._node("n4", f"127.0.0.1:{client_port}", [
        "--join", cluster.client_addresses[leader], "--peer-listen", f"127.0.0.1:{peer_port}",
        *server_tls_flags(certs, "n4"),
    ])
    cluster.nodes["n4"] = node
    try:
        cluster.start_node("n4")
        with Client(cluster.endpoints, tls=tls(certs), timeout=20) as client:
            client.put("tls/before-n4", "replicated")

            def joined() -> bool:
                members = {m.name: m for m in client.members()}
                n4 = members.get("n4")
                return n4 is not None and n4.client_address == node.address and n4.peer_address == f"127.0.0.1:{peer_port}"

            wait_until(joined, 60, "n4 in the member list with its client and peer addresses")
        with grpc.secure_channel(node.address, channel_credentials(certs)) as channel:
            kv = kv_pb2_grpc.KVStub(channel)
            wait_until(
                lambda: [i.value for i in kv.Range(kv_pb2.RangeRequest(key=b"tls/before-n4", serializable=True), timeout=5).kvs]
                == [b"replicated"],
                60, "n4 to catch up over mutual TLS",
            )
        with Client(cluster.endpoints, tls=tls(certs), timeout=20) as client:
            n4 = next(m for m in client.members() if m.name == "n4")
            client.member_remove(n4.id)
    finally:
        if node.running:
            cluster.kill("n4")
        del cluster.nodes["n4"]
    assert_serving(cluster, certs, "tls/after-n4")


def test_removing_the_leader_itself_goes_to_the_new_leader(tmp_path: Path, certs: Path) -> None:
    """With TLS the old leader cannot relay the removal to the new leader's client port
    (it has no client credentials); it names the new leader and the client retries there."""
    own = TLSCluster(tmp_path / "remove-leader", 3, certs=certs)
    try:
        own.start()
        leader = own.wait_for_leader(timeout=60)
        leader_id = own.status(leader).header.member_id
        request = cluster_pb2.ClusterMemberRemoveRequest(id=leader_id)
        with pytest.raises(grpc.RpcError) as handed_over:
            cluster_pb2_grpc.ClusterStub(own.channel(leader)).MemberRemove(request, timeout=30)
        assert handed_over.value.code() == grpc.StatusCode.UNAVAILABLE, handed_over.value.details()
        hint = dict(handed_over.value.trailing_metadata() or ()).get("coord-leader")
        others = {own.client_addresses[n] for n in own.nodes if n != leader}
        assert hint in others, f"hint {hint!r} is not another member's client address"
        with Client([own.client_addresses[leader]], tls=tls(certs), timeout=30) as client:
            remaining = client.member_remove(leader_id)  # follows the hint to the new leader
        assert sorted(m.name for m in remaining) == sorted(n for n in own.nodes if n != leader)
        own.kill(leader)
        new_leader = own.wait_for_leader(timeout=60)
        assert new_leader != leader
        with Client([own.client_addresses[new_leader]], tls=tls(certs), timeout=30) as client:
            client.put("tls/after-removal", "ok")
            assert sorted(m.name for m in client.members()) == sorted(n for n in own.nodes if n != leader)
    finally:
        own.stop_all()
