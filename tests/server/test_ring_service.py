"""Ring service over real gRPC: Join, Leave, Get, Lookup (equal to the client-side
computation from Get), Watch, ephemeral members, errors."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from coord.v1 import lease_pb2, ring_pb2, ring_pb2_grpc
from coord_client.hashring import HashRing

from .helpers import expect_error

INVALID, NOT_FOUND, FAILED, EXHAUSTED = (
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED)


def rings(cluster, member=None) -> ring_pb2_grpc.RingStub:
    return ring_pb2_grpc.RingStub((member or cluster.members[0])._channel())


def ids(members) -> list[str]:
    return [m.id for m in members]


@pytest.mark.parametrize("mode", [ring_pb2.HASH_MODE_FAST, ring_pb2.HASH_MODE_KETAMA])
async def test_lookup_equals_the_client_side_computation(cluster, mode):
    ring = rings(cluster)
    settings = ring_pb2.RingSettings(hash_mode=mode)
    for i, weight in enumerate([1, 2, 1, 3, 1]):
        await ring.Join(ring_pb2.RingJoinRequest(ring="R", member_id=f"m{i}", address=f"10.0.0.{i}:11211",
                                                 weight=weight, settings=settings))
    got = await ring.Get(ring_pb2.RingGetRequest(ring="R"))
    assert got.settings.hash_mode == mode and got.settings.vnodes == (1024 if mode == 1 else 40)
    assert ids(got.members) == [f"m{i}" for i in range(5)]
    local = HashRing([(m.id, m.weight) for m in got.members], got.settings.hash_mode, got.settings.vnodes)
    for k in range(200):
        key = f"key-{k}".encode()
        for n in (1, 3):
            resp = await ring.Lookup(ring_pb2.RingLookupRequest(ring="R", key=key, n=n, serializable=k % 2 == 0))
            assert ids(resp.members) == local.lookup(key, n) and resp.version == got.version
    every = await ring.Lookup(ring_pb2.RingLookupRequest(ring="R", key=b"k", n=50))
    assert sorted(ids(every.members)) == [f"m{i}" for i in range(5)], "n over the ring size gives every member"
    assert (await ring.Lookup(ring_pb2.RingLookupRequest(ring="R", key=b""))).members, "an empty key is a key"


async def test_watch_and_ephemeral_members(cluster):
    ring, lease = rings(cluster), cluster.lease()
    g = await lease.Grant(lease_pb2.LeaseGrantRequest(ttl=30))
    watch = ring.Watch(ring_pb2.RingWatchRequest(ring="R"))
    first = await asyncio.wait_for(watch.read(), 10)
    assert first.version == 0 and not first.members, "a ring that does not exist"
    v1 = (await ring.Join(ring_pb2.RingJoinRequest(ring="R", member_id="perm", address="a:1"))).version
    v2 = (await ring.Join(ring_pb2.RingJoinRequest(ring="R", member_id="temp", address="b:1", lease=g.id))).version
    await lease.Revoke(lease_pb2.LeaseRevokeRequest(id=g.id))
    v4 = (await ring.Leave(ring_pb2.RingLeaveRequest(ring="R", member_id="perm"))).version
    seen = [await asyncio.wait_for(watch.read(), 10) for _ in range(4)]
    assert [r.version for r in seen[:2]] == [v1, v2] and v2 > v1
    assert ids(seen[1].members) == ["perm", "temp"] and seen[1].settings.vnodes == 1024
    assert ids(seen[2].members) == ["perm"] and seen[2].version > v2, "the lease's end is a new version"
    assert seen[3].version == v4 and not seen[3].members, "the emptied ring: its last version, no members"
    watch.cancel()
    await expect_error(ring.Get(ring_pb2.RingGetRequest(ring="R")), NOT_FOUND)
    await expect_error(ring.Lookup(ring_pb2.RingLookupRequest(ring="R", key=b"k")), NOT_FOUND)


async def test_watch_after_version_skips_what_the_client_knows(cluster):
    ring = rings(cluster)
    v = (await ring.Join(ring_pb2.RingJoinRequest(ring="R", member_id="a"))).version
    watch = ring.Watch(ring_pb2.RingWatchRequest(ring="R", after_version=v))
    v2 = (await ring.Join(ring_pb2.RingJoinRequest(ring="R", member_id="b"))).version
    got = await asyncio.wait_for(watch.read(), 10)
    assert got.version == v2 and ids(got.members) == ["a", "b"]
    watch.cancel()


async def test_errors(cluster):
    ring = rings(cluster)
    await expect_error(ring.Join(ring_pb2.RingJoinRequest(ring="", member_id="a")), INVALID, "ring name")
    await expect_error(ring.Join(ring_pb2.RingJoinRequest(ring="R", member_id="")), INVALID, "member id")
    await expect_error(ring.Join(ring_pb2.RingJoinRequest(ring="R", member_id="a", weight=70000)), INVALID, "weight")
    await expect_error(ring.Join(ring_pb2.RingJoinRequest(ring="R", member_id="a", lease=4242)), NOT_FOUND, "lease")
    await expect_error(ring.Join(ring_pb2.RingJoinRequest(
        ring="R", member_id="a", settings=ring_pb2.RingSettings(hash_mode=9))), INVALID, "hash mode")
    await expect_error(ring.Join(ring_pb2.RingJoinRequest(ring="R", member_id="a", weight=2000)), EXHAUSTED, "points")
    await ring.Join(ring_pb2.RingJoinRequest(ring="R", member_id="a", weight=0))
    got = await ring.Get(ring_pb2.RingGetRequest(ring="R"))
    assert got.members[0].weight == 1, "weight 0 means 1"
    await expect_error(ring.Join(ring_pb2.RingJoinRequest(
        ring="R", member_id="b", settings=ring_pb2.RingSettings(hash_mode=ring_pb2.HASH_MODE_KETAMA))), FAILED)
    await expect_error(ring.Leave(ring_pb2.RingLeaveRequest(ring="R", member_id="zzz")), NOT_FOUND)
    await expect_error(ring.Leave(ring_pb2.RingLeaveRequest(ring="", member_id="a")), INVALID)
    await expect_error(ring.Lookup(ring_pb2.RingLookupRequest(ring="", key=b"k")), INVALID)
    await expect_error(ring.Get(ring_pb2.RingGetRequest(ring="")), INVALID)
    await expect_error(ring.Watch(ring_pb2.RingWatchRequest(ring="")).read(), INVALID)
