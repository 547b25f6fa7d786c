"""Writes, lock and election calls go to the leader (coord_client/_transport.py Rule 5): a
follower's answer names the leader (services/pipeline.py Rule 4; election.py's
``coord-leader`` on success), the client sends its next such calls there and keeps reads
and everything else on its preferred member; when the leader dies they find the new one."""

from __future__ import annotations

import asyncio
from typing import Any

from coord_client import Compare, Op
from coord_client.aio import AsyncClient
from tests.integration.harness import Cluster


def _follower_first(cluster: Cluster) -> tuple[str, str, list[str]]:
    """(the leader's address, a follower's, the endpoints with that follower first)."""
    leader = cluster.wait_for_leader()
    followers = [n.address for n in cluster.nodes.values() if n.name != leader]
    return cluster.nodes[leader].address, followers[0], followers + [cluster.nodes[leader].address]


def _record_members(transport: Any) -> list[str]:
    """The member of every call the transport makes from now on, in order."""
    used: list[str] = []
    stubs = transport.stubs

    def recording(address: str) -> object:
        used.append(address)
        return stubs(address)

    transport.stubs = recording
    return used


def test_writes_and_lock_calls_move_to_the_leader_and_reads_stay(shared_cluster: Cluster, ns: str) -> None:
    leader_address, follower, endpoints = _follower_first(shared_cluster)

    async def main() -> None:
        async with AsyncClient(endpoints) as client:
            transport = client._transport
            used = _record_members(transport)
            assert transport.pick(to_leader=True) == follower, "no write yet: the preferred member"
            await client.put(f"{ns}k", "v1")
            assert used[-1] == follower, "the first write went to the preferred member"
            # The follower answered it and named the leader: the next writes go there.
            assert transport.pick(to_leader=True) == leader_address
            await client.put(f"{ns}k", "v2")
            await client.delete(f"{ns}gone")
            await client.txn().when(Compare.value(f"{ns}k") == "v2").then(Op.put(f"{ns}k", "v3")).commit()
            assert used[-3:] == [leader_address] * 3
            got = await client.get(f"{ns}k")
            assert got is not None and got.value == b"v3"
            assert used[-1] == follower, "a read stays on the preferred member"
            lease = await client.grant_lease(10)
            # A grant is a write (it rides the leader's Pipeline stream); reads stay.
            assert used[-1] == leader_address and transport.pick() == follower
            async with client.lock(f"{ns}lock", lease=lease) as held:
                assert used[-1] == leader_address
                first = held.fencing_token
            assert used[-1] == leader_address, "the release"
            async with client.lock(f"{ns}lock", lease=lease) as held:
                assert held.fencing_token > first
            assert transport.pick() == follower

    asyncio.run(main())


def test_a_lock_with_its_own_lease_is_released_at_the_leader(shared_cluster: Cluster, ns: str) -> None:
    """Such a lock is released by revoking its lease: that Revoke goes where the lock
    calls go."""
    leader_address, follower, endpoints = _follower_first(shared_cluster)

    async def main() -> None:
        async with AsyncClient(endpoints) as client:
            transport = client._transport
            used = _record_members(transport)
            async with client.lock(f"{ns}own", ttl=10):
                assert transport.pick(to_leader=True) == leader_address
                used.clear()
            assert used[-1:] == [leader_address], "the Revoke that released the lock"
            assert transport.pick() == follower

    asyncio.run(main())


def test_election_calls_move_to_the_leader(shared_cluster: Cluster, ns: str) -> None:
    leader_address, follower, endpoints = _follower_first(shared_cluster)

    async def main() -> None:
        async with AsyncClient(endpoints) as client:
            transport = client._transport
            used = _record_members(transport)
            async with client.campaign(f"{ns}election", "a", ttl=10) as term:
                # The campaign's lease grant is a write on the leader's Pipeline stream,
                # whose answers name the leader: the Campaign already went there.
                assert used[-1] == leader_address, "the first Campaign went to the leader"
                assert transport.pick(to_leader=True) == leader_address
                await term.proclaim("b")
                assert used[-1] == leader_address
                used.clear()
            assert used[-1:] == [leader_address], "the Revoke that resigned"
            assert transport.pick() == follower

    asyncio.run(main())


def test_lock_calls_find_the_new_leader_after_the_leader_dies(new_cluster: object) -> None:
    cluster = new_cluster()  # type: ignore[operator]
    leader = cluster.wait_for_leader()
    _, _, endpoints = _follower_first(cluster)

    async def main() -> None:
        async with AsyncClient(endpoints) as client:
            transport = client._transport
            lease = await client.grant_lease(30)
            async with client.lock("routed", lease=lease) as held:
                first = held.fencing_token
            assert transport.pick(to_leader=True) == cluster.nodes[leader].address
            cluster.kill(leader)
            new_leader = await asyncio.to_thread(cluster.wait_for_leader, other_than=leader)
            for _ in range(2):  # the first may land on a follower, which names the leader
                async with client.lock("routed", lease=lease, timeout=30) as held:
                    assert held.fencing_token > first
                    first = held.fencing_token
            assert transport.pick(to_leader=True) == cluster.nodes[new_leader].address

    asyncio.run(main())
