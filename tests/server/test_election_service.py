"""Election service over real gRPC: Campaign, Leader, Proclaim, Resign, Observe, lease ends,
errors."""

from __future__ import annotations

import asyncio

import grpc

from coord.v1 import election_pb2, election_pb2_grpc, lease_pb2

from .conftest import eventually
from .helpers import expect_error

INVALID, NOT_FOUND, FAILED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                              grpc.StatusCode.FAILED_PRECONDITION)


def elections(cluster, member=None) -> election_pb2_grpc.ElectionStub:
    return election_pb2_grpc.ElectionStub((member or cluster.members[0])._channel())


async def leases(cluster, n: int) -> list[int]:
    stub = cluster.lease()
    return [(await stub.Grant(lease_pb2.LeaseGrantRequest(ttl=30))).id for _ in range(n)]


def state(r) -> tuple[int, bytes]:
    return (r.leader.lease if r.HasField("leader") else 0, r.value)


async def test_campaign_proclaim_resign_and_observe(cluster):
    el, lease = elections(cluster), cluster.lease()
    a, b, c = await leases(cluster, 3)
    observe = el.Observe(election_pb2.ElectionObserveRequest(name="E"))
    assert state(await asyncio.wait_for(observe.read(), 10)) == (0, b""), "first the current state"

    won = await el.Campaign(election_pb2.ElectionCampaignRequest(name="E", lease=a, value=b"a"))
    key_a = won.leader
    assert key_a.lease == a and key_a.token > 0 and key_a.name == "E"
    second = asyncio.ensure_future(el.Campaign(election_pb2.ElectionCampaignRequest(name="E", lease=b, value=b"b"), timeout=20))
    # Queued in this order: two calls sent at once may reach the log in either order.
    await eventually(lambda: cluster.member.coord_hub.waiting == 1, what="the first waiting candidate")
    third = asyncio.ensure_future(el.Campaign(election_pb2.ElectionCampaignRequest(name="E", lease=c, value=b"c"), timeout=20))
    await eventually(lambda: cluster.member.coord_hub.waiting == 2, what="two waiting candidates")
    await el.Proclaim(election_pb2.ElectionProclaimRequest(leader=key_a, value=b"a2"))
    leader = await el.Leader(election_pb2.ElectionLeaderRequest(name="E"))
    assert state(leader) == (a, b"a2") and leader.leader == key_a

    await el.Resign(election_pb2.ElectionResignRequest(leader=key_a))
    key_b = (await second).leader
    assert key_b.lease == b and key_b.token > key_a.token
    assert not third.done()
    await expect_error(el.Proclaim(election_pb2.ElectionProclaimRequest(leader=key_a, value=b"x")), FAILED)
    await lease.Revoke(lease_pb2.LeaseRevokeRequest(id=b))  # the leader's lease ends
    key_c = (await third).leader
    assert key_c.lease == c and key_c.token > key_b.token
    await el.Resign(election_pb2.ElectionResignRequest(leader=key_c))

    seen = [state(await asyncio.wait_for(observe.read(), 10)) for _ in range(5)]
    assert seen == [(a, b"a"), (a, b"a2"), (b, b"b"), (c, b"c"), (0, b"")], "every change, in order"
    observe.cancel()


async def test_campaign_again_returns_the_leadership(cluster):
    el = elections(cluster)
    (a,) = await leases(cluster, 1)
    first = await el.Campaign(election_pb2.ElectionCampaignRequest(name="E", lease=a, value=b"1"))
    again = await el.Campaign(election_pb2.ElectionCampaignRequest(name="E", lease=a, value=b"2"))
    assert again.leader == first.leader


async def test_campaign_deadline_leaves_the_queue(cluster):
    el = elections(cluster)
    a, b = await leases(cluster, 2)
    key = (await el.Campaign(election_pb2.ElectionCampaignRequest(name="E", lease=a))).leader
    await expect_error(el.Campaign(election_pb2.ElectionCampaignRequest(name="E", lease=b), timeout=0.3),
                       grpc.StatusCode.DEADLINE_EXCEEDED)
    await eventually(lambda: cluster.node.state.election_candidate("E", b) is None, what="the candidacy cancelled")
    await el.Resign(election_pb2.ElectionResignRequest(leader=key))
    assert state(await el.Leader(election_pb2.ElectionLeaderRequest(name="E"))) == (0, b"")


async def test_waiting_candidate_whose_lease_ends_is_told(cluster):
    el, lease = elections(cluster), cluster.lease()
    a, b = await leases(cluster, 2)
    await el.Campaign(election_pb2.ElectionCampaignRequest(name="E", lease=a))
    waiting = el.Campaign(election_pb2.ElectionCampaignRequest(name="E", lease=b), timeout=20)
    await eventually(lambda: cluster.member.coord_hub.waiting == 1, what="the waiting candidate")
    await lease.Revoke(lease_pb2.LeaseRevokeRequest(id=b))
    await expect_error(waiting, NOT_FOUND, "ended")


async def test_errors(cluster):
    el = elections(cluster)
    (a,) = await leases(cluster, 1)
    await expect_error(el.Campaign(election_pb2.ElectionCampaignRequest(name="", lease=a)), INVALID, "name")
    await expect_error(el.Campaign(election_pb2.ElectionCampaignRequest(name="E", lease=0)), INVALID, "lease")
    await expect_error(el.Campaign(election_pb2.ElectionCampaignRequest(name="E", lease=999)), NOT_FOUND)
    await expect_error(el.Proclaim(election_pb2.ElectionProclaimRequest(value=b"v")), INVALID, "leader key")
    await expect_error(el.Resign(election_pb2.ElectionResignRequest(
        leader=election_pb2.LeaderKey(name="E", lease=a, token=5))), FAILED)
    await expect_error(el.Leader(election_pb2.ElectionLeaderRequest(name="")), INVALID)
    await expect_error(el.Observe(election_pb2.ElectionObserveRequest(name="")).read(), INVALID)
    assert state(await el.Leader(election_pb2.ElectionLeaderRequest(name="nobody"))) == (0, b"")
