"""Locks, semaphores, elections and rings on a real 3-process cluster, with real client
processes (tests/integration/coord_child.py) that are SIGKILLed.

One cluster serves the whole module (started once: each start costs seconds on two busy
cores); it snapshots every 100 entries so that restores are exercised too. The test that
kills the leader restarts it before it returns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from coord.v1 import (
    election_pb2,
    election_pb2_grpc,
    kv_pb2,
    lease_pb2,
    lease_pb2_grpc,
    lock_pb2,
    lock_pb2_grpc,
    ring_pb2,
    ring_pb2_grpc,
)
from tests.integration.harness import Cluster, HarnessError, running_cluster, wait_until

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
LOCK = lock_pb2_grpc.LockStub
LEASE = lease_pb2_grpc.LeaseStub
ELECTION = election_pb2_grpc.ElectionStub
RING = ring_pb2_grpc.RingStub


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("coordination"), 3, options=("--snapshot-entries", "100")) as c:
        yield c


def addresses(cluster: Cluster) -> str:
    return ",".join(n.address for n in cluster.nodes.values() if n.live)


def grant(cluster: Cluster, ttl: int = 60) -> int:
    return int(cluster.call("Grant", lease_pb2.LeaseGrantRequest(ttl=ttl), stub_class=LEASE).id)


class Child:
    """A coord_child process: its JSON lines as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.coord_child", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def first(self, timeout: float = 30) -> dict[str, Any]:
        wait_until(lambda: self.lines or self.proc.poll() is not None, timeout, "the child's first line")
        if not self.lines:
            raise HarnessError(f"child exited with {self.proc.returncode}: {self.proc.stderr.read() if self.proc.stderr else ''}")
        return self.lines[0]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def finish(self, timeout: float) -> list[dict[str, Any]]:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        self._reader.join(timeout=10)
        if self.proc.returncode != 0:
            raise HarnessError(f"child exited with {self.proc.returncode}: {self.proc.stderr.read() if self.proc.stderr else ''}")
        return self.lines


def fenced_put(lock: str, token: int, key: bytes, value: bytes) -> kv_pb2.TxnRequest:
    return kv_pb2.TxnRequest(
        compare=[kv_pb2.Compare(target=kv_pb2.COMPARE_TARGET_LOCK_TOKEN, result=kv_pb2.COMPARE_RESULT_EQUAL,
                                lock_name=lock, lock_token=token)],
        success=[kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=key, value=value))],
    )


def test_processes_contending_for_a_lock_never_lose_an_increment(cluster: Cluster) -> None:
    procs, rounds = 5, 12
    children = [Child("increment", addresses(cluster), "counter-lock", "counter", str(rounds)) for _ in range(procs)]
    lines = [line for c in children for line in c.finish(timeout=120)]
    increments = [x for x in lines if "token" in x]
    assert len(increments) == procs * rounds and sum("done" in x for x in lines) == procs
    final = cluster.get("counter").kvs[0].value
    assert int(final) == procs * rounds, "every increment happened under the lock, none lost"
    by_value = sorted(increments, key=lambda x: x["value"])
    assert [x["value"] for x in by_value] == list(range(1, procs * rounds + 1))
    tokens = [x["token"] for x in by_value]
    assert all(a < b for a, b in zip(tokens, tokens[1:])), "tokens strictly increase in grant order"
    info = cluster.call("Inspect", lock_pb2.LockInspectRequest(name="counter-lock"), stub_class=LOCK)
    assert info.permits == 0 and not info.holders and not info.waiters


def test_killed_holder_loses_the_lock_at_lease_expiry_and_its_token_is_fenced(cluster: Cluster) -> None:
    holder = Child("hold", addresses(cluster), "kill-lock", "2")
    try:
        first = holder.first()
        old_token = first["token"]
        lease = grant(cluster)
        result: dict[str, Any] = {}

        def wait() -> None:
            result["r"] = cluster.call("Acquire", lock_pb2.LockAcquireRequest(name="kill-lock", lease=lease),
                                       stub_class=LOCK, attempt_timeout=30, timeout=60)

        waiter = threading.Thread(target=wait)
        waiter.start()
        wait_until(lambda: cluster.call("Inspect", lock_pb2.LockInspectRequest(name="kill-lock"),
                                        stub_class=LOCK).waiters, 30, "the waiter in the queue")
        time.sleep(0.5)  # the holder is alive (keepalives) and keeps the lock meanwhile
        assert not result, "no grant while the holder's lease is kept alive"
        killed_at = time.monotonic()
        holder.kill()
        waiter.join(timeout=60)
        granted = result["r"]
        elapsed = time.monotonic() - killed_at
        print(f"holder SIGKILLed: next waiter granted after {elapsed:.2f} s (lease TTL 2 s)")
        assert granted.acquired and granted.token > old_token
        stale = cluster.call("Txn", fenced_put("kill-lock", old_token, b"fenced", b"from the dead"))
        assert not stale.succeeded, "a write fenced by the dead holder's token is rejected"
        assert cluster.call("Txn", fenced_put("kill-lock", granted.token, b"fenced", b"new holder")).succeeded
        cluster.call("Release", lock_pb2.LockReleaseRequest(name="kill-lock", token=granted.token), stub_class=LOCK)
    finally:
        holder.kill()


