"""LeaseLimit (coord_server/auth/quota.py) on a member that has not applied what the
leader answered: a grant answered while a check waits for its ReadIndex round still
counts; a lease recorded before the round and revoked since does not."""

from __future__ import annotations

import asyncio

import pytest

from coord_server.auth.quota import LeaseLimit
from coord_server.errors import ResourceExhausted


class Member:
    """A follower: its ReadIndex round waits for ``round_done``; ``applied`` are the
    leases its state machine holds."""

    def __init__(self) -> None:
        self.applied: set[int] = set()
        self.round_started = asyncio.Event()
        self.round_done = asyncio.Event()
        self.state = self

    def has_lease(self, lease_id: int) -> bool:
        return lease_id in self.applied

    async def read_barrier(self) -> None:
        self.round_started.set()
        await self.round_done.wait()


async def test_a_grant_answered_during_the_round_counts_though_not_applied_here():
    member = Member()
    limit = LeaseLimit(member, 3)
    for _ in range(3):
        await limit.check("c", None)
    fourth = asyncio.ensure_future(limit.check("c", None))
    await member.round_started.wait()
    for lease_id in (1, 2, 3):  # the leader answers; this member has not applied them
        limit.granted("c", lease_id)
    member.round_done.set()
    with pytest.raises(ResourceExhausted):
        await fourth


async def test_a_lease_revoked_before_the_round_is_pruned():
    member = Member()
    limit = LeaseLimit(member, 3)
    for lease_id in (1, 2, 3):
        await limit.check("c", None)
        limit.granted("c", lease_id)
    member.applied = {1, 2}  # 3 was revoked, and this member applied the revoke
    member.round_done.set()
    await limit.check("c", None)  # admitted: 2 held, 1 pending
    with pytest.raises(ResourceExhausted):
        await limit.check("c", None)
