"""coord_client's keep-alive at scale (coord_client/aio/lease.py Rules 2 and 4): many
leases renewed in few requests on one stream, paced with jitter; a lease whose renewal
is awaiting its answer when its deadline passes is decided by that answer, not lost."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import grpc

from coord.v1 import lease_pb2
from coord_client._transport import Backoff
from coord_client.aio import AsyncClient
from coord_client.aio.lease import KeepAliver, Lease
from tests.integration.harness import Cluster

from .conftest import endpoints_of

COUNT = 1000


async def _many_leases(endpoints: str) -> tuple[int, int, list[float], int]:
    client = AsyncClient(endpoints, timeout=30)
    try:
        sem = asyncio.Semaphore(128)

        async def grant() -> Lease:
            async with sem:
                return await client.grant_lease(6)

        leases = await asyncio.gather(*(grant() for _ in range(COUNT)))
        keeper = client._keepaliver
        start_renewals, start_requests = keeper.renewals, keeper.requests
        deadline = time.monotonic() + 60
        while keeper.renewals - start_renewals < 2 * COUNT and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        dues = [lease._next_due - lease.interval for lease in leases]  # when each was last answered, jittered
        lost = sum(1 for lease in leases if lease.lost.is_set())
        for lease in leases:
            await lease.revoke()
        return keeper.renewals - start_renewals, keeper.requests - start_requests, dues, lost
    finally:
        await client.close()


def test_thousands_of_leases_renew_in_few_requests(shared_cluster: Cluster) -> None:
    renewals, requests, dues, lost = asyncio.run(_many_leases(endpoints_of(shared_cluster)))
    assert lost == 0
    assert renewals >= 2 * COUNT
    # Due leases go out together: far fewer requests than renewals.
    assert requests * 20 <= renewals, (requests, renewals)
    # Jitter: the next renewals are not all due at one instant.
    assert max(dues) - min(dues) > 0.1


class _Transport:
    closed = False
    attempt_timeout = 5.0

    def succeeded(self, address: str) -> None:
        pass


class _Client:
    def __init__(self) -> None:
        self._transport = _Transport()
        self._keepaliver = KeepAliver(self)  # type: ignore[arg-type]


class _Call:
    """Answers read() from a list, then EOF."""

    def __init__(self, responses: list[lease_pb2.LeaseKeepAliveResponse]) -> None:
        self.responses = collections.deque(responses)

    async def read(self) -> Any:
        return self.responses.popleft() if self.responses else grpc.aio.EOF


def _overdue_lease(client: _Client, lease_id: int, pending: int) -> Lease:
    lease = Lease(client, lease_id, 3, time.monotonic() - 3.5)  # type: ignore[arg-type]
    keeper = client._keepaliver
    keeper._leases[lease_id] = lease
    lease.keepalive = True
    keeper._queue_deadline(lease)
    lease._pending = pending
    return lease


async def _in_doubt() -> None:
    client = _Client()
    keeper = client._keepaliver
    renewed = _overdue_lease(client, 1, pending=1)
    refused = _overdue_lease(client, 2, pending=1)
    unanswered = _overdue_lease(client, 3, pending=1)
    idle = _overdue_lease(client, 4, pending=0)
    keeper._expire_overdue(time.monotonic())
    assert idle.lost.is_set() and "no keep-alive was confirmed" in idle.lost_reason
    for lease in (renewed, refused, unanswered):
        assert lease.alive and lease.remaining == 0.0  # in doubt: not lost, not promised
    sent_at = time.monotonic() - 0.1
    sent = collections.deque([(sent_at, [1, 2], True)])
    answers = _Call([lease_pb2.LeaseKeepAliveResponse(ids=[1, 2], ttls=[3, 0])])
    await keeper._read(answers, sent, "member", Backoff())
    assert renewed.alive and 2.5 < renewed.remaining <= 3.0
    assert refused.lost.is_set() and "expired or was revoked" in refused.lost_reason
    assert unanswered.alive
    keeper._stream_ended()  # its renewal died with the stream: decided by its deadline
    assert unanswered.lost.is_set()
    assert renewed.alive


def test_a_lease_whose_renewal_awaits_its_answer_is_not_lost_at_its_deadline() -> None:
    asyncio.run(_in_doubt())


async def _held_up() -> None:
    client = _Client()
    keeper = client._keepaliver
    lease = _overdue_lease(client, 9, pending=0)  # due long ago: the sender was held up
    keeper._due.append((lease._next_due, lease.id))
    now = time.monotonic()
    assert keeper._take_due(now) == [9]  # as _serve does: taken first, then judged
    lease._pending += 1
    keeper._expire_overdue(now)
    assert lease.alive and lease._pending == 1


def test_a_lease_due_while_the_sender_was_held_up_is_sent_not_lost() -> None:
    asyncio.run(_held_up())


async def _grants_wait_for_renewals() -> None:
    client = _Client()
    keeper = client._keepaliver
    lease = _overdue_lease(client, 5, pending=1)
    lease._deadline = time.monotonic() + 3
    await asyncio.wait_for(keeper.caught_up(), 1)  # nothing sent: not lagging
    sent = collections.deque([(time.monotonic() - 1.0, [5], True)])  # a renewal waiting 1 s for its answer
    keeper._sent = sent
    assert keeper.lagging()
    grant = asyncio.ensure_future(keeper.caught_up())  # what grant_lease awaits first
    await asyncio.sleep(0.2)
    assert not grant.done(), "a grant went ahead of a lagging renewal"
    await keeper._read(_Call([lease_pb2.LeaseKeepAliveResponse(ids=[5], ttls=[3])]), sent, "member", Backoff())
    await asyncio.wait_for(grant, 1)
    assert lease.alive and not keeper.lagging()


def test_new_grants_wait_while_renewals_lag() -> None:
    """lease.py Rule 6: renewals come before grants."""
    asyncio.run(_grants_wait_for_renewals())
