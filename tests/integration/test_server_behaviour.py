"""coord-server behaviour through real processes: membership changes, leadership transfer,
watches across a leader kill and a reconnect, lease keepalive and expiry, exactly-once
retries, bad input, health and reflection, and SIGTERM with open streams.

Most tests share one 3-process cluster (each cluster start costs seconds on two busy
cores); a test that kills or stops a member restarts it itself, and the ``cluster``
fixture below restarts anything still down before the next test. The membership test,
which changes who the members are, gets its own cluster.

Every wait polls a condition with a generous deadline; the few observation windows ("for
a while nothing bad happens") are bounded by a count of completed operations as well as
by time. Measured times are printed (-s).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from coord.v1 import cluster_pb2, cluster_pb2_grpc, common_pb2, kv_pb2, kv_pb2_grpc, lease_pb2, lease_pb2_grpc
from tests.integration.harness import (
    LEADER, RETRYABLE, Cluster, HarnessError, free_ports, leader_hint, prefix_end, running_cluster, wait_until,
)

pytestmark = pytest.mark.timeout(180)

CLUSTER = cluster_pb2_grpc.ClusterStub
LEASE = lease_pb2_grpc.LeaseStub
KV = kv_pb2_grpc.KVStub

EXPIRY_MARGIN = 3.0
"""Seconds a lease may outlive its TTL before its keys must be gone (the leader's ticker,
one proposal and one commit on two busy cores)."""


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("behaviour"), 3) as c:
        yield c


@pytest.fixture
def cluster(shared_cluster: Cluster, request: pytest.FixtureRequest) -> Cluster:
    """The shared cluster with every member running and a leader they agree on."""
    _report_on_failure(request, shared_cluster)
    for name, node in shared_cluster.nodes.items():
        if node.paused:
            shared_cluster.resume(name)
        if not node.running:
            shared_cluster.start_node(name)
    shared_cluster.wait_for_leader()
    return shared_cluster


def _report_on_failure(request: pytest.FixtureRequest, cluster: Cluster) -> None:
    """Have conftest.py's report hook add this cluster's logs to a failing test's report
    (it does so for the clusters made by ``make_cluster``; this one is module-scoped)."""
    for plugin in request.config.pluginmanager.get_plugins():
        key = getattr(plugin, "CLUSTERS", None)
        if isinstance(key, pytest.StashKey) and str(getattr(plugin, "__file__", "")).endswith("conftest.py"):
            request.node.stash.setdefault(key, []).append(cluster)


# ----------------------------------------------------------------------------- helpers


def followers(cluster: Cluster, leader: str) -> list[str]:
    return [n for n in cluster.nodes if n != leader and cluster.nodes[n].live]


def member_id(cluster: Cluster, name: str) -> int:
    if not cluster.nodes[name].member_id:
        cluster.status(name)
    return cluster.nodes[name].member_id


def expect_error(code: grpc.StatusCode, fn: Callable[[], Any], *fragments: str) -> grpc.RpcError:
    """Call ``fn``; it must fail with ``code`` and a message containing every fragment
    (case-insensitive): the exact status and a readable reason."""
    try:
        result = fn()
    except grpc.RpcError as err:
        assert err.code() == code, f"expected {code.name}, got {err.code().name}: {err.details()}"
        details = err.details() or ""
        for fragment in fragments:
            assert fragment.lower() in details.lower(), f"{code.name} message {details!r} lacks {fragment!r}"
        return err
    raise AssertionError(f"expected {code.name}, but the call succeeded: {result}")


class WithMetadata:
    """A stub whose every call carries ``metadata`` (for Cluster.call's stub_class)."""

    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub, self._metadata = stub, metadata

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)
        return lambda request, **kwargs: method(request, metadata=self._metadata, **kwargs)


def exactly_once(client_id: str, seq: int, stub_class: Callable[[grpc.Channel], Any] = KV) -> Callable[[grpc.Channel], Any]:
    """stub_class for Cluster.call: calls carry coord-client-id / coord-seq."""
    metadata = (("coord-client-id", client_id), ("coord-seq", str(seq)))
    return lambda channel: WithMetadata(stub_class(channel), metadata)


def without_member(response: Any) -> Any:
    """A copy of ``response`` without what describes the answering member (its id and
    term): what two answers to the same request must share."""
    copy = type(response)()
    copy.CopyFrom(response)
    copy.header.member_id = 0
    copy.header.raft_term = 0
    return copy


