"""The client library's surface against the shared 3-process cluster: KV, transactions,
watches and compaction, leases, locks and semaphores, elections, rings, cluster calls,
errors, and the sync and async clients having the same methods.

Failover, watch resumption across a leader kill and lost locks have their own modules.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time

import pytest

from coord_client import (
    AsyncClient,
    Client,
    Compacted,
    Compare,
    EventType,
    HashMode,
    InvalidArgument,
    LeaseNotFound,
    LockNotHeld,
    Op,
    Role,
    errors,
    resolve_endpoints,
)
from coord_client.hashring import HashRing
from tests.client.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


# ----------------------------------------------------------------------- no cluster needed


def test_sync_and_async_clients_have_the_same_surface() -> None:
    def public(cls: type) -> dict[str, list[str]]:
        return {
            name: [p for p in inspect.signature(fn).parameters if p != "self"]
            for name, fn in vars(cls).items()
            if callable(fn) and not name.startswith("_")
        }

    sync, aio = public(Client), public(AsyncClient)
    assert sorted(sync) == sorted(aio)
    for name in sync:
        assert sync[name] == aio[name], name


def test_endpoints_come_from_the_argument_the_environment_or_the_local_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COORD_ENDPOINTS", raising=False)
    assert resolve_endpoints() == ["127.0.0.1:7379", "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
    monkeypatch.setenv("COORD_ENDPOINTS", "10.0.0.1:1, http://10.0.0.2:2")
    assert resolve_endpoints() == ["10.0.0.1:1", "10.0.0.2:2"]
    assert resolve_endpoints(["h:3"]) == ["h:3"]
    with pytest.raises(InvalidArgument):
        resolve_endpoints("nohost")


def test_compare_builds_what_the_proto_says() -> None:
    c = Compare.value("k") == "v"
    assert (c.key, c.expected) == (b"k", b"v")
    assert (Compare.version("k") > 3).expected == 3
    assert Compare.lock_token("jobs").eq(7).lock_name == "jobs"
    assert Compare.mod_revision("a/", prefix=True).lt(5).range_end == b"a0"
    with pytest.raises(TypeError):
        Compare.version("k").eq(b"x")


# ----------------------------------------------------------------------- KV


def test_put_get_prefix_delete(client: Client, ns: str) -> None:
    first = client.put(ns + "a", "1")
    second = client.put(ns + "a", b"2", prev_kv=True)
    assert second.revision > first.revision
    assert second.prev_kv is not None and second.prev_kv.value == b"1"
    client.put(ns + "b", "3")
    kv = client.get(ns + "a")
    assert kv is not None and (kv.value, kv.version, kv.value_str) == (b"2", 2, "2")
    assert client.get(ns + "missing") is None
    assert [k.key for k in client.get_prefix(ns)] == [(ns + "a").encode(), (ns + "b").encode()]
    old = client.get(ns + "a", revision=first.revision)
    assert old is not None and old.value == b"1"
    assert client.range(ns, count_only=True, range_end=ns[:-1] + "0").count == 2
    assert client.delete(ns, prefix=True).deleted == 2
    assert client.get_prefix(ns) == []


def test_txn_builder(client: Client, ns: str) -> None:
    key = ns + "config"
    client.put(key, "v1")
    won = client.txn().when(Compare.value(key) == "v1").then(Op.put(key, "v2"), Op.get(key)).otherwise(Op.get(key)).commit()
    assert won.succeeded
    assert won.responses[1].kvs[0].value == b"v2"  # type: ignore[union-attr]
    lost = client.txn().when(Compare.value(key) == "v1").then(Op.put(key, "v3")).otherwise(Op.get(key)).commit()
    assert not lost.succeeded and lost.responses[0].kvs[0].value == b"v2"  # type: ignore[union-attr]
    created = client.txn().when(Compare.missing(ns + "new")).then(Op.put(ns + "new", "x")).commit()
    assert created.succeeded
    assert not client.txn().when(Compare.missing(ns + "new")).then(Op.put(ns + "new", "y")).commit().succeeded


def test_errors_carry_the_servers_message(client: Client, ns: str) -> None:
    with pytest.raises(InvalidArgument) as bad:
        client.put("", "x")
    assert "key" in str(bad.value) and bad.value.code is not None
    with pytest.raises(LeaseNotFound):
        client.put(ns + "k", "v", lease=987654321)
    with pytest.raises(LeaseNotFound):
        client.revoke_lease(987654321)
    with pytest.raises(errors.RevisionOutOfRange):
        client.get(ns + "k", revision=10**9)


def test_compaction_and_watch_that_cannot_resume(client: Client, ns: str) -> None:
    first = client.put(ns + "w", "1").revision
    client.put(ns + "w", "2")
    third = client.put(ns + "w", "3").revision
    events = client.watch(ns + "w", start_revision=first)
    assert [e.value for e in (next(events), next(events), next(events))] == [b"1", b"2", b"3"]
    events.cancel()
    client.compact(third)
    with pytest.raises(Compacted) as gone:
        client.get(ns + "w", revision=first)
    assert gone.value.compacted_revision == third
    with pytest.raises(Compacted) as gone_watch:
        next(iter(client.watch(ns + "w", start_revision=first)))
    assert gone_watch.value.compacted_revision > first


def test_watch_prefix_sees_puts_and_deletes_in_order(client: Client, ns: str) -> None:
    with client.watch(ns, prefix=True, prev_kv=True) as events:
        client.put(ns + "x", "1")
        client.put(ns + "y", "2")
        client.delete(ns + "x")
        got = [next(events) for _ in range(3)]
    assert [(e.type, e.key, e.value) for e in got] == [
        (EventType.PUT, (ns + "x").encode(), b"1"),
        (EventType.PUT, (ns + "y").encode(), b"2"),
        (EventType.DELETE, (ns + "x").encode(), b""),
    ]
    assert got[2].prev_kv is not None and got[2].prev_kv.value == b"1"
    assert got[0].revision < got[1].revision < got[2].revision


def test_watch_cancel_from_another_thread_ends_iteration(client: Client, ns: str) -> None:
    events = client.watch(ns + "quiet").start()
    threading.Timer(0.3, events.cancel).start()
    assert list(events) == []


# ----------------------------------------------------------------------- leases


def test_lease_context_keeps_alive_past_its_ttl_and_revokes_on_exit(client: Client, ns: str) -> None:
    with client.lease(ttl=1) as lease:
        client.put(ns + "eph", "x", lease=lease)
        time.sleep(2.5)  # > 2 TTLs: only the background keep-alive keeps it
        assert lease.alive and not lease.lost.is_set()
        info = lease.time_to_live(attachments=True)
        assert info.keys == ((ns + "eph").encode(),) and info.granted_ttl >= 1
        assert lease.id in [l.id for l in client.leases()]
    assert client.get(ns + "eph") is None
    with pytest.raises(LeaseNotFound):
        client.lease_info(lease.id)


def test_lease_revoked_elsewhere_is_reported_lost(client: Client, endpoints: str) -> None:
    lease = client.grant_lease(3)
    seen: list[int] = []
    lease.on_lost(lambda l: seen.append(l.id))
    with Client(endpoints) as other:
        other.revoke_lease(lease.id)
    assert lease.lost.wait(5)
    assert seen == [lease.id] and "revoked" in lease.lost_reason
    with pytest.raises(errors.LeaseLost):
        lease.check()
    with pytest.raises(errors.LeaseLost), client.lease(ttl=3) as scoped:
        with Client(endpoints) as other:
            other.revoke_lease(scoped.id)
        assert scoped.lost.wait(5)
    own = client.grant_lease(3)
    client.revoke_lease(own.id)  # by ID: the client's own Lease object learns too
    assert own.lost.is_set() and not own.keepalive


# ----------------------------------------------------------------------- locks


def test_lock_is_exclusive_and_tokens_increase(client: Client, endpoints: str, ns: str) -> None:
    name = ns + "lock"
    order: list[tuple[str, int]] = []
    with client.lock(name, ttl=5) as held:
        first = held.fencing_token
        assert held.is_held and first > 0
        info = client.lock_info(name)
        assert [h.token for h in info.holders] == [first]

        def contender() -> None:
            with Client(endpoints) as other, other.lock(name, ttl=5) as second:
                order.append(("second", second.fencing_token))

        t = threading.Thread(target=contender)
        t.start()
        wait_for(lambda: client.lock_info(name).waiters, 10, "the contender to queue")
        assert not client.lock(name, ttl=5).acquire(wait=False)
        order.append(("first", first))
    t.join(20)
    assert [who for who, _ in order] == ["first", "second"]
    assert order[1][1] > order[0][1]
    assert client.lock_info(name).holders == ()


def test_lock_timeout_and_fenced_write(client: Client, ns: str) -> None:
    name = ns + "fence"
    with client.lock(name, ttl=5) as held:
        token = held.fencing_token  # the block's exit clears it
        with pytest.raises(errors.DeadlineExceeded):
            client.lock(name, ttl=5, timeout=0.5).acquire()
        guarded = client.txn().when(Compare.lock_token(name) == token).then(Op.put(ns + "r", "ok")).commit()
        assert guarded.succeeded
    stale = client.txn().when(Compare.lock_token(name) == token).then(Op.put(ns + "r", "late")).commit()
    assert not stale.succeeded
    assert client.lock_info(name).waiters == ()  # the timed-out waiter left the queue


def test_semaphore_admits_permits_holders(client: Client, ns: str) -> None:
    name = ns + "sem"
    a, b, c = (client.semaphore(name, 2, ttl=5) for _ in range(3))
    assert a.acquire() and b.acquire()
    assert not c.acquire(wait=False)
    assert len(client.lock_info(name).holders) == 2
    a.release()
    assert c.acquire(timeout=5)
    b.release()
    c.release()



def test_release_with_a_stale_token_is_lock_not_held(client: Client, ns: str) -> None:
    lease = client.grant_lease(5)
    lock = client.lock(ns + "stale", lease=lease)
    assert lock.acquire()
    token = lock.fencing_token
    lock.release()
    assert lease.alive  # a lock on a given lease releases by token, the lease lives on
    stale = client.lock(ns + "stale", lease=lease)
    stale._inner.fencing_token = token  # pretend to still hold the old grant
    stale._inner.lease = lease._inner
    with pytest.raises(LockNotHeld):
        stale.release()
    lease.revoke()


# ----------------------------------------------------------------------- elections


def test_campaign_observe_and_proclaim(client: Client, endpoints: str, ns: str) -> None:
    name = ns + "election"
    observed = client.observe(name)
    assert next(observed) is None
    with client.campaign(name, "alpha", ttl=5) as term:
        assert term.is_leader and term.leader is not None
        leader = next(observed)
        assert leader is not None and leader.value == b"alpha" and leader.token == term.token
        term.proclaim("alpha-2")
        assert next(observed).value == b"alpha-2"  # type: ignore[union-attr]
        assert client.leader(name).value == b"alpha-2"  # type: ignore[union-attr]
        with Client(endpoints) as other:
            with pytest.raises(errors.DeadlineExceeded):
                other.campaign(name, "beta", ttl=5, timeout=0.5).campaign()
    assert next(observed) is None
    observed.close()
    assert client.leader(name) is None


# ----------------------------------------------------------------------- rings


def test_ring_view_matches_server_lookup_and_follows_changes(client: Client, ns: str) -> None:
    ring = ns + "ring"
    client.ring_join(ring, "cache-a", "10.0.0.1:11211")
    client.ring_join(ring, "cache-b", "10.0.0.2:11211", weight=2)
    with client.ring_view(ring) as view:
        assert set(view.members) == {"cache-a", "cache-b"}
        for i in range(40):
            key = f"user:{i}"
            assert view.lookup(key, 2) == [m.id for m in client.ring_lookup(ring, key, 2)]
        with client.lease(ttl=2) as lease:
            version = client.ring_join(ring, "cache-c", "10.0.0.3:11211", lease=lease)
            assert view.wait_for_version(version, 10).version >= version
            assert "cache-c" in view.members
            assert view.lookup_members("user:1", 3)[0].address.startswith("10.0.0.")
            for i in range(40):
                assert view.lookup(f"k{i}", 3) == [m.id for m in client.ring_lookup(ring, f"k{i}", 3)]
        wait_for(lambda: "cache-c" not in view.members, 10, "the ephemeral member to leave with its lease")
    state = client.ring_get(ring)
    assert state.hash_mode == HashMode.FAST and [m.id for m in state.members] == ["cache-a", "cache-b"]
    ketama = ns + "ketama"
    for i, weight in enumerate((1, 2, 3)):
        client.ring_join(ketama, f"10.0.0.{i}:11211", weight=weight, hash_mode=HashMode.KETAMA)
    with client.ring_view(ketama) as view:
        assert view.state.hash_mode == HashMode.KETAMA and view.state.vnodes == 40
        for i in range(30):
            assert view.lookup(f"k{i}", 2) == [m.id for m in client.ring_lookup(ketama, f"k{i}", 2)]
    local = HashRing([(m.id, m.weight) for m in state.members], int(state.hash_mode), state.vnodes)
    assert local.lookup("user:7") == [m.id for m in client.ring_lookup(ring, "user:7")]


# ----------------------------------------------------------------------- cluster


def test_members_status_and_health(client: Client, shared_cluster: object) -> None:
    members = client.members()
    assert len(members) == 3
    rows = client.cluster_status()
    assert len(rows) == 3 and all(r.status is not None for r in rows)
    leaders = {r.status.leader for r in rows if r.status}
    assert len(leaders) == 1
    assert sum(1 for r in rows if r.status and r.status.role == Role.LEADER) == 1
    assert all(h.healthy for h in client.health())


# ----------------------------------------------------------------------- asyncio


def test_async_client_with_cancel_on_loss(endpoints: str, ns: str) -> None:
    async def main() -> None:
        async with AsyncClient(endpoints) as client:
            await client.put(ns + "a", "1")
            assert (await client.get(ns + "a")).value == b"1"  # type: ignore[union-attr]
            async with client.lock(ns + "alock", ttl=5) as held:
                assert held.fencing_token > 0
            async with client.campaign(ns + "ael", "me", ttl=5) as term:
                assert term.is_leader
            # Many concurrent writes share the client: one client id each at a time.
            results = await asyncio.gather(*(client.put(f"{ns}c{i}", str(i)) for i in range(20)))
            assert len({r.revision for r in results}) == 20
            assert client._transport.sessions.size <= 20

    asyncio.run(main())


def test_async_acquire_cancelled_while_waiting_leaves_the_queue(endpoints: str, ns: str) -> None:
    """The waiting acquire travels on the Pipeline stream; cancelling the caller's task
    must take the lease out of the lock's queue, as ending a unary Acquire call does."""
    name = ns + "cancelled"

    async def main() -> None:
        async with AsyncClient(endpoints) as client, client.lock(name, ttl=5):
            # A lease of the test's own, which outlives the acquire: only the cancel of
            # the waiting operation can take it out of the queue.
            lease = await client.grant_lease(30)
            waiter = asyncio.ensure_future(client.lock(name, lease=lease).acquire())
            for _ in range(400):
                if (await client.lock_info(name)).waiters:
                    break
                await asyncio.sleep(0.05)
            assert (await client.lock_info(name)).waiters, "the second acquire never queued"
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
            for _ in range(400):
                if not (await client.lock_info(name)).waiters:
                    break
                await asyncio.sleep(0.05)
            assert (await client.lock_info(name)).waiters == ()
            assert (await client.lease_info(lease)).ttl > 0  # the lease lives on
            await lease.revoke()

    asyncio.run(main())


def test_a_lock_reacquired_on_one_lease_registers_its_loss_callback_once(endpoints: str, ns: str) -> None:
    async def main() -> None:
        async with AsyncClient(endpoints) as client:
            lease = await client.grant_lease(30)
            lock = client.lock(ns + "again", lease=lease)
            for _ in range(3):
                assert await lock.acquire()
                await lock.release()
            assert len(lease._callbacks) == 1
            await lease.revoke()

    asyncio.run(main())