def test_semaphore_never_exceeds_its_permits(cluster: Cluster) -> None:
    permits, workers, rounds = 3, 8, 6
    inside = 0
    most = 0
    guard = threading.Lock()
    errors: list[BaseException] = []
    seen_holders: list[int] = []

    def worker() -> None:
        nonlocal inside, most
        try:
            lease = grant(cluster)
            for _ in range(rounds):
                got = cluster.call("Acquire", lock_pb2.LockAcquireRequest(name="sem", lease=lease, permits=permits),
                                   stub_class=LOCK, attempt_timeout=30, timeout=60)
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.01)
                with guard:
                    inside -= 1
                cluster.call("Release", lock_pb2.LockReleaseRequest(name="sem", token=got.token), stub_class=LOCK)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        info = cluster.call("Inspect", lock_pb2.LockInspectRequest(name="sem"), stub_class=LOCK)
        seen_holders.append(len(info.holders))
        time.sleep(0.02)
    for t in threads:
        t.join()
    assert not errors, errors[0]
    print(f"semaphore of {permits}: at most {most} holders seen by the workers, "
          f"{max(seen_holders, default=0)} by Inspect")
    assert most <= permits and max(seen_holders, default=0) <= permits
    assert most >= 2, "the semaphore let several holders in at once"