class Channels:
    """Channels of one client thread, by address (the harness's are for the main thread:
    it closes them when it kills a node)."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.Channel] = {}

    def get(self, address: str) -> grpc.Channel:
        if address not in self._channels:
            self._channels[address] = grpc.insecure_channel(address)
        return self._channels[address]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()


def _requests(q: queue.Queue[Any]) -> Iterator[Any]:
    """A request iterator fed through a queue; None ends it."""
    while True:
        item = q.get()
        if item is None:
            return
        yield item


class WatchStream:
    """One Watch stream on one member, on its own channel, read by a thread."""

    def __init__(self, address: str, create: kv_pb2.WatchCreateRequest) -> None:
        self.channel = grpc.insecure_channel(address)
        self._requests: queue.Queue[Any] = queue.Queue()
        self._requests.put(kv_pb2.WatchRequest(create_request=create))
        self.call = KV(self.channel).Watch(_requests(self._requests))
        self.responses: list[kv_pb2.WatchResponse] = []
        self.error: grpc.RpcError | None = None
        self.ended = threading.Event()
        self._closing = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.responses.append(response)
        except grpc.RpcError as err:
            if not self._closing:
                self.error = err
        finally:
            self.ended.set()
            self._requests.put(None)

    def created(self, timeout: float = 30) -> kv_pb2.WatchResponse:
        wait_until(lambda: self.responses or self.ended.is_set(), timeout, "the watch's first response")
        assert self.responses, f"the watch ended without a response: {self.error!r}"
        first = self.responses[0]
        assert first.created, first
        return first

    @property
    def events(self) -> list[common_pb2.Event]:
        return [e for r in list(self.responses) for e in r.events]

    def close(self) -> None:
        self._closing = True
        self.call.cancel()
        self._requests.put(None)
        self._reader.join(timeout=10)
        self.channel.close()


class ResumingWatch(threading.Thread):
    """A watcher that behaves as a client library should: it watches ``key``/``range_end``
    on ``target`` and, when the stream ends (or the test moves it with :meth:`move`),
    watches again from the revision after the last event it received, on the current
    target. Each stream's events are kept as one segment."""

    def __init__(self, cluster: Cluster, target: str, key: bytes, range_end: bytes, start_revision: int) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.target = target
        self.key, self.range_end = key, range_end
        self.next_revision = start_revision
        self.segments: list[tuple[str, int, list[common_pb2.Event]]] = []
        self.breaks: list[str] = []
        """Stream ends the test did not ask for: "node: CODE details"."""
        self.created = 0
        self._lock = threading.Lock()
        self._call: Any = None
        self._moving = False
        self._halt = threading.Event()

    @property
    def events(self) -> list[common_pb2.Event]:
        return [e for _, _, evs in list(self.segments) for e in list(evs)]

    def move(self, target: str) -> None:
        """End the current stream and watch again on ``target`` (a client reconnect)."""
        with self._lock:
            self.target = target
            self._moving = True
            if self._call is not None:
                self._call.cancel()

    def stop(self) -> None:
        self._halt.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        self.join(timeout=30)

    def run(self) -> None:
        while not self._halt.is_set():
            with self._lock:
                target, self._moving = self.target, False
            channel = grpc.insecure_channel(self.cluster.nodes[target].address)
            requests: queue.Queue[Any] = queue.Queue()
            create = kv_pb2.WatchCreateRequest(key=self.key, range_end=self.range_end, start_revision=self.next_revision)
            requests.put(kv_pb2.WatchRequest(create_request=create))
            events: list[common_pb2.Event] = []
            self.segments.append((target, self.next_revision, events))
            broke = False
            try:
                call = KV(channel).Watch(_requests(requests))
                with self._lock:
                    self._call = call
                    if self._moving or self._halt.is_set():
                        call.cancel()
                for response in call:
                    if response.created and not response.canceled:
                        self.created += 1
                    if response.canceled:
                        self.breaks.append(f"{target}: canceled: {response.cancel_reason}")
                        broke = True
                        break
                    events.extend(response.events)
                    if response.events:
                        self.next_revision = response.events[-1].kv.mod_revision + 1
            except grpc.RpcError as err:
                with self._lock:
                    voluntary = self._moving or self._halt.is_set()
                if not voluntary:
                    self.breaks.append(f"{target}: {err.code().name} {err.details()}")
                    broke = True
            finally:
                with self._lock:
                    self._call = None
                requests.put(None)
                channel.close()
            if broke:
                self._halt.wait(0.05)


class SequentialWriter(threading.Thread):
    """Puts ``prefix``0000, 0001, ... one at a time, through any live member (following
    ``coord-leader``), retrying a key until its put is acknowledged. Each attempt has a
    value of its own, so an unacknowledged attempt that was applied anyway is told apart."""

    def __init__(self, cluster: Cluster, prefix: str, count: int) -> None:
        super().__init__(daemon=True)
        self.cluster, self.prefix, self.count = cluster, prefix, count
        self.acked: list[tuple[bytes, bytes, int]] = []
        """(key, value, revision) of every acknowledged put, in order."""
        self.attempted: set[tuple[bytes, bytes]] = set()
        self.errors: list[str] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)

    def run(self) -> None:
        channels = Channels()
        target: str | None = None
        attempt = 0
        try:
            for i in range(self.count):
                key = f"{self.prefix}{i:04d}".encode()
                while not self._halt.is_set():
                    live = self.cluster.live_names()
                    if target is None or target not in live:
                        target = live[attempt % len(live)]
                    attempt += 1
                    value = f"{i}/{attempt}".encode()
                    self.attempted.add((key, value))
                    stub = KV(channels.get(self.cluster.nodes[target].address))
                    try:
                        put = stub.Put(kv_pb2.PutRequest(key=key, value=value), timeout=2)
                    except grpc.RpcError as err:
                        if err.code() not in RETRYABLE:
                            self.errors.append(f"{err.code().name}: {err.details()}")
                            return
                        hint = leader_hint(err)
                        target = self.cluster.name_at(hint) if hint else None
                        self._halt.wait(0.02)
                        continue
                    self.acked.append((key, value, put.header.revision))
                    break
                if self._halt.is_set():
                    return
        finally:
            channels.close()


