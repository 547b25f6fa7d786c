"""A lock (or leadership) whose lease is revoked on the server while the block runs: the
block learns, by ``held.lost``, ``held.check()``, LockLost on leaving, and, for asyncio
with ``cancel_on_loss=True``, by being cancelled at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from coord_client import AsyncClient, Client, LeadershipLost, LockLost

pytestmark = pytest.mark.timeout(60)


def test_sync_lock_block_learns_when_its_lease_is_revoked_server_side(client: Client, endpoints: str, ns: str) -> None:
    name = ns + "jobs"
    with pytest.raises(LockLost) as raised:
        with client.lock(name, ttl=5) as held:
            assert held.is_held and not held.lost.is_set()
            token = held.fencing_token  # the block's exit clears it
            with Client(endpoints) as admin:
                admin.revoke_lease(held.lease_id)  # e.g. an operator, or a lease that expired
            assert held.lost.wait(5), "the block was not told that the lock is gone"
            assert not held.is_held
            with pytest.raises(LockLost):
                held.check()
    assert name in str(raised.value) and "revoked" in str(raised.value)
    # The lock was released with the lease: another holder gets it at once.
    with client.lock(name, ttl=5, timeout=5) as again:
        assert again.fencing_token > token > 0


def test_async_lock_block_is_cancelled_when_its_lease_is_revoked(endpoints: str, ns: str) -> None:
    name = ns + "ajobs"

    async def main() -> float:
        async with AsyncClient(endpoints) as client, AsyncClient(endpoints) as admin:
            started = time.monotonic()
            with pytest.raises(LockLost):
                async with client.lock(name, ttl=5, cancel_on_loss=True) as held:
                    await admin.revoke_lease(held.lease.id)  # type: ignore[union-attr]
                    await asyncio.sleep(30)  # cancelled by the loss, well before this ends
            assert held.lost.is_set()
            # The task is usable afterwards: the loss's cancellation was consumed.
            await asyncio.sleep(0)
            assert (await client.lock_info(name)).holders == ()
            return time.monotonic() - started

    assert asyncio.run(main()) < 10


def test_leadership_lost_is_told_to_the_block(client: Client, endpoints: str, ns: str) -> None:
    name = ns + "leader"
    with pytest.raises(LeadershipLost):
        with client.campaign(name, "me", ttl=5) as term:
            assert term.leader is not None
            with Client(endpoints) as admin:
                admin.revoke_lease(term.leader.lease)
            assert term.lost.wait(5)
    assert client.leader(name) is None
