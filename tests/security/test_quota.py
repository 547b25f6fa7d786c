"""Quotas and abuse through real coord-server processes: the backend size quota (reached,
then relieved by delete + compact), leases per client, watchers per stream, and a flood
of bad requests from one process that leaves another client served.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time

import grpc
import pytest

from coord.v1 import kv_pb2, kv_pb2_grpc, lease_pb2, lease_pb2_grpc
from coord_client import Client, Compare, Op, errors
from tests.integration.harness import Cluster, wait_until

from .conftest import ROOT

pytestmark = pytest.mark.slow

QUOTA = 64 * 1024


@pytest.fixture(scope="module")
def limited(module_cluster) -> Cluster:  # type: ignore[no-untyped-def]
    return module_cluster(3, options=(  # type: ignore[no-any-return]
        "--quota-bytes", str(QUOTA), "--max-watches-per-stream", "3", "--max-leases-per-client", "3"))


def endpoints(cluster: Cluster) -> str:
    return ",".join(n.address for n in cluster.nodes.values())


def test_leases_per_client_are_limited(limited: Cluster) -> None:
    channel = grpc.insecure_channel(limited.nodes["n2"].address)
    lease = lease_pb2_grpc.LeaseStub(channel)
    ids = [lease.Grant(lease_pb2.LeaseGrantRequest(ttl=60), timeout=10).id for _ in range(3)]
    with pytest.raises(grpc.RpcError) as err:
        lease.Grant(lease_pb2.LeaseGrantRequest(ttl=60), timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-leases-per-client" in (err.value.details() or "")
    lease.Revoke(lease_pb2.LeaseRevokeRequest(id=ids.pop()), timeout=10)
    # The member counts live leases in its own applied state, which learns of the revoke
    # within a heartbeat when it follows.
    ids.append(wait_until(lambda: lease.Grant(lease_pb2.LeaseGrantRequest(ttl=60), timeout=10).id, 10,
                          "a grant once a lease was revoked"))
    # Another connection is another client (channels share connections unless told not to).
    other = grpc.insecure_channel(limited.nodes["n2"].address, options=[("grpc.use_local_subchannel_pool", 1)])
    extra = lease_pb2_grpc.LeaseStub(other).Grant(lease_pb2.LeaseGrantRequest(ttl=60), timeout=10).id
    for lease_id in (*ids, extra):
        lease.Revoke(lease_pb2.LeaseRevokeRequest(id=lease_id), timeout=10)
    channel.close()
    other.close()


def test_grants_sent_at_once_count_against_the_limit_too(limited: Cluster) -> None:
    """Grants wait for a commit before they are recorded: eight sent together from one
    client must not all pass a limit of three."""
    channel = grpc.insecure_channel(limited.nodes["n1"].address)
    lease = lease_pb2_grpc.LeaseStub(channel)
    calls = [lease.Grant.future(lease_pb2.LeaseGrantRequest(ttl=60), timeout=10) for _ in range(8)]
    granted, refused = [], 0
    for call in calls:
        try:
            granted.append(call.result().id)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
            refused += 1
    assert len(granted) == 3 and refused == 5
    for lease_id in granted:
        lease.Revoke(lease_pb2.LeaseRevokeRequest(id=lease_id), timeout=10)
    channel.close()


def test_grants_on_a_pipeline_pass_the_same_limit(limited: Cluster) -> None:
    """Lease grants sent as KV.Pipeline ops (as coord_client sends them) count against the
    per-client limit as unary grants do: eight in one message, three granted; once one
    is revoked, a fourth passes after the limit's ReadIndex round."""
    channel = grpc.insecure_channel(limited.nodes["n1"].address)
    kv, lease = kv_pb2_grpc.KVStub(channel), lease_pb2_grpc.LeaseStub(channel)

    def grant_ops(first: int, count: int) -> list[kv_pb2.PipelineResult]:
        ops = [kv_pb2.PipelineOp(id=first + i, lease_grant=lease_pb2.LeaseGrantRequest(ttl=60)) for i in range(count)]
        results = [r for response in kv.Pipeline(iter([kv_pb2.PipelineRequest(ops=ops)]), timeout=20)
                   for r in response.results]
        assert sorted(r.id for r in results) == [first + i for i in range(count)]
        return results

    results = grant_ops(1, 8)
    granted = [r.lease_grant.id for r in results if r.code == 0]
    codes = sorted({r.code for r in results if r.code})
    assert len(granted) == 3 and codes == [grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]], results
    assert all(r.lease_grant.ttl >= 60 for r in results if r.code == 0)
    lease.Revoke(lease_pb2.LeaseRevokeRequest(id=granted.pop()), timeout=10)
    again = wait_until(lambda: [r for r in grant_ops(100, 1) if r.code == 0], 10, "a pipelined grant once a lease was revoked")
    granted.append(again[0].lease_grant.id)
    listed = {le.id for le in lease.List(lease_pb2.LeaseListRequest(), timeout=10).leases}
    assert set(granted) <= listed
    for lease_id in granted:
        lease.Revoke(lease_pb2.LeaseRevokeRequest(id=lease_id), timeout=10)
    channel.close()