class KeepAlive(threading.Thread):
    """Keeps one lease alive through one member's KeepAlive stream, a request every
    ``interval`` seconds; when the stream fails it opens a new one at once (as a client
    library does). Records (sent, received, ttl) of every answer: ``sent`` is taken just
    before the request is handed to gRPC, so the leader renewed the lease after it."""

    def __init__(self, cluster: Cluster, target: str, lease_id: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.cluster, self.target, self.lease_id, self.interval = cluster, target, lease_id, interval
        self.answers: list[tuple[float, float, int]] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the keepalive thread did not end"

    def run(self) -> None:
        while not self._halt.is_set():
            sent: list[float] = []
            done = threading.Event()

            def requests() -> Iterator[lease_pb2.LeaseKeepAliveRequest]:
                while not self._halt.is_set() and not done.is_set():
                    sent.append(time.monotonic())
                    yield lease_pb2.LeaseKeepAliveRequest(id=self.lease_id)
                    self._halt.wait(self.interval)

            channel = grpc.insecure_channel(self.cluster.nodes[self.target].address)
            try:
                for i, response in enumerate(LEASE(channel).KeepAlive(requests(), timeout=120)):
                    self.answers.append((sent[i], time.monotonic(), response.ttl))
            except grpc.RpcError as err:
                self.errors.append(f"{err.code().name}: {err.details()}")
                self._halt.wait(0.05)
            finally:
                done.set()
                channel.close()

    def answered_since(self, moment: float) -> int:
        return sum(1 for sent, _, ttl in list(self.answers) if sent >= moment and ttl > 0)


def keys_present(cluster: Cluster, via: str, *keys: bytes) -> bool:
    """Whether every key exists, by a linearizable read on ``via``."""
    return all(cluster.get(k, via=via, timeout=10).count == 1 for k in keys)


# ----------------------------------------------------------------------- 7: health, reflection


def test_every_member_serves_health_and_reflection(cluster: Cluster) -> None:
    wanted = {
        "coord.v1.KV", "coord.v1.Lease", "coord.v1.Cluster", "coord.v1.Lock", "coord.v1.Election",
        "coord.v1.Ring", "grpc.health.v1.Health",
    }
    for name in cluster.nodes:
        channel = cluster.channel(name)
        # SERVING while the member knows a leader; it follows the member's state within
        # 0.1 s, and a member may be between leaders after the tests before this one.
        deadline = time.monotonic() + 30
        while True:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            if health.status == health_pb2.HealthCheckResponse.SERVING or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert health.status == health_pb2.HealthCheckResponse.SERVING, name

        # The raw reflection stream, as grpcurl uses it.
        answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        listed = {s.name for a in answers for s in a.list_services_response.service}
        assert wanted <= listed, (name, sorted(listed))

        # And the descriptors behind the names: a tool can build requests without protos/.
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        kv = pool.FindServiceByName("coord.v1.KV")
        assert {"Put", "Range", "DeleteRange", "Txn", "Compact", "Watch"} <= set(kv.methods_by_name)
        assert kv.methods_by_name["Watch"].client_streaming and kv.methods_by_name["Watch"].server_streaming
        transfer = pool.FindServiceByName("coord.v1.Cluster").methods_by_name["TransferLeadership"]
        assert transfer.input_type.fields_by_name["target_id"].number == 1
        assert pool.FindMessageTypeByName("coord.v1.LeaseGrantRequest").fields_by_name["ttl"]


# ----------------------------------------------------------------------------- 6: bad input


def test_bad_input_gets_its_status_code_and_the_cluster_keeps_serving(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    term = cluster.status(leader).header.raft_term
    invalid, not_found = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    exhausted, out_of_range = grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE
    u = uuid.uuid4().hex[:8]

    # History to compact: five versions of one key; keep revisions from the third on.
    revs = [cluster.put(f"bad-{u}/hist", str(i)).header.revision for i in range(5)]
    cluster.call("Compact", kv_pb2.CompactRequest(revision=revs[2]))

    for via in cluster.nodes:  # the leader and both followers (which forward writes)
        kv, lease = cluster.kv(via), cluster.stub(via, LEASE)

        def put(key: bytes, value: bytes = b"v", kv: Any = kv, **kw: Any) -> kv_pb2.PutResponse:
            response: kv_pb2.PutResponse = kv.Put(kv_pb2.PutRequest(key=key, value=value, **kw), timeout=10)
            return response

        expect_error(invalid, lambda: put(b""), "key", "empty")
        expect_error(invalid, lambda: put(b"k" * 4097), "4097", "4096")
        expect_error(invalid, lambda: kv.Range(kv_pb2.RangeRequest(key=b""), timeout=10), "empty")
        expect_error(invalid, lambda: kv.DeleteRange(kv_pb2.DeleteRangeRequest(key=b"d" * 5000), timeout=10), "4096")
        # A request just over 1.5 MiB gets the service's own answer; a far larger one too.
        expect_error(exhausted, lambda: put(f"bad-{u}/big".encode(), b"x" * (3 * 512 * 1024)), "limit")
        expect_error(exhausted, lambda: put(f"bad-{u}/huge".encode(), b"x" * (3 << 20)))
        for ttl in (0, -1, 9_000_000_001):
            expect_error(invalid, lambda ttl=ttl: lease.Grant(lease_pb2.LeaseGrantRequest(ttl=ttl), timeout=10), "ttl")
        expect_error(not_found, lambda: put(f"bad-{u}/leased".encode(), lease=0x7EADBEEF), "lease")
        expect_error(not_found, lambda: lease.Revoke(lease_pb2.LeaseRevokeRequest(id=0x7EADBEEF), timeout=10), "lease")
        expect_error(not_found, lambda: lease.TimeToLive(lease_pb2.LeaseTimeToLiveRequest(id=0x7EADBEEF), timeout=10))
        # Compacted and future revisions: OUT_OF_RANGE for Range, a cancelled watch.
        expect_error(out_of_range, lambda: kv.Range(kv_pb2.RangeRequest(key=f"bad-{u}/hist".encode(), revision=revs[1]), timeout=10), "compact")
        expect_error(out_of_range, lambda: kv.Range(kv_pb2.RangeRequest(key=b"k", revision=revs[-1] + 10_000), timeout=10))
        expect_error(out_of_range, lambda: kv.Compact(kv_pb2.CompactRequest(revision=revs[1]), timeout=10), "compact")
        watch = WatchStream(cluster.nodes[via].address, kv_pb2.WatchCreateRequest(key=f"bad-{u}/hist".encode(), start_revision=revs[1]))
        try:
            refused = watch.created()
            assert refused.canceled and refused.compacted_revision == revs[2], refused
            assert "compact" in refused.cancel_reason.lower(), refused.cancel_reason
        finally:
            watch.close()
        # Txn: 129 operations are refused, 128 are fine.
        ops = [kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=f"bad-{u}/txn/{via}/{i:03d}".encode(), value=b"t")) for i in range(129)]
        expect_error(invalid, lambda: kv.Txn(kv_pb2.TxnRequest(success=ops), timeout=10), "129", "128")
        assert kv.Txn(kv_pb2.TxnRequest(success=ops[:128]), timeout=10).succeeded
        # The largest key, and a value that keeps the request just under the limit, are fine.
        assert put(f"bad-{u}/".encode().ljust(4096, b"k")).header.revision > 0
        assert put(f"bad-{u}/large/{via}".encode(), b"y" * (3 * 512 * 1024 - 200)).header.revision > 0

    # A KeepAlive for an unknown lease answers ttl 0 and the stream stays usable.
    stream_requests: queue.Queue[Any] = queue.Queue()
    for _ in range(2):
        stream_requests.put(lease_pb2.LeaseKeepAliveRequest(id=0x7EADBEEF))
    stream_requests.put(None)
    answers = list(cluster.stub(followers(cluster, leader)[0], LEASE).KeepAlive(_requests(stream_requests), timeout=10))
    assert [(a.id, a.ttl) for a in answers] == [(0x7EADBEEF, 0)] * 2

    # Nothing of that disturbed the cluster: the same leader in the same term, every member
    # up, and writes and reads through each of them.
    assert not cluster.exited_unexpectedly()
    assert cluster.wait_for_leader() == leader
    assert cluster.status(leader).header.raft_term == term, "a bad request caused an election"
    for via in cluster.nodes:
        written = cluster.put(f"bad-{u}/after/{via}", via, via=via)
        for reader in cluster.nodes:
            got = cluster.get(f"bad-{u}/after/{via}", via=reader)
            assert [kv.value for kv in got.kvs] == [via.encode()] and got.header.revision >= written.header.revision
    large = kv_pb2.RangeRequest(key=f"bad-{u}/large/".encode(), range_end=prefix_end(f"bad-{u}/large/".encode()), count_only=True)
    assert cluster.call("Range", large, via=leader).count == 3


