"""Hostile input at the edge (issue 16, point 7): hypothesis sends random and mutated
protobuf messages to every public RPC and to every peer RPC of a real coord-server
process, while a healthy client's puts go on through the same member.

The member (one process, a separate peer port, the peer secret; auth off, so that the
messages reach the validation and the state machine rather than stop at the token
check) must answer every call with a status, never an unhandled exception (grpc's
"Unexpected ..." UNKNOWN), never exit, and the healthy client must see no failure. The
public methods come from the member's own reflection (which lists what its ports
registered); the peer fuzz carries the secret, so it reaches decoding and stepping:
mutated envelopes, snapshot chunks and forwarded commands.

Bounded: FUZZ_EXAMPLES examples per port (``COORD_FUZZ_EXAMPLES``), each one to three
messages; the message count is printed (and written to ``COORD_FUZZ_REPORT``).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coord.raft.v1 import command_pb2, raft_pb2
from coord.v1 import kv_pb2
from coord_client import Client
from coord_server.raft import Message, MessageType
from coord_server.transport.codec import message_to_pb
from tests.integration.harness import Cluster, free_ports

from .conftest import PEER_SECRET, TOKENS, AuthCluster, write_auth_file, write_peer_secret
from .messages import filled, method_descriptor, mutated, random_message

pytestmark = [
    pytest.mark.slow, pytest.mark.timeout(300),
    # The healthy client's thread uses the random module (retry jitter) while hypothesis
    # draws; hypothesis takes that for a strategy using it.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

FUZZ_EXAMPLES = int(os.environ.get("COORD_FUZZ_EXAMPLES", "200"))
REPORT = os.environ.get("COORD_FUZZ_REPORT", "")
CALL_TIMEOUT = 2.0
SECRET = (("coord-peer-secret", PEER_SECRET),)


class Member:
    """One coord-server process with its peer port, and the counts of the fuzz run."""

    def __init__(self, cluster: Cluster, peer_address: str, token: str = "") -> None:
        self.cluster = cluster
        self.token = token
        self.address = next(iter(cluster.nodes.values())).address
        self.peer_address = peer_address
        self.messages = 0
        self.codes: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.channel = grpc.insecure_channel(self.address)
        self.peer_channel = grpc.insecure_channel(peer_address)
        status = cluster.status(next(iter(cluster.nodes)))
        self.cluster_id = status.header.cluster_id
        self.member_id = status.header.member_id

    def public_methods(self) -> list[str]:
        """Every method of every coord.v1 service the member's reflection lists."""
        stub = reflection_pb2_grpc.ServerReflectionStub(self.channel)
        answer = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))  # open: no token
        services = [s.name for s in answer.list_services_response.service if s.name.startswith("coord.v1.")]
        return sorted(f"/{svc}/{m}" for svc in services for m in _service_methods(svc))

    def call(self, channel: grpc.Channel, method: str, payloads: list[bytes], metadata: tuple[tuple[str, str], ...] = ()) -> None:
        desc = method_descriptor(method)
        kind = ("stream" if desc.client_streaming else "unary") + "_" + ("stream" if desc.server_streaming else "unary")
        callable_ = getattr(channel, kind)(method)
        request: Any = iter(payloads) if desc.client_streaming else payloads[0]
        self.messages += len(payloads) if desc.client_streaming else 1
        code = "OK"
        try:
            if desc.server_streaming:
                for _ in callable_(request, timeout=CALL_TIMEOUT, metadata=metadata):
                    break
            else:
                callable_(request, timeout=CALL_TIMEOUT, metadata=metadata)
        except grpc.RpcError as err:
            code = err.code().name
            details = err.details() or ""
            if code == "UNKNOWN" and details.startswith("Unexpected"):
                self.unexpected.append(f"{method}: {details}")
        self.codes[code] += 1
        assert all(n.running for n in self.cluster.nodes.values()), f"the member exited after {method}"


def _service_methods(service: str) -> list[str]:
    from google.protobuf import descriptor_pool

    return [m.name for m in descriptor_pool.Default().FindServiceByName(service).methods]


class HealthyClient:
    """Puts without pause through the fuzzed member, counting failures."""

    def __init__(self, address: str, token: str = "") -> None:
        self.address = address
        self.token = token
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with Client([self.address], timeout=20, token=self.token) as client:
            i = 0
            while not self.stop.is_set():
                try:
                    client.put(f"healthy/{i % 100}", str(i))
                    self.ok += 1
                except Exception as err:  # noqa: BLE001 - counted
                    self.failures.append(repr(err))
                i += 1


def _member(tmp_path_factory: pytest.TempPathFactory, auth: bool) -> Iterator[tuple[Member, HealthyClient]]:
    base = tmp_path_factory.mktemp("fuzz")
    (peer_port,) = free_ports(1)
    peer_address = f"127.0.0.1:{peer_port}"
    options: tuple[str, ...] = ("--peer-listen", peer_address, "--peer-secret-file", str(write_peer_secret(base)))
    if auth:
        options += ("--auth-file", str(write_auth_file(base)))
    cluster = (AuthCluster if auth else Cluster)(base, 1, options=options)
    healthy = None
    try:
        cluster.start()
        cluster.wait_for_leader()
        m = Member(cluster, peer_address, token=TOKENS["root"] if auth else "")
        healthy = HealthyClient(m.address, TOKENS["root"] if auth else "")
        healthy.thread.start()
        yield m, healthy
    finally:
        if healthy is not None:
            healthy.stop.set()
            healthy.thread.join(60)
        cluster.stop_all()


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Member, HealthyClient]]:
    yield from _member(tmp_path_factory, auth=False)


