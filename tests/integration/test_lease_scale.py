"""Many leases kept alive by one client, through a leader change (issue #22).

One coord_client process keeps 10,000 leases alive over its one KeepAlive stream while
the leader is killed. Before renewals were batched a stream delivered a few hundred
renewals per second and most of 6,000+ leases were lost within a TTL; here none may be:
not by the client's account (no lease reported lost) and not by the cluster's (every
lease still listed well after the new leader's extension would have run out).
"""

from __future__ import annotations

import asyncio
import time

from coord_client.aio import AsyncClient
from coord_client.aio.lease import Lease
from tests.integration.harness import Cluster, HarnessError

COUNT = 10_000
TTL = 6
GRANTS_IN_FLIGHT = 256


async def _wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


async def _keep_through_leader_kill(cluster: Cluster) -> str:
    endpoints = [node.address for node in cluster.nodes.values()]
    client = AsyncClient(endpoints, timeout=30)
    lost: list[Lease] = []
    try:
        sem = asyncio.Semaphore(GRANTS_IN_FLIGHT)

        async def grant() -> Lease:
            async with sem:
                lease = await client.grant_lease(TTL)
                lease.on_lost(lost.append)
                return lease

        began = time.monotonic()
        leases = await asyncio.gather(*(grant() for _ in range(COUNT)))
        granted_in = time.monotonic() - began
        keeper = client._keepaliver
        # Every lease renewed at least once on the first leader.
        await _wait_for(lambda: keeper.renewals >= COUNT or lost, 60, f"{COUNT} renewals")
        assert not lost, f"{len(lost)} leases lost before the leader change: {lost[0].lost_reason}"

        old = await asyncio.to_thread(cluster.wait_for_leader)
        await asyncio.to_thread(cluster.kill, old)
        killed_at = time.monotonic()
        new = await asyncio.to_thread(cluster.wait_for_leader, 60, other_than=old)
        elected_in = time.monotonic() - killed_at
        before = keeper.renewals
        # Past every deadline the new leader started (TTL plus one election timeout from
        # its election), with every lease renewed on it meanwhile.
        await _wait_for(
            lambda: (keeper.renewals - before >= COUNT and time.monotonic() - killed_at > TTL + elected_in + 3) or lost,
            90, f"{COUNT} renewals on the new leader and a TTL",
        )
        assert not lost, f"{len(lost)} of {COUNT} leases lost: {lost[0].lost_reason}"
        assert all(lease.alive for lease in leases)
        listed = {info.id for info in await client.leases()}
        missing = {lease.id for lease in leases} - listed
        assert not missing, f"{len(missing)} of {COUNT} leases gone from the cluster"
        return (f"{COUNT} leases (TTL {TTL}s) granted in {granted_in:.1f}s, kept through the kill of {old} "
                f"({new} elected in {elected_in:.1f}s); {keeper.renewals} renewals, {keeper.reconnects} reconnects")
    finally:
        for lease in list(client._keepaliver._leases.values()):
            lease.stop_keepalive()
        await client.close()


def test_ten_thousand_leases_kept_through_a_leader_kill(cluster: Cluster) -> None:
    print("\n" + asyncio.run(_keep_through_leader_kill(cluster)))