# ------------------------------------------------------------------------- 5: exactly-once


def test_a_retried_put_is_applied_once_and_answered_alike(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    follower = followers(cluster, leader)[0]
    key = f"once-{uuid.uuid4().hex[:8]}"
    client = f"client-{uuid.uuid4()}"
    assert cluster.put(key, "v0").header.revision > 0  # version 1

    def once(seq: int, value: str, via: str | None = None, timeout: float = 30.0) -> kv_pb2.PutResponse:
        response: kv_pb2.PutResponse = cluster.call(
            "Put", kv_pb2.PutRequest(key=key.encode(), value=value.encode(), prev_kv=True),
            via=via, stub_class=exactly_once(client, seq), timeout=timeout,
        )
        return response

    first = once(1, "v1", via=leader)
    cluster.put(f"{key}/other", "moves the revision on")
    again = once(1, "v1", via=leader)
    through_follower = once(1, "v1", via=follower)
    assert again.header.revision == first.header.revision == through_follower.header.revision
    assert without_member(again) == without_member(first) == without_member(through_follower)
    assert first.prev_kv.value == b"v0" and first.prev_kv.version == 1
    (kv,) = cluster.get(key).kvs
    assert (kv.value, kv.version, kv.mod_revision) == (b"v1", 2, first.header.revision), "applied once"

    second = once(2, "v2", via=follower)
    assert second.header.revision > first.header.revision
    assert cluster.get(key).kvs[0].version == 3
    err = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        lambda: cluster.stub(leader, exactly_once(client, 1)).Put(kv_pb2.PutRequest(key=key.encode(), value=b"old"), timeout=10),
    )
    assert err.details(), "a stale sequence is explained"
    assert cluster.get(key).kvs[0].version == 3

    # An answer lost to the client's deadline: the write may still be applied; the retry
    # with the same sequence tells the outcome, and the key changes once.
    lost = 0
    for timeout in (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02):
        try:
            cluster.stub(follower, exactly_once(client, 3)).Put(kv_pb2.PutRequest(key=key.encode(), value=b"v3"), timeout=timeout)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            lost += 1
    third = once(3, "v3", via=leader)
    assert once(3, "v3", via=follower).header.revision == third.header.revision
    (kv,) = cluster.get(key).kvs
    assert (kv.value, kv.version, kv.mod_revision) == (b"v3", 4, third.header.revision)
    print(f"\n{lost} of 6 attempts with a tiny deadline went unanswered; applied once")


def test_a_put_retried_after_a_leader_kill_is_applied_once(cluster: Cluster) -> None:
    old = cluster.wait_for_leader()
    key = f"once-kill-{uuid.uuid4().hex[:8]}"
    client = f"client-{uuid.uuid4()}"

    def put(seq: int, value: bytes, **kw: Any) -> kv_pb2.PutResponse:
        response: kv_pb2.PutResponse = cluster.call(
            "Put", kv_pb2.PutRequest(key=key.encode(), value=value), stub_class=exactly_once(client, seq), **kw
        )
        return response

    first = put(1, b"a", via=old)
    cluster.kill(old)
    new = cluster.wait_for_leader(other_than=old)
    retried = put(1, b"a")  # any survivor; the new leader has the session from the log
    assert retried.header.revision == first.header.revision
    assert without_member(retried) == without_member(first)
    (kv,) = cluster.get(key).kvs
    assert (kv.version, kv.mod_revision) == (1, first.header.revision)
    second = put(2, b"b", via=new)
    assert second.header.revision > first.header.revision

    # The killed member restarts, replays its log, and answers the retry alike too.
    cluster.start_node(old)
    cluster.wait_caught_up()
    stub = cluster.stub(old, exactly_once(client, 2))
    again = wait_until(lambda: stub.Put(kv_pb2.PutRequest(key=key.encode(), value=b"b"), timeout=5), 30, f"the retry through {old}")
    assert again.header.revision == second.header.revision
    assert cluster.get(key).kvs[0].version == 2


# ------------------------------------------------------------------- 2: leadership transfer


