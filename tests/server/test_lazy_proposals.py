"""Lazy proposals (Node.submit ``lazy``): an Acquire that will queue behind a held lock
waits on the leader for the next proposal and shares its entry batch, or is proposed
alone once LAZY_PROPOSAL_DELAY has passed; either way in arrival order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coord.raft.v1 import command_pb2
from coord.v1 import kv_pb2, lease_pb2, lock_pb2, lock_pb2_grpc
from coord_server.errors import Stopping

from .conftest import eventually

pytestmark = pytest.mark.cluster(size=3)


def put(key: bytes) -> bytes:
    return command_pb2.Command(put=kv_pb2.PutRequest(key=key, value=b"v")).SerializeToString()


def record_batches(node: Any) -> tuple[list[list[bytes]], Any]:
    batches: list[list[bytes]] = []
    propose_batch = node.core.propose_batch

    def recording(datas: list[bytes]) -> Any:
        batches.append(list(datas))
        return propose_batch(datas)

    node.core.propose_batch = recording
    return batches, propose_batch


async def test_a_lazy_proposal_rides_with_the_next_one_in_arrival_order(cluster):
    node = cluster.leader().node
    node.proposals.lazy_delay, saved = 30.0, node.proposals.lazy_delay  # only the next proposal frees it
    batches, propose_batch = record_batches(node)
    try:
        lazy = node.submit(put(b"lazy"), 10, lazy=True)
        await asyncio.sleep(0.2)
        assert not lazy.done() and not any(put(b"lazy") in b for b in batches), "a lazy proposal went alone"
        eager = node.submit(put(b"eager"), 10)
        await asyncio.wait_for(asyncio.gather(lazy, eager), 10)
    finally:
        node.core.propose_batch = propose_batch
        node.proposals.lazy_delay = saved
    [batch] = [b for b in batches if put(b"lazy") in b]
    assert batch == [put(b"lazy"), put(b"eager")], "not one batch, or not in arrival order"


async def test_a_lazy_proposal_alone_is_proposed_after_the_delay(cluster):
    node = cluster.leader().node
    result = await asyncio.wait_for(node.submit(put(b"alone"), 10, lazy=True), 10)
    assert result.WhichOneof("result") == "put"
    got = await cluster.kv(cluster.leader()).Range(kv_pb2.RangeRequest(key=b"alone"), timeout=10)
    assert [kv.key for kv in got.kvs] == [b"alone"]


async def test_stopping_fails_waiting_lazy_proposals(cluster):
    node = cluster.leader().node
    node.proposals.lazy_delay, saved = 30.0, node.proposals.lazy_delay
    batches, propose_batch = record_batches(node)
    try:
        lazy = node.submit(put(b"never"), 10, lazy=True)
        await asyncio.sleep(0.2)
        assert not batches, "the lazy proposal was proposed: stop would not find it waiting"
        await node.stop()
    finally:
        node.core.propose_batch = propose_batch
        node.proposals.lazy_delay = saved
    with pytest.raises(Stopping):  # a named cause: the etcd gateway answers "server stopped" by class
        await lazy
    with pytest.raises(Stopping):
        await node.submit(put(b"after"), 10)


async def test_an_acquire_behind_a_held_lock_is_lazy_and_still_granted_in_order(cluster):
    leader = cluster.leader()
    node = leader.node
    lock = lock_pb2_grpc.LockStub(leader._channel())
    leases = [(await leader.lease().Grant(lease_pb2.LeaseGrantRequest(ttl=30))).id for _ in range(3)]
    submitted: list[bool] = []
    face = leader.member  # what the Lock service proposes through
    submit = face.submit

    def recording(data: bytes, timeout: float | None = None, *, lazy: bool = False) -> Any:
        if command_pb2.Command.FromString(data).HasField("lock_acquire"):
            submitted.append(lazy)
        return submit(data, timeout, lazy=lazy)

    face.submit = recording
    try:
        first = await lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=leases[0]), timeout=10)
        second = asyncio.ensure_future(lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=leases[1]), timeout=20))
        await eventually(lambda: node.state.lock_waiting("L", leases[1]) is not None, what="the second in the queue")
        third = asyncio.ensure_future(lock.Acquire(lock_pb2.LockAcquireRequest(name="L", lease=leases[2]), timeout=20))
        await eventually(lambda: node.state.lock_waiting("L", leases[2]) is not None, what="the third in the queue")
        assert submitted == [False, True, True], "a free lock's Acquire must not wait; a held one's is lazy"
        await lock.Release(lock_pb2.LockReleaseRequest(name="L", token=first.token), timeout=10)
        got = await asyncio.wait_for(second, 10)
        assert got.acquired and got.token > first.token and not third.done()
        await lock.Release(lock_pb2.LockReleaseRequest(name="L", token=got.token), timeout=10)
        assert (await asyncio.wait_for(third, 10)).token > got.token
    finally:
        face.submit = submit
