"""Lock service over real gRPC: Acquire/Release/Inspect, the FIFO queue with one wake-up
per grant, deadlines and cancellation, lease ends, fenced writes, errors, and waiting
through a follower."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from coord.v1 import kv_pb2, lease_pb2, lock_pb2, lock_pb2_grpc

from .conftest import eventually
from .helpers import expect_error, session

INVALID, NOT_FOUND, FAILED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                              grpc.StatusCode.FAILED_PRECONDITION)


def locks(cluster, member=None) -> lock_pb2_grpc.LockStub:
    return lock_pb2_grpc.LockStub((member or cluster.members[0])._channel())


async def leases(cluster, n: int, ttl: int = 30, member=None) -> list[int]:
    stub = cluster.lease(member)
    return [(await stub.Grant(lease_pb2.LeaseGrantRequest(ttl=ttl))).id for _ in range(n)]


def waiters(info: lock_pb2.LockInspectResponse) -> list[int]:
    return [w.lease for w in info.waiters]


async def test_acquire_release_inspect(cluster):
    lock = locks(cluster)
    (a,) = await leases(cluster, 1)
    got = await lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=a, owner="host:1"))
    assert got.acquired and got.token == cluster.node.state.applied_index
    assert got.header.member_id == cluster.node.id and got.header.raft_term > 0
    info = await lock.Inspect(lock_pb2.LockInspectRequest(name="L"))
    assert info.permits == 1 and [(h.lease, h.token, h.owner) for h in info.holders] == [(a, got.token, "host:1")]
    again = await lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=a))
    assert again.token == got.token, "a lease that holds the lock gets its grant back"
    await lock.Release(lock_pb2.LockReleaseRequest(name="L", token=got.token))
    assert (await lock.Inspect(lock_pb2.LockInspectRequest(name="L", serializable=True))).permits == 0
    await expect_error(lock.Release(lock_pb2.LockReleaseRequest(name="L", token=got.token)), FAILED, "not held")


async def test_queue_wakes_only_the_next_waiter(cluster):
    lock = locks(cluster)
    hub = cluster.member.coord_hub
    ids = await leases(cluster, 4)
    first = await lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=ids[0]))
    calls = [asyncio.ensure_future(lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=i), timeout=20))
             for i in ids[1:]]
    await eventually(lambda: hub.waiting == 3, what="three waiting calls")
    info = await lock.Inspect(lock_pb2.LockInspectRequest(name="L"))
    assert sorted(waiters(info)) == sorted(ids[1:])
    order = waiters(info)
    token = first.token
    for expected_lease in order:
        await lock.Release(lock_pb2.LockReleaseRequest(name="L", token=token))
        # Exactly one call completes per release: the first in the queue.
        done = await eventually(lambda: [c for c in calls if c.done()], what="a granted waiter")
        assert len(done) == 1
        call = done[0]
        calls.remove(call)
        granted = call.result()
        assert granted.acquired and granted.token > token
        holder = (await lock.Inspect(lock_pb2.LockInspectRequest(name="L"))).holders[0]
        assert (holder.lease, holder.token) == (expected_lease, granted.token)
        token = granted.token
        assert hub.waiting == len(calls)


async def test_no_wait_returns_at_once(cluster):
    lock = locks(cluster)
    a, b = await leases(cluster, 2)
    await lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=a))
    r = await lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=b, no_wait=True))
    assert not r.acquired and r.token == 0
    assert waiters(await lock.Inspect(lock_pb2.LockInspectRequest(name="L"))) == []


async def test_deadline_and_cancel_leave_the_queue(cluster):
    lock = locks(cluster)
    a, b, c = await leases(cluster, 3)
    held = await lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=a))
    await expect_error(lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=b), timeout=0.3),
                       grpc.StatusCode.DEADLINE_EXCEEDED)
    call = lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=c), timeout=20)
    await eventually(lambda: cluster.member.coord_hub.waiting == 1, what="the waiting call")
    call.cancel()

    async def queue_empty():
        return waiters(await lock.Inspect(lock_pb2.LockInspectRequest(name="L"))) == []

    await eventually(queue_empty, what="both waits cancelled in the log")
    await lock.Release(lock_pb2.LockReleaseRequest(name="L", token=held.token))
    assert (await lock.Inspect(lock_pb2.LockInspectRequest(name="L"))).permits == 0, "nobody was granted"


async def test_lease_end_passes_the_lock_and_fences_the_old_holder(cluster):
    lock, kv, lease = locks(cluster), cluster.kv(), cluster.lease()
    a, b = await leases(cluster, 2)
    old = await lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=a))
    waiting = asyncio.ensure_future(lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=b), timeout=20))
    await eventually(lambda: cluster.member.coord_hub.waiting == 1, what="the waiting call")
    await lease.Revoke(lease_pb2.LeaseRevokeRequest(id=a))
    new = await waiting
    assert new.acquired and new.token > old.token

    def fenced(token: int, value: bytes) -> kv_pb2.TxnRequest:
        return kv_pb2.TxnRequest(
            compare=[kv_pb2.Compare(target=kv_pb2.COMPARE_TARGET_LOCK_TOKEN, result=kv_pb2.COMPARE_RESULT_EQUAL,
                                    lock_name="L", lock_token=token)],
            success=[kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=b"guarded", value=value))],
        )

    assert not (await kv.Txn(fenced(old.token, b"stale"))).succeeded
    assert (await kv.Txn(fenced(new.token, b"fresh"))).succeeded
    assert (await kv.Range(kv_pb2.RangeRequest(key=b"guarded"))).kvs[0].value == b"fresh"


async def test_waiter_whose_lease_ends_is_told_not_found(cluster):
    lock, lease = locks(cluster), cluster.lease()
    a, b = await leases(cluster, 2)
    await lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=a))
    waiting = lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=b), timeout=20)
    await eventually(lambda: cluster.member.coord_hub.waiting == 1, what="the waiting call")
    await lease.Revoke(lease_pb2.LeaseRevokeRequest(id=b))
    await expect_error(waiting, NOT_FOUND, "ended")


async def test_semaphore(cluster):
    lock = locks(cluster)
    ids = await leases(cluster, 3)
    r = [await lock.Acquire(lock_pb2.LockAcquireRequest(name="S", lease=i, permits=2, no_wait=True)) for i in ids]
    assert [x.acquired for x in r] == [True, True, False]
    await expect_error(lock.Acquire(lock_pb2.LockAcquireRequest(name="S", lease=ids[2], permits=3)), FAILED, "permits")
    info = await lock.Inspect(lock_pb2.LockInspectRequest(name="S"))
    assert info.permits == 2 and len(info.holders) == 2


async def test_errors(cluster):
    lock = locks(cluster)
    (a,) = await leases(cluster, 1)
    await expect_error(lock.Acquire(lock_pb2.LockAcquireRequest(name="", lease=a)), INVALID, "name")
    await expect_error(lock.Acquire(lock_pb2.LockAcquireRequest(name="x" * 4097, lease=a)), INVALID)
    await expect_error(lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=0)), INVALID, "lease")
    await expect_error(lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=424242)), NOT_FOUND, "lease")
    await expect_error(lock.Release(lock_pb2.LockReleaseRequest(name="L", token=0)), INVALID, "token")
    await expect_error(lock.Release(lock_pb2.LockReleaseRequest(name="", token=3)), INVALID)
    await expect_error(lock.Release(lock_pb2.LockReleaseRequest(name="L", token=3)), FAILED)
    await expect_error(lock.Inspect(lock_pb2.LockInspectRequest(name="")), INVALID)


async def test_retry_with_the_same_seq_finds_the_grant(cluster):
    lock = locks(cluster)
    a, b = await leases(cluster, 2)
    held = await lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=a))
    waiting = asyncio.ensure_future(
        lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=b), metadata=session("c1", 1), timeout=20))
    await eventually(lambda: cluster.member.coord_hub.waiting == 1, what="the waiting call")
    await lock.Release(lock_pb2.LockReleaseRequest(name="L", token=held.token))
    first = await waiting
    retry = await lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=b), metadata=session("c1", 1))
    assert retry.acquired and retry.token == first.token


@pytest.mark.cluster(size=3)
async def test_waiting_on_a_follower_is_granted_by_a_release_elsewhere(cluster):
    leader = cluster.leader()
    follower = cluster.followers()[0]
    a, b = await leases(cluster, 2, member=leader)
    held = await locks(cluster, leader).Acquire(lock_pb2.LockAcquireRequest(name="L", lease=a))
    waiting = asyncio.ensure_future(
        locks(cluster, follower).Acquire(lock_pb2.LockAcquireRequest(name="L", lease=b), timeout=20))
    await eventually(lambda: follower.member.coord_hub.waiting == 1, what="the call waiting on the follower")
    other = [m for m in cluster.followers() if m is not follower][0]
    await locks(cluster, other).Release(lock_pb2.LockReleaseRequest(name="L", token=held.token))
    granted = await waiting
    assert granted.acquired and granted.token > held.token
    assert granted.header.member_id == follower.id


async def test_retry_after_a_deadline_queues_the_lease_again(cluster):
    lock = locks(cluster)
    a, b = await leases(cluster, 2)
    held = await lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=a))
    request = lock_pb2.LockAcquireRequest(name="L", lease=b)
    await expect_error(lock.Acquire(request, metadata=session("c2", 1), timeout=0.3), grpc.StatusCode.DEADLINE_EXCEEDED)
    retry = asyncio.ensure_future(lock.Acquire(request, metadata=session("c2", 1), timeout=20))

    async def queued_again():
        info = await lock.Inspect(lock_pb2.LockInspectRequest(name="L"))
        return waiters(info) == [b] and cluster.member.coord_hub.waiting == 1

    await eventually(queued_again, what="the retry waiting in the queue")
    await lock.Release(lock_pb2.LockReleaseRequest(name="L", token=held.token))
    granted = await retry
    assert granted.acquired and granted.token > held.token