def transfer(cluster: Cluster, via: str, target: str) -> tuple[cluster_pb2.ClusterTransferLeadershipResponse, int]:
    """TransferLeadership to ``target``, asked of ``via`` every time (not wherever
    ``coord-leader`` points): (the answer, the number of attempts). UNAVAILABLE is retried
    as a client would: the leader abandons a transfer that does not finish within an
    election timeout (as etcd does), which a busy machine sometimes causes."""
    request = cluster_pb2.ClusterTransferLeadershipRequest(target_id=member_id(cluster, target))
    attempts = 0

    def attempt() -> cluster_pb2.ClusterTransferLeadershipResponse | None:
        nonlocal attempts
        attempts += 1
        try:
            response: cluster_pb2.ClusterTransferLeadershipResponse = cluster.stub(via, CLUSTER).TransferLeadership(request, timeout=20)
            return response
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            return None

    return wait_until(attempt, 60, f"leadership transferred to {target} (asked of {via})", interval=0.1), attempts


def test_leadership_transfer_to_a_chosen_follower(cluster: Cluster) -> None:
    first = cluster.wait_for_leader()
    a, b = followers(cluster, first)
    term = cluster.status(first).header.raft_term
    writer = SequentialWriter(cluster, f"transfer-{uuid.uuid4().hex[:8]}/", 100_000)
    writer.start()
    try:
        wait_until(lambda: len(writer.acked) >= 10, 30, "writes before the transfer")

        # Asked of the leader.
        started = time.monotonic()
        answer, tries = transfer(cluster, first, a)
        took = time.monotonic() - started
        assert answer.leader == member_id(cluster, a)
        assert cluster.wait_for_leader() == a
        assert cluster.status(a).header.raft_term > term
        count = len(writer.acked)
        wait_until(lambda: len(writer.acked) >= count + 10, 30, "writes after the first transfer")

        # Asked of a follower (the old leader), naming the other follower.
        started = time.monotonic()
        answer, tries_via_follower = transfer(cluster, first, b)
        took_via_follower = time.monotonic() - started
        assert answer.leader == member_id(cluster, b)
        assert cluster.wait_for_leader() == b
        count = len(writer.acked)
        wait_until(lambda: len(writer.acked) >= count + 10, 30, "writes after the second transfer")

        # To the leader itself: nothing to do. To no member: NOT_FOUND.
        same = cluster.stub(a, CLUSTER).TransferLeadership(
            cluster_pb2.ClusterTransferLeadershipRequest(target_id=member_id(cluster, b)), timeout=20
        )
        assert same.leader == member_id(cluster, b) and cluster.wait_for_leader() == b
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            lambda: cluster.stub(b, CLUSTER).TransferLeadership(cluster_pb2.ClusterTransferLeadershipRequest(target_id=12345), timeout=20),
            "not found",
        )
    finally:
        writer.stop()
    assert not writer.errors, writer.errors[:3]
    print(f"\ntransfer {first}->{a} took {took:.2f}s ({tries} attempts); {a}->{b} asked of a follower took "
          f"{took_via_follower:.2f}s ({tries_via_follower} attempts); {len(writer.acked)} writes meanwhile")
    # Every acknowledged write is there, on every member.
    cluster.wait_caught_up()
    for name in cluster.nodes:
        got = cluster.get(writer.prefix, prefix=True, serializable=True, via=name)
        stored = {kv.key for kv in got.kvs}
        assert {k for k, _, _ in writer.acked} <= stored, name


# ------------------------------------------------------------------------------ 3: watch


def test_watch_is_gapless_across_a_leader_kill_and_a_reconnect(cluster: Cluster) -> None:
    old = cluster.wait_for_leader()
    watched, other = followers(cluster, old)
    prefix = f"watch-{uuid.uuid4().hex[:8]}/"
    start = cluster.get(prefix, prefix=True).header.revision + 1
    watcher = ResumingWatch(cluster, watched, prefix.encode(), prefix_end(prefix.encode()), start)
    watcher.start()
    writer = SequentialWriter(cluster, prefix, 150)
    try:
        wait_until(lambda: watcher.created, 30, "the watch created")
        writer.start()
        wait_until(lambda: len(writer.acked) >= 40, 30, "40 writes before the kill")
        killed_at = time.monotonic()
        cluster.kill(old)
        cluster.wait_for_leader(other_than=old)
        elected = time.monotonic() - killed_at
        breaks_through_kill = list(watcher.breaks)
        wait_until(lambda: len(writer.acked) >= 90, 30, "50 more writes after the kill")
        moved_at = len(watcher.events)
        watcher.move(other)  # the client reconnects to another member, from last + 1
        writer.join(timeout=60)
        assert not writer.is_alive() and len(writer.acked) == 150, (len(writer.acked), writer.errors)
        last = writer.acked[-1][2]
        wait_until(lambda: watcher.events and watcher.events[-1].kv.mod_revision >= last, 30, "the watcher at the last write")
    finally:
        writer.stop()
        watcher.stop()
    assert not writer.errors, writer.errors[:3]
    print(f"\nleader {old} killed, new leader after {elected:.2f}s; watch on {watched} moved to {other} "
          f"after {moved_at} events; {len(watcher.segments)} streams; breaks: {watcher.breaks}")

    events = watcher.events
    revisions = [e.kv.mod_revision for e in events]
    assert all(a < b for a, b in zip(revisions, revisions[1:])), "each revision once, in increasing order"
    assert revisions[0] >= start
    by_revision = {e.kv.mod_revision: e for e in events}
    for key, value, revision in writer.acked:
        assert revision in by_revision, f"acknowledged write at revision {revision} missing from the watch"
        e = by_revision[revision]
        assert (e.type, e.kv.key, e.kv.value) == (common_pb2.EVENT_TYPE_PUT, key, value)
    assert all((e.kv.key, e.kv.value) in writer.attempted for e in events), "only the writer's puts"
    assert [s[0] for s in watcher.segments][:1] == [watched] and watcher.segments[-1][0] == other
    assert not breaks_through_kill, f"the watch on follower {watched} broke when the leader died: {breaks_through_kill}"

    # No gaps: the history replayed from the start revision holds exactly these events.
    replay = WatchStream(cluster.nodes[other].address, kv_pb2.WatchCreateRequest(key=prefix.encode(), range_end=prefix_end(prefix.encode()), start_revision=start))
    try:
        replay.created()
        wait_until(lambda: replay.events and replay.events[-1].kv.mod_revision >= revisions[-1], 30, "the replayed history")
        history = [(e.kv.mod_revision, e.kv.key, e.kv.value) for e in replay.events]
    finally:
        replay.close()
    assert [(e.kv.mod_revision, e.kv.key, e.kv.value) for e in events] == history
    cluster.start_node(old)
    cluster.wait_caught_up()