PIPELINED_IDS = 1 << 40


def listed_leases(lease: lease_pb2_grpc.LeaseStub) -> set[int]:
    return {le.id for le in lease.List(lease_pb2.LeaseListRequest(), timeout=10).leases}


def test_pipelined_grants_with_tiny_timeouts_still_count(limited: Cluster) -> None:
    """An op's timeout ends only its wait, not its grant: lease_grant ops sent with
    timeout_ms=1, message after message, may leave at most three leases, and the next
    grant is refused. (The timeout used to free the slot while the grant committed.)
    Their IDs are chosen, PIPELINED_IDS and up: one this member forwarded and lost
    track of may still commit after the test, and the next test must tell it apart."""
    channel = grpc.insecure_channel(limited.nodes["n1"].address)
    kv, lease = kv_pb2_grpc.KVStub(channel), lease_pb2_grpc.LeaseStub(channel)
    before = listed_leases(lease)

    def send(first: int, count: int, timeout_ms: int) -> list[kv_pb2.PipelineResult]:
        ops = [kv_pb2.PipelineOp(id=first + i, timeout_ms=timeout_ms,
                                 lease_grant=lease_pb2.LeaseGrantRequest(id=PIPELINED_IDS + first + i, ttl=60))
               for i in range(count)]
        return [r for response in kv.Pipeline(iter([kv_pb2.PipelineRequest(ops=ops)]), timeout=20)
                for r in response.results]

    sent = 0
    deadline = time.monotonic() + 20
    while len(listed_leases(lease) - before) < 3 and time.monotonic() < deadline:
        send(sent, 20, 1)
        sent += 20
    final = send(10_000, 1, 0)[0]
    new = listed_leases(lease) - before
    for lease_id in new:
        lease.Revoke(lease_pb2.LeaseRevokeRequest(id=lease_id), timeout=10)
    channel.close()
    assert final.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], (final, len(new), sent)
    assert len(new) == 3 and all(i >= PIPELINED_IDS for i in new), (new, sent)


def test_unary_grants_with_tiny_deadlines_still_count(limited: Cluster) -> None:
    """The same through the unary Lease.Grant: a caller's deadline passing (here one of
    a few milliseconds, through a follower) does not free its grant's place."""
    channel = grpc.insecure_channel(limited.nodes["n2"].address)
    lease = lease_pb2_grpc.LeaseStub(channel)
    before = listed_leases(lease)
    sent = 0
    deadline = time.monotonic() + 20
    while len(listed_leases(lease) - before) < 3 and time.monotonic() < deadline:
        calls = [lease.Grant.future(lease_pb2.LeaseGrantRequest(ttl=60), timeout=0.005) for _ in range(10)]
        for call in calls:
            try:
                call.result()
            except grpc.RpcError:
                pass
        sent += len(calls)
    try:
        lease.Grant(lease_pb2.LeaseGrantRequest(ttl=60), timeout=10)
        refused = None
    except grpc.RpcError as err:
        refused = err.code()
    new = {i for i in listed_leases(lease) - before if i < PIPELINED_IDS}
    for lease_id in new:
        lease.Revoke(lease_pb2.LeaseRevokeRequest(id=lease_id), timeout=10)
    channel.close()
    assert refused == grpc.StatusCode.RESOURCE_EXHAUSTED, (refused, new, sent)
    assert len(new) == 3, (new, sent)


