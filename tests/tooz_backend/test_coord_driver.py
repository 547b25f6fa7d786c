"""What the coord tooz driver guarantees beyond what tooz's suite accepts.

tooz's tests accept any lock that excludes; coord's locks also fence (a token strictly
increasing per name, on the lock object), queue waiters first come first served, and are
freed when a holder process dies. A partitioned group places objects exactly as the
server's Ring.Lookup does, on every member.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import pytest
from tooz import coordination

from coord_client import Client, Compare, Op
from coord_client.tooz_driver import CoordLock, _id_str
from tests.integration.harness import Cluster, wait_until


def _coordinator(url: str, **options: object) -> coordination.CoordinationDriver:
    coord = coordination.get_coordinator(url, uuid.uuid4().hex.encode(), **options)
    coord.start()
    return coord


def _client(cluster: Cluster) -> Client:
    return Client([n.address for n in cluster.nodes.values()])


def test_get_coordinator_finds_the_coord_driver_by_url(tooz_url: str) -> None:
    coord = _coordinator(tooz_url)
    try:
        assert type(coord).__module__ == "coord_client.tooz_driver"
        assert coordination.Characteristics.LINEARIZABLE in coord.CHARACTERISTICS
    finally:
        coord.stop()


def test_fencing_tokens_strictly_increase_across_holders(tooz_url: str, tooz_cluster: Cluster) -> None:
    name = uuid.uuid4().hex.encode()
    coords = [_coordinator(tooz_url) for _ in range(3)]
    tokens = []
    try:
        with _client(tooz_cluster) as client:
            for coord in coords * 2:
                lock = coord.get_lock(name)
                assert isinstance(lock, CoordLock)
                assert lock.fencing_token == 0
                assert lock.acquire(blocking=5)
                holders = client.lock_info(f"tooz/lock/{_id_str(name)}").holders
                assert [h.token for h in holders] == [lock.fencing_token]
                tokens.append(lock.fencing_token)
                assert lock.release()
                assert lock.fencing_token == 0
    finally:
        for coord in coords:
            coord.stop()
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), tokens


def test_waiters_get_the_lock_in_the_order_they_asked(tooz_url: str, tooz_cluster: Cluster) -> None:
    name = uuid.uuid4().hex.encode()
    coord_name = f"tooz/lock/{_id_str(name)}"
    holder = _coordinator(tooz_url)
    waiters = [_coordinator(tooz_url) for _ in range(4)]
    order: list[int] = []
    tokens: list[int] = []
    done = threading.Lock()

    def wait_for_lock(i: int) -> None:
        lock = waiters[i].get_lock(name)
        assert lock.acquire(blocking=30)
        with done:
            order.append(i)
            tokens.append(lock.fencing_token)
        lock.release()

    threads = []
    try:
        with _client(tooz_cluster) as client:
            first = holder.get_lock(name)
            assert first.acquire()
            for i in range(len(waiters)):
                t = threading.Thread(target=wait_for_lock, args=(i,), daemon=True)
                t.start()
                threads.append(t)
                # The next waiter starts only once this one is queued on the server.
                wait_until(lambda: len(client.lock_info(coord_name).waiters) == i + 1, 20, f"waiter {i} queued")
            assert first.release()
            for t in threads:
                t.join(30)
    finally:
        for coord in [holder, *waiters]:
            coord.stop()
    assert order == [0, 1, 2, 3]
    assert tokens == sorted(tokens)


CHILD = """
import sys, time
from tooz import coordination
coord = coordination.get_coordinator(sys.argv[1], b"doomed", timeout=2)
coord.start()
lock = coord.get_lock(sys.argv[2].encode())
assert lock.acquire()
print(lock.fencing_token, flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_dead_holder_loses_the_lock_and_its_token_is_refused(tooz_url: str, tooz_cluster: Cluster) -> None:
    name = uuid.uuid4().hex
    child = subprocess.Popen([sys.executable, "-c", CHILD, tooz_url, name], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        dead_token = int(child.stdout.readline())
    finally:
        child.kill()
        child.wait()
    coord = _coordinator(tooz_url)
    try:
        lock = coord.get_lock(name.encode())
        started = time.monotonic()
        assert lock.acquire(blocking=20), "the dead holder's lock was never freed"
        assert time.monotonic() - started < 15
        assert lock.fencing_token > dead_token
        with _client(tooz_cluster) as client:
            coord_name = f"tooz/lock/{_id_str(name.encode())}"
            stale = client.txn().when(Compare.lock_token(coord_name) == dead_token).then(Op.put("fenced", "x")).commit()
            fresh = client.txn().when(Compare.lock_token(coord_name) == lock.fencing_token).then(Op.put("fenced", "y")).commit()
        assert not stale.succeeded and fresh.succeeded
        lock.release()
    finally:
        coord.stop()


def test_partitioners_agree_with_the_servers_ring(tooz_url: str, tooz_cluster: Cluster) -> None:
    group = uuid.uuid4().hex.encode()
    coords = [_coordinator(tooz_url) for _ in range(3)]
    try:
        parts = [c.join_partitioned_group(group, weight=w) for c, w in zip(coords, (1, 2, 3))]
        for c in coords:
            c.run_watchers()
        assert all(len(p.ring.nodes) == 3 for p in parts)
        with _client(tooz_cluster) as client:
            ring = f"tooz/ring/{_id_str(group)}"
            for i in range(40):
                obj = f"object-{i}"
                server = {m.id.encode() for m in client.ring_lookup(ring, obj.encode(), 1)}
                for p in parts:
                    assert p.members_for_object(obj) == server
        # A member whose coordinator stops leaves the ring (its session lease ends).
        coords.pop().stop()
        for c in coords:
            c.run_watchers()
        assert all(len(p.ring.nodes) == 2 for p in parts[:2])
    finally:
        for c in coords:
            c.stop()


def test_a_member_whose_session_expires_leaves_its_group(tooz_url: str) -> None:
    group = uuid.uuid4().hex.encode()
    watcher = _coordinator(tooz_url)
    silent = _coordinator(tooz_url, timeout=2)
    try:
        watcher.create_group(group).get()
        silent.join_group(group, {"role": "worker"}).get()
        left: list[coordination.MemberLeftGroup] = []
        watcher.watch_leave_group(group, left.append)
        watcher.heartbeat()
        # No heartbeat from the silent member: its session lease (2 s) expires.
        wait_until(lambda: bool(watcher.run_watchers()) or bool(left), 20, "the silent member to leave")
        assert [e.member_id for e in left] == [silent._member_id]
        assert silent._member_id not in watcher.get_members(group).get()
    finally:
        watcher.stop()
        silent.stop()


def test_a_heartbeat_after_the_session_expired_starts_a_new_one(tooz_url: str) -> None:
    group = uuid.uuid4().hex.encode()
    coord = _coordinator(tooz_url, timeout=1)
    try:
        coord.create_group(group).get()
        coord.join_group(group).get()
        old = coord.fencing_session
        wait_until(lambda: coord._member_id not in coord.get_members(group).get(), 20, "the session to expire")
        with pytest.raises(coordination.ToozConnectionError):
            coord.heartbeat()
        assert coord.fencing_session != old
        coord.heartbeat()  # the new session is alive
        coord.join_group(group).get()  # and serves the next calls
        assert coord._member_id in coord.get_members(group).get()
    finally:
        coord.stop()