# ------------------------------------------------------------------------------ 4: leases


def grant(cluster: Cluster, ttl: int, via: str | None = None) -> lease_pb2.LeaseGrantResponse:
    response: lease_pb2.LeaseGrantResponse = cluster.call("Grant", lease_pb2.LeaseGrantRequest(ttl=ttl), via=via, stub_class=LEASE)
    return response


def time_to_live(cluster: Cluster, lease_id: int, via: str, attachments: bool = False) -> lease_pb2.LeaseTimeToLiveResponse:
    response: lease_pb2.LeaseTimeToLiveResponse = cluster.call(
        "TimeToLive", lease_pb2.LeaseTimeToLiveRequest(id=lease_id, attachments=attachments), via=via, stub_class=LEASE
    )
    return response


def wait_expired(cluster: Cluster, via: str, prefix: bytes, count: int, sent: float, ttl: int) -> float:
    """Poll (linearizable reads of the keys under ``prefix`` on ``via``, one Range each)
    until the ``count`` keys of a lease are gone; every read that ended before
    ``sent + ttl`` must still see them all (the client may rely on its lease until then).
    Returns when, after ``sent``, they were first seen gone."""
    promised = sent + ttl
    request = kv_pb2.RangeRequest(key=prefix, range_end=prefix_end(prefix), count_only=True)
    while True:
        began = time.monotonic()
        present = cluster.call("Range", request, via=via, timeout=10).count
        ended = time.monotonic()
        if present != count:
            assert ended >= promised, f"the lease ended {promised - ended:.2f}s before the TTL the client was promised"
            assert present == 0, f"{present} of the {count} keys of one lease left: not deleted together"
            return ended - sent
        if began > promised + EXPIRY_MARGIN:
            raise AssertionError(f"keys still there {began - sent:.2f}s after the last keepalive (TTL {ttl}s)")
        time.sleep(0.02)