def test_lock_queue_and_holders_survive_a_leader_kill(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    a, b, c = grant(cluster), grant(cluster), grant(cluster)
    held = cluster.call("Acquire", lock_pb2.LockAcquireRequest(name="survivor", lease=a, owner="a"), stub_class=LOCK)
    follower = next(n for n in cluster.nodes if n != leader)
    results: dict[int, Any] = {}

    def wait(lease: int) -> None:
        # Waiting on a member that survives; on UNAVAILABLE the harness retries (same lease:
        # the lease keeps its place in the queue).
        results[lease] = cluster.call("Acquire", lock_pb2.LockAcquireRequest(name="survivor", lease=lease),
                                      via=follower, stub_class=LOCK, attempt_timeout=30, timeout=90)

    threads = []
    for lease in (b, c):
        t = threading.Thread(target=wait, args=(lease,))
        t.start()
        threads.append(t)
        wait_until(lambda lease=lease: lease in [w.lease for w in cluster.call(
            "Inspect", lock_pb2.LockInspectRequest(name="survivor"), stub_class=LOCK).waiters], 30, f"lease {lease} queued")
    before = cluster.call("Inspect", lock_pb2.LockInspectRequest(name="survivor"), stub_class=LOCK)
    cluster.kill(leader)
    cluster.wait_for_leader(other_than=leader)
    after = cluster.call("Inspect", lock_pb2.LockInspectRequest(name="survivor"), stub_class=LOCK)
    assert list(after.holders) == list(before.holders) and list(after.waiters) == list(before.waiters)
    assert [h.token for h in after.holders] == [held.token] and [w.lease for w in after.waiters] == [b, c]
    cluster.call("Release", lock_pb2.LockReleaseRequest(name="survivor", token=held.token), stub_class=LOCK)
    wait_until(lambda: b in results, 60, "the first waiter granted by the new leader")
    assert results[b].token > held.token and c not in results
    cluster.call("Release", lock_pb2.LockReleaseRequest(name="survivor", token=results[b].token), stub_class=LOCK)
    for t in threads:
        t.join(timeout=60)
    assert results[c].token > results[b].token
    # The killed member comes back, restores its snapshot and log, and agrees.
    cluster.start_node(leader)
    cluster.wait_caught_up()
    restored = cluster.stub(leader, LOCK).Inspect(lock_pb2.LockInspectRequest(name="survivor", serializable=True), timeout=10)
    assert [(h.lease, h.token) for h in restored.holders] == [(c, results[c].token)]


def test_election_hands_over_on_lease_expiry_and_resign(cluster: Cluster) -> None:
    el = cluster.stub(cluster.wait_for_leader(), ELECTION)
    observe = el.Observe(election_pb2.ElectionObserveRequest(name="el"), timeout=90)
    seen: list[tuple[int, bytes]] = []

    def follow() -> None:
        try:
            for r in observe:
                seen.append((r.leader.lease if r.HasField("leader") else 0, r.value))
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    wait_until(lambda: seen, 30, "the first Observe response")
    b, c = grant(cluster), grant(cluster)
    short = grant(cluster, ttl=2)  # never kept alive: it expires after 2 s
    first = cluster.call("Campaign", election_pb2.ElectionCampaignRequest(name="el", lease=short, value=b"A"),
                         stub_class=ELECTION)
    results: dict[int, Any] = {}

    def campaign(lease: int, value: bytes) -> None:
        results[lease] = cluster.call("Campaign", election_pb2.ElectionCampaignRequest(name="el", lease=lease, value=value),
                                      stub_class=ELECTION, attempt_timeout=30, timeout=60)

    tb = threading.Thread(target=campaign, args=(b, b"B"))
    tb.start()  # queued behind A, well within A's 2 s
    tb.join(timeout=60)
    assert results[b].leader.lease == b and results[b].leader.token > first.leader.token
    tc = threading.Thread(target=campaign, args=(c, b"C"))
    tc.start()
    cluster.call("Proclaim", election_pb2.ElectionProclaimRequest(leader=results[b].leader, value=b"B2"),
                 stub_class=ELECTION)
    wait_until(lambda: (b, b"B2") in seen, 30, "the proclamation observed")
    cluster.call("Resign", election_pb2.ElectionResignRequest(leader=results[b].leader), stub_class=ELECTION)
    tc.join(timeout=60)
    assert results[c].leader.lease == c and results[c].leader.token > results[b].leader.token
    wait_until(lambda: len(seen) >= 5, 30, "every change observed")
    observe.cancel()
    assert seen[:5] == [(0, b""), (short, b"A"), (b, b"B"), (b, b"B2"), (c, b"C")], "every change, in order"
    leader = cluster.call("Leader", election_pb2.ElectionLeaderRequest(name="el"), stub_class=ELECTION)
    assert leader.leader == results[c].leader and leader.value == b"C"


def test_ephemeral_ring_member_leaves_when_its_process_dies(cluster: Cluster) -> None:
    cluster.call("Join", ring_pb2.RingJoinRequest(ring="cache", member_id="stable", address="s:1"), stub_class=RING)
    child = Child("ring-member", addresses(cluster), "cache", "ephemeral", "2")
    try:
        joined = child.first()
        watch = cluster.stub(cluster.wait_for_leader(), RING).Watch(
            ring_pb2.RingWatchRequest(ring="cache", after_version=joined["version"] - 1), timeout=60)
        versions: list[tuple[int, list[str]]] = []

        def follow() -> None:
            try:
                for r in watch:
                    versions.append((r.version, [m.id for m in r.members]))
            except grpc.RpcError:
                pass

        threading.Thread(target=follow, daemon=True).start()
        wait_until(lambda: versions, 30, "the ring's current version")
        assert versions[0] == (joined["version"], ["ephemeral", "stable"])
        got = cluster.call("Get", ring_pb2.RingGetRequest(ring="cache"), stub_class=RING)
        lookup = cluster.call("Lookup", ring_pb2.RingLookupRequest(ring="cache", key=b"k", n=5), stub_class=RING)
        assert sorted(m.id for m in lookup.members) == ["ephemeral", "stable"] and lookup.version == got.version
        child.kill()
        wait_until(lambda: len(versions) >= 2, 30, "the version without the dead member")
        watch.cancel()
        version, members = versions[1]
        assert version > joined["version"] and members == ["stable"]
        assert [m.id for m in cluster.call("Get", ring_pb2.RingGetRequest(ring="cache"), stub_class=RING).members] == ["stable"]
    finally:
        child.kill()


def test_bad_input_gets_a_clear_status(cluster: Cluster) -> None:
    def code(method: str, request: Any, stub: Any) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as info:
            cluster.call(method, request, stub_class=stub)
        return info.value.code()

    lease = grant(cluster)
    invalid, not_found = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    assert code("Acquire", lock_pb2.LockAcquireRequest(name="", lease=lease), LOCK) == invalid
    assert code("Acquire", lock_pb2.LockAcquireRequest(name="x", lease=987654321), LOCK) == not_found
    assert code("Release", lock_pb2.LockReleaseRequest(name="x", token=12345), LOCK) == grpc.StatusCode.FAILED_PRECONDITION
    assert code("Campaign", election_pb2.ElectionCampaignRequest(name="", lease=lease), ELECTION) == invalid
    assert code("Campaign", election_pb2.ElectionCampaignRequest(name="e", lease=987654321), ELECTION) == not_found
    assert code("Join", ring_pb2.RingJoinRequest(ring="", member_id="m"), RING) == invalid
    assert code("Join", ring_pb2.RingJoinRequest(ring="r", member_id="m", weight=70000), RING) == invalid
    assert code("Join", ring_pb2.RingJoinRequest(ring="r", member_id="m", lease=987654321), RING) == not_found
    assert code("Lookup", ring_pb2.RingLookupRequest(ring="no-such-ring", key=b"k"), RING) == not_found
    cluster.call("Join", ring_pb2.RingJoinRequest(ring="r", member_id="m", weight=0), stub_class=RING)
    every = cluster.call("Lookup", ring_pb2.RingLookupRequest(ring="r", key=b"k", n=10), stub_class=RING)
    assert [m.id for m in every.members] == ["m"] and every.members[0].weight == 1, "n over the size: all members"