def test_watchers_per_stream_are_limited(limited: Cluster) -> None:
    channel = grpc.insecure_channel(limited.nodes["n1"].address)
    requests: list[kv_pb2.WatchRequest] = [
        kv_pb2.WatchRequest(create_request=kv_pb2.WatchCreateRequest(key=f"w/{i}".encode())) for i in range(4)
    ]
    stream = kv_pb2_grpc.KVStub(channel).Watch(iter(requests), timeout=20)
    created = []
    with pytest.raises(grpc.RpcError) as err:
        for response in stream:
            created.append(response.watch_id)
    assert len(created) == 3
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
    assert "--max-watches-per-stream" in (err.value.details() or "")
    channel.close()


def test_quota_reached_then_relieved_by_delete_and_compact(limited: Cluster) -> None:
    with Client(endpoints(limited), timeout=20) as client:
        held = client.grant_lease(60)
        written = 0
        with pytest.raises(errors.ResourceExhausted, match="quota"):
            for written in range(1, 200):  # 64 KiB of 1 KiB values: well under 200
                client.put(f"q/{written:04}", b"v" * 1024)
        assert 50 <= written < 200
        before = client.range("q/", "q0", count_only=True).count
        # Writes that grow the store are refused; nothing was written by them.
        with pytest.raises(errors.ResourceExhausted):
            client.txn().when(Compare.missing("q/new")).then(Op.put("q/new", "x")).commit()
        with pytest.raises(errors.ResourceExhausted):
            client.grant_lease(60)
        assert client.get("q/new") is None
        # Reads, revokes and deletes still work; deletes alone do not free space (MVCC).
        assert client.range("q/", "q0", count_only=True).count == before
        client.revoke_lease(held)
        deleted = client.delete_prefix("q/")
        assert deleted.deleted == before
        with pytest.raises(errors.ResourceExhausted):
            client.put("q/after-delete", "x")
        # Compaction drops the history: space is back on every member.
        client.compact(deleted.revision, physical=True)
        for name in limited.nodes:
            with Client(limited.nodes[name].address, timeout=20) as member:
                wait_until(lambda: member.put(f"q/relieved-{name}", "x"), 30, f"a put through {name} after compaction")
        client.grant_lease(60)


@pytest.fixture(scope="module")
def open_cluster(module_cluster) -> Cluster:  # type: ignore[no-untyped-def]
    return module_cluster(3, options=("--max-leases-per-client", "10"))  # type: ignore[no-any-return]


def test_a_flood_from_one_client_leaves_others_served(open_cluster: Cluster) -> None:
    """A separate process floods one member for a few seconds with oversized, undecodable
    and invalid requests, lease grants and watch streams it never reads (on the victim's
    keys, so the member has events to buffer for it), past its lease limit; meanwhile the victim's puts, through
    the same member, keep succeeding with bounded latency."""
    address = open_cluster.nodes["n1"].address
    flood_seconds = 4.0
    with Client(address, timeout=20) as victim:
        baseline = [_timed_put(victim, f"victim/base-{i}") for i in range(30)]
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.security.flood_child", address, str(flood_seconds), "victim/"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            latencies: list[float] = []
            started = time.monotonic()
            stop = threading.Event()
            threading.Timer(flood_seconds, stop.set).start()
            while not stop.is_set():
                latencies.append(_timed_put(victim, f"victim/{len(latencies)}", b"v" * 512))
            elapsed = time.monotonic() - started
            out, err = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 0, err
    report = json.loads(out)
    # The flood happened and was refused with the right codes.
    assert report["oversized"].get("RESOURCE_EXHAUSTED", 0) > 0, report
    assert set(report["oversized"]) == {"RESOURCE_EXHAUSTED"}, report
    assert report["undecodable"].get("OK", 0) == 0 and sum(report["undecodable"].values()) > 0, report
    assert set(report["invalid"]) == {"INVALID_ARGUMENT"}, report
    assert report["lease"].get("RESOURCE_EXHAUSTED", 0) > 0 and report["lease"].get("OK", 0) <= 10, report
    assert report["watch"]["opened"] > 10, report
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"victim: {len(latencies)} puts in {elapsed:.1f}s during the flood, p50 {p50 * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms; before: p50 "
          f"{statistics.median(baseline) * 1000:.1f} ms; flood: {report}")
    assert len(latencies) >= 20
    assert p50 < 0.5 and latencies[-1] < 3.0


def _timed_put(client: Client, key: str, value: bytes = b"v") -> float:
    started = time.monotonic()
    client.put(key, value)
    return time.monotonic() - started