def test_lease_keepalive_through_a_follower_then_expiry(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    follower = followers(cluster, leader)[0]
    u = uuid.uuid4().hex[:8]
    granted = grant(cluster, 1, via=follower)  # the minimum TTL (the server may raise it)
    ttl = granted.ttl
    assert ttl >= 1
    keys = [f"lease-{u}/a".encode(), f"lease-{u}/b".encode()]
    for k in keys:
        cluster.call("Put", kv_pb2.PutRequest(key=k, value=b"held", lease=granted.id))
    described = time_to_live(cluster, granted.id, follower, attachments=True)
    assert described.granted_ttl == ttl and sorted(described.keys) == keys

    keeper = KeepAlive(cluster, follower, granted.id, interval=ttl / 3)
    keeper.start()
    try:
        began = time.monotonic()
        checks = 0
        # Several TTLs long, the keys stay: each check is a linearizable read.
        while time.monotonic() - began < 3 * ttl or len(keeper.answers) < 6:
            assert keys_present(cluster, leader, *keys), f"keys gone while kept alive ({keeper.errors})"
            checks += 1
            if time.monotonic() - began > 60:
                raise HarnessError(f"keepalives too slow: {len(keeper.answers)} answers, errors {keeper.errors}")
            time.sleep(0.05)
    finally:
        keeper.stop()
    assert not keeper.errors, keeper.errors
    assert {t for _, _, t in keeper.answers} == {ttl}
    sent, received, _ = keeper.answers[-1]
    gone_after = wait_expired(cluster, follower, f"lease-{u}/".encode(), len(keys), sent, ttl)
    print(f"\nlease of {ttl}s kept alive through {follower} ({len(keeper.answers)} keepalives, {checks} reads); "
          f"keys gone {gone_after:.2f}s after the last keepalive was sent")
    expect_error(grpc.StatusCode.NOT_FOUND, lambda: cluster.stub(follower, LEASE).TimeToLive(
        lease_pb2.LeaseTimeToLiveRequest(id=granted.id), timeout=10))
    listed = cluster.call("List", lease_pb2.LeaseListRequest(), stub_class=LEASE)
    assert granted.id not in [s.id for s in listed.leases]


def test_lease_time_to_live_decreases_and_revoke_deletes(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    follower = followers(cluster, leader)[0]
    key = f"ttl-{uuid.uuid4().hex[:8]}".encode()
    granted = grant(cluster, 5)
    assert granted.ttl == 5
    cluster.call("Put", kv_pb2.PutRequest(key=key, value=b"x", lease=granted.id))
    seen: list[int] = []

    def decreased() -> bool:
        via = (leader, follower)[len(seen) % 2]  # the leader's clock, asked directly or forwarded
        described = time_to_live(cluster, granted.id, via, attachments=True)
        assert described.granted_ttl == 5 and list(described.keys) == [key]
        seen.append(described.ttl)
        return seen[-1] < seen[0]

    wait_until(decreased, 30, "the remaining TTL to decrease", interval=0.1)
    assert 0 < seen[-1] < seen[0] <= 5
    assert all(a >= b for a, b in zip(seen, seen[1:])), f"TTL went up without a keepalive: {seen}"
    # One keepalive (through the follower) restores it.
    q: queue.Queue[Any] = queue.Queue()
    q.put(lease_pb2.LeaseKeepAliveRequest(id=granted.id))
    q.put(None)
    (renewed,) = list(cluster.stub(follower, LEASE).KeepAlive(_requests(q), timeout=10))
    assert renewed.ttl == 5
    assert time_to_live(cluster, granted.id, leader).ttl >= 4
    cluster.call("Revoke", lease_pb2.LeaseRevokeRequest(id=granted.id), via=follower, stub_class=LEASE)
    assert cluster.get(key, via=follower).count == 0, "revoking deletes the attached key at once"
    expect_error(grpc.StatusCode.NOT_FOUND, lambda: cluster.stub(leader, LEASE).TimeToLive(
        lease_pb2.LeaseTimeToLiveRequest(id=granted.id), timeout=10))


def test_a_kept_alive_lease_survives_a_leader_kill(cluster: Cluster) -> None:
    old = cluster.wait_for_leader()
    follower = followers(cluster, old)[0]
    key = f"lease-kill-{uuid.uuid4().hex[:8]}".encode()
    granted = grant(cluster, 1)
    ttl = granted.ttl
    cluster.call("Put", kv_pb2.PutRequest(key=key, value=b"held", lease=granted.id))
    keeper = KeepAlive(cluster, follower, granted.id, interval=ttl / 4)
    keeper.start()
    reads: list[tuple[float, bool]] = []
    stop_reading = threading.Event()

    def read() -> None:
        channels = Channels()
        try:
            while not stop_reading.is_set():
                try:
                    got = KV(channels.get(cluster.nodes[follower].address)).Range(kv_pb2.RangeRequest(key=key), timeout=2)
                    reads.append((time.monotonic(), got.count == 1))
                except grpc.RpcError:
                    pass  # no leader for a moment: no answer, no verdict
                stop_reading.wait(0.03)
        finally:
            channels.close()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: keeper.answered_since(0) >= 2, 30, "keepalives before the kill")
        cluster.kill(old)
        new = cluster.wait_for_leader(other_than=old)
        elected_at = time.monotonic()
        # The new leader extended the lease; the holder renews through the same follower.
        wait_until(
            lambda: keeper.answered_since(elected_at) >= 4 and time.monotonic() - elected_at >= 2 * ttl,
            30, "keepalives answered by the new leader",
        )
        wait_until(lambda: any(t > elected_at + 2 * ttl for t, _ in reads), 30, "a read after the new leader settled")
        assert time_to_live(cluster, granted.id, new).ttl >= 0, "the new leader keeps the lease"
    finally:
        keeper.stop()
        stop_reading.set()
        reader.join(timeout=30)
    assert reads and all(present for _, present in reads), "the key vanished although its lease was kept alive"
    sent, _, _ = keeper.answers[-1]
    gone_after = wait_expired(cluster, follower, key, 1, sent, ttl)
    print(f"\nlease of {ttl}s survived the kill of {old} ({len(keeper.answers)} keepalives, {len(keeper.errors)} "
          f"reconnects, {len(reads)} reads); gone {gone_after:.2f}s after the last keepalive")
    cluster.start_node(old)
    cluster.wait_caught_up()


# ------------------------------------------------------------------------- 8: SIGTERM


WRITE_RESUME_LIMIT = 1.5
"""Seconds within which a write through a surviving member must succeed after the leader
got SIGTERM. A crashed leader is replaced in about 0.5 s here; a leader that kept leading
through its shutdown's grace period stalled writes for over 2 s."""


def test_sigterm_stops_a_member_cleanly_with_an_open_watch(cluster: Cluster) -> None:
    u = uuid.uuid4().hex[:8]
    prefix = f"term-{u}/".encode()
    for role in ("follower", "leader"):
        leader = cluster.wait_for_leader()
        name = followers(cluster, leader)[0] if role == "follower" else leader
        survivor = next(n for n in followers(cluster, leader) if n != name)
        watch = WatchStream(cluster.nodes[name].address, kv_pb2.WatchCreateRequest(key=prefix, range_end=prefix_end(prefix)))
        exit_codes: list[int] = []
        stopper = threading.Thread(target=lambda: exit_codes.append(cluster.terminate(name, timeout=20)), daemon=True)
        try:
            watch.created()
            cluster.put(f"term-{u}/{role}", "seen")
            wait_until(lambda: watch.events, 30, "the event on the open watch")
            started = time.monotonic()
            stopper.start()  # SIGTERM, then wait for the exit
            # Meanwhile a client of a surviving member keeps writing.
            with grpc.insecure_channel(cluster.nodes[survivor].address) as channel:
                def write() -> kv_pb2.PutResponse:
                    return KV(channel).Put(kv_pb2.PutRequest(key=prefix + f"after-{role}".encode(), value=b"1"), timeout=1)

                wait_until(write, 30, f"a write through {survivor}", interval=0.01)
            resumed = time.monotonic() - started
            stopper.join(timeout=30)
            took = time.monotonic() - started
            assert exit_codes == [0], f"{name} ({role}) exited with {exit_codes} on SIGTERM"
            assert took < 5, f"{name} ({role}) took {took:.1f}s to stop"
            wait_until(watch.ended.is_set, 10, "the watch stream ended")
            assert watch.error is not None and watch.error.code() == grpc.StatusCode.UNAVAILABLE, watch.error
        finally:
            stopper.join(timeout=30)
            watch.close()
        print(f"\nSIGTERM: {role} {name} exited 0 in {took:.2f}s with a watch open ({watch.error.details()!r}); "
              f"writes through {survivor} succeeded {resumed:.2f}s after the signal")
        if role == "leader":
            # It handed leadership over before stopping rather than stall writes until it
            # was gone (a crash would have been quicker).
            assert resumed < WRITE_RESUME_LIMIT, f"writes stalled {resumed:.2f}s after the leader got SIGTERM"
        # The member comes back and catches up.
        cluster.start_node(name)
        cluster.wait_caught_up()
        expected = 2 if role == "follower" else 4  # "<role>" and "after-<role>" per round
        assert cluster.get(f"term-{u}/", prefix=True, serializable=True, via=name).count == expected


# ------------------------------------------------------------------------- 1: membership


def test_add_promote_and_remove_members(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    leader = cluster.wait_for_leader()
    for i in range(30):
        cluster.put(f"member/{i:02d}", "x" * 200)

    # Register the learner first, without its process, so that it cannot catch up yet.
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    added = cluster.call(
        "MemberAdd", cluster_pb2.ClusterMemberAddRequest(name="n4", peer_address=address, client_address=address),
        stub_class=CLUSTER,
    )
    assert added.member.is_learner and added.member.name == "n4" and added.member.id
    new_id = added.member.id
    promote = cluster_pb2.ClusterMemberPromoteRequest(id=new_id)
    with pytest.raises(grpc.RpcError) as refused:
        cluster.call("MemberPromote", promote, stub_class=CLUSTER)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, refused.value
    assert "caught up" in (refused.value.details() or ""), refused.value.details()

    # Now its process: it joins through a follower and finds itself in the member list.
    cluster.nodes["n4"] = cluster._node("n4", address, ["--join", cluster.nodes[followers(cluster, leader)[0]].address])
    cluster.start_node("n4")
    cluster.wait_for_status("n4", lambda s: s.is_learner and s.leader != 0, 60, "a learner that knows the leader")
    assert cluster.status("n4").header.member_id == new_id
    cluster.wait_caught_up(["n4"])
    assert cluster.get("member/", prefix=True, serializable=True, via="n4").count == 30

    def promoted() -> cluster_pb2.ClusterMemberPromoteResponse | None:
        try:
            response: cluster_pb2.ClusterMemberPromoteResponse = cluster.call("MemberPromote", promote, stub_class=CLUSTER)
            return response
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.FAILED_PRECONDITION and "caught up" in (err.details() or ""):
                return None
            raise

    members = wait_until(promoted, 30, "MemberPromote of n4").members
    assert [(m.name, m.is_learner) for m in members if m.id == new_id] == [("n4", False)]
    cluster.wait_for_status("n4", lambda s: not s.is_learner, 30, "a voter")
    expect_error(grpc.StatusCode.FAILED_PRECONDITION, lambda: cluster.call("MemberPromote", promote, stub_class=CLUSTER), "voter")

    # Remove a follower that is not the new member. It is down meanwhile (SIGKILL), so it
    # never learns of its removal: restarted, it runs on with its old membership, hears
    # from no leader, and campaigns. PreVote and CheckQuorum must keep it from disrupting.
    # (Stopping it with SIGSTOP instead is not enough: the appends buffered in its sockets
    # tell it of the removal when it resumes, and it then keeps quiet.)
    leader = cluster.wait_for_leader()
    victim = next(n for n in followers(cluster, leader) if n != "n4")
    victim_id = member_id(cluster, victim)
    term = cluster.status(leader).header.raft_term
    cluster.kill(victim)
    removed = cluster.call("MemberRemove", cluster_pb2.ClusterMemberRemoveRequest(id=victim_id), stub_class=CLUSTER)
    assert victim_id not in [m.id for m in removed.members] and len(removed.members) == 3
    cluster.start_node(victim)
    cluster.wait_for_status(victim, lambda s: True, 30, "any status: serving again")
    detached = cluster.nodes.pop(victim)  # no longer part of "the cluster" for the harness
    try:
        remaining = list(cluster.nodes)
        for name in remaining:
            listing = cluster.stub(name, CLUSTER).MemberList(cluster_pb2.ClusterMemberListRequest(linearizable=True), timeout=10)
            assert sorted(m.name for m in listing.members) == sorted(remaining), name
            assert not any(m.is_learner for m in listing.members)
        began = time.monotonic()
        writes = 0
        views: list[cluster_pb2.ClusterStatusResponse] = []
        with grpc.insecure_channel(detached.address) as channel:
            removed_status = CLUSTER(channel).Status
            # Writes through every remaining member until the removed one has lost its
            # leader (it then campaigns every election timeout), and 2 s and 30 writes more.
            lost_leader_at: float | None = None
            while lost_leader_at is None or time.monotonic() - lost_leader_at < 2.0 or writes < 30:
                via = remaining[writes % len(remaining)]
                cluster.put(f"after-remove/{writes:03d}", "y", via=via, timeout=10)
                writes += 1
                views.append(removed_status(cluster_pb2.ClusterStatusRequest(), timeout=5))
                if lost_leader_at is None and (views[-1].leader == 0 or views[-1].role != cluster_pb2.RAFT_ROLE_FOLLOWER):
                    lost_leader_at = time.monotonic()
                if time.monotonic() - began > 60:
                    raise HarnessError(f"the removed member never lost its leader: {views[-1]}")
        assert detached.running, "the removed process is left running"
        assert cluster.wait_for_leader() == leader
        status = cluster.status(leader)
        assert status.header.raft_term == term, f"the removed member disrupted the cluster: term {term} -> {status.header.raft_term}"
        for name in remaining:
            assert cluster.get("after-remove/", prefix=True, via=name).count == writes
        roles = sorted({cluster_pb2.RaftRole.Name(v.role) for v in views})
        print(f"\nremoved {victim}: cluster term stayed {term} over {writes} writes in {time.monotonic() - began:.1f}s; "
              f"the removed process was seen as {roles}, terms {sorted({v.header.raft_term for v in views})}")
        assert all(v.role != LEADER for v in views)
        # It shuts down cleanly too.
        assert detached.proc is not None
        detached.proc.terminate()
        code = detached.proc.wait(timeout=20)
        assert code == 0, f"the removed member exited with {code}"
    finally:
        if detached.proc is not None and detached.proc.poll() is None:
            detached.proc.kill()
            detached.proc.wait(timeout=30)