@pytest.fixture(scope="module")
def auth_member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Member, HealthyClient]]:
    yield from _member(tmp_path_factory, auth=True)


@st.composite
def payload(draw: Any, method: str) -> bytes:
    """Random bytes, a random message of the method's type, or a mutated one."""
    desc = method_descriptor(method)
    how = draw(st.sampled_from(["random bytes", "random message", "mutated message", "mutated full message"]))
    if how == "random bytes":
        return draw(st.binary(max_size=256))  # type: ignore[no-any-return]
    message = draw(random_message(desc.input_type))
    if how == "random message":
        return message.SerializeToString()  # type: ignore[no-any-return]
    base = message if how == "mutated message" else filled(desc.input_type)
    return draw(mutated(base.SerializeToString()))  # type: ignore[no-any-return]


PUBLIC_METHODS: list[str] = []


def test_public_rpcs_survive_random_and_mutated_messages(member: tuple[Member, HealthyClient]) -> None:
    fuzz_public(*member, "public", metadata=())


def test_public_rpcs_with_auth_on_survive_random_and_mutated_messages(auth_member: tuple[Member, HealthyClient]) -> None:
    """With auth on, the permission checks read every request before validation does:
    they must not trip on a hostile one either (a user whose role allows only keys a/)."""
    fuzz_public(*auth_member, "public, auth on", metadata=(("authorization", f"Bearer {TOKENS['writer_a']}"),))


def fuzz_public(m: Member, healthy: HealthyClient, label: str, metadata: tuple[tuple[str, str], ...]) -> None:
    PUBLIC_METHODS[:] = m.public_methods()
    assert len(PUBLIC_METHODS) >= 30 and "/coord.v1.KV/Put" in PUBLIC_METHODS

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        method = data.draw(st.sampled_from(PUBLIC_METHODS))
        count = data.draw(st.integers(1, 3)) if method_descriptor(method).client_streaming else 1
        m.call(m.channel, method, [data.draw(payload(method)) for _ in range(count)], metadata)

    one()
    _check(m, healthy, label)


@st.composite
def peer_call(draw: Any, cluster_id: int, member_id: int) -> tuple[str, list[bytes]]:
    """A call to the peer service: a plausible message (right cluster and member ids,
    a real message type or a forwarded command), random, or mutated."""
    method = draw(st.sampled_from(["/coord.raft.v1.Raft/Send", "/coord.raft.v1.Raft/InstallSnapshot", "/coord.raft.v1.Raft/Forward"]))
    if method.endswith("/Send"):
        kind = draw(st.sampled_from([t for t in MessageType]))
        m = Message(kind, to=draw(st.sampled_from([member_id, 0, 12345])), from_=draw(st.integers(0, 2**64 - 1)),
                    term=draw(st.integers(0, 5)), index=draw(st.integers(0, 10**6)), log_term=draw(st.integers(0, 5)),
                    commit=draw(st.integers(0, 10**6)))
        base = raft_pb2.RaftEnvelope(cluster_id=cluster_id, messages=[message_to_pb(m)]).SerializeToString()
    elif method.endswith("/InstallSnapshot"):
        base = draw(random_message(raft_pb2.SnapshotChunk.DESCRIPTOR)).SerializeToString()
        base = raft_pb2.SnapshotChunk(cluster_id=cluster_id).SerializeToString() + base
    else:
        command = draw(random_message(command_pb2.Command.DESCRIPTOR))
        base = raft_pb2.ForwardRequest(
            cluster_id=cluster_id, kind=draw(st.integers(0, 6)), payload=command.SerializeToString(),
            id=draw(st.integers(0, 2**64 - 1)), timeout_ms=500,
        ).SerializeToString()
    how = draw(st.sampled_from(["as is", "mutated", "random bytes"]))
    if how == "mutated":
        base = draw(mutated(base))
    elif how == "random bytes":
        base = draw(st.binary(max_size=256))
    return method, [base]


def test_peer_rpcs_survive_random_and_mutated_messages(member: tuple[Member, HealthyClient]) -> None:
    m, healthy = member

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        method, payloads = data.draw(peer_call(m.cluster_id, m.member_id))
        m.call(m.peer_channel, method, payloads, SECRET)

    one()
    _check(m, healthy, "peer")


def _check(m: Member, healthy: HealthyClient, label: str) -> None:
    before = healthy.ok
    m.cluster.put(f"fuzz/after-{label.replace(' ', '-').replace(',', '')}", "still serving")
    from tests.integration.harness import wait_until

    wait_until(lambda: healthy.ok > before, 30, "the healthy client's puts to go on")
    report = (f"fuzz {label}: {m.messages} messages so far, answers {dict(m.codes)}; "
              f"healthy client {healthy.ok} puts, {len(healthy.failures)} failed")
    print(report)
    if REPORT:
        with Path(REPORT).open("a") as f:
            f.write(report + "\n")
    assert not m.unexpected, "\n".join(m.unexpected[:20])
    assert not healthy.failures, healthy.failures[:10]
    assert healthy.ok > 0
    assert m.cluster.exited_unexpectedly() == []
    log = m.cluster.log_tail(next(iter(m.cluster.nodes)), 100_000)
    assert "Traceback" not in log, log[log.index("Traceback") - 300:][:3000]
