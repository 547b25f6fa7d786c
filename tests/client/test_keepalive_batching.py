"""coord_client's keep-alive at scale (coord_client/aio/lease.py Rules 2, 4, 5 and 7): many
leases renewed in few requests on one stream, paced with jitter; a lease whose deadline
passes without a confirmed renewal is lost then, even while its renewal waits unread
behind others on a stream that keeps answering; a stream whose oldest request waits the
attempt timeout is given up."""

from __future__ import annotations

import asyncio
import collections
import heapq
import time
from typing import Any

import grpc

from coord.v1 import lease_pb2
from coord_client import errors
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
    unanswered = _overdue_lease(client, 3, pending=1)
    idle = _overdue_lease(client, 4, pending=0)
    keeper._expire_overdue(time.monotonic())
    assert idle.lost.is_set() and "no keep-alive was confirmed" in idle.lost_reason
    assert unanswered.lost.is_set() and "still unanswered" in unanswered.lost_reason
    # An answer after the deadline does not undo the loss, and one the loop had not yet
    # judged (the reader ran first) loses its lease as well.
    late = Lease(client, 5, 3, time.monotonic() - 3.5)  # type: ignore[arg-type]
    keeper._leases[5] = late
    late.keepalive, late._pending = True, 1
    sent_at = time.monotonic() - 3.4
    sent = collections.deque([(sent_at, [3, 5], True)])
    answers = _Call([lease_pb2.LeaseKeepAliveResponse(ids=[3, 5], ttls=[3, 3])])
    await keeper._read(answers, sent, "member", Backoff())
    assert unanswered.lost.is_set() and unanswered.remaining == 0.0
    assert late.lost.is_set() and "came too late" in late.lost_reason


def test_a_lease_whose_renewal_awaits_its_answer_is_lost_at_its_deadline() -> None:
    """lease.py Rule 2: a lock holder learns by the deadline, not when the answer comes."""
    asyncio.run(_in_doubt())


async def _held_up() -> None:
    client = _Client()
    keeper = client._keepaliver
    lease = _overdue_lease(client, 9, pending=0)  # due long ago: the sender was held up
    keeper._due.append((lease._next_due, lease.id))
    assert keeper._take_due(time.monotonic()) == []
    assert lease.lost.is_set() and "not sent in time" in lease.lost_reason


def test_a_lease_due_while_the_sender_was_held_up_past_its_deadline_is_lost() -> None:
    asyncio.run(_held_up())


class _SlowMember:
    """A KeepAlive stream that answers its requests in order, one every ``pace`` seconds,
    as a member does that reads renewals far behind them (a burst)."""

    def __init__(self, pace: float, ttls: dict[int, int]) -> None:
        self.pace = pace
        self.ttls = ttls
        self.requests: asyncio.Queue[lease_pb2.LeaseKeepAliveRequest] = asyncio.Queue()
        self.answered: list[int] = []

    async def write(self, request: lease_pb2.LeaseKeepAliveRequest) -> None:
        self.requests.put_nowait(request)

    async def read(self) -> Any:
        request = await self.requests.get()
        await asyncio.sleep(self.pace)
        if request.ids:
            self.answered.extend(request.ids)
            return lease_pb2.LeaseKeepAliveResponse(ids=request.ids, ttls=[self.ttls[i] for i in request.ids])
        self.answered.append(request.id)
        return lease_pb2.LeaseKeepAliveResponse(id=request.id, ttl=self.ttls[request.id])

    def cancel(self) -> None:
        pass


class _Stubs:
    def __init__(self, member: _SlowMember) -> None:
        self.lease = self
        self.member = member

    def KeepAlive(self) -> _SlowMember:  # noqa: N802 - the grpc stub's name
        return self.member


def _behind_a_backlog(attempt_timeout: float) -> tuple[_Client, _SlowMember, list[Lease], Lease]:
    """20 leases with a long TTL due now, then one with TTL 3 due just after: each goes
    in a request of its own, so the short one's waits behind 20 answers 0.3 s apart."""
    client = _Client()
    client._transport.attempt_timeout = attempt_timeout
    keeper = client._keepaliver
    keeper._batched = False
    now = time.monotonic()
    others = [Lease(client, i, 60, now) for i in range(1, 21)]  # type: ignore[arg-type]
    short = Lease(client, 99, 3, now)  # type: ignore[arg-type]
    short._next_due = now + 0.05
    for lease in others:
        lease._next_due = now
    member = _SlowMember(0.3, {lease.id: lease.ttl for lease in [*others, short]})
    client._transport.stubs = lambda address: _Stubs(member)  # type: ignore[attr-defined]
    for lease in [*others, short]:
        keeper._leases[lease.id] = lease
        lease.keepalive = True
        heapq.heappush(keeper._due, (lease._next_due, lease.id))
    return client, member, others, short


async def _unread_renewal() -> None:
    client, member, others, short = _behind_a_backlog(attempt_timeout=60.0)
    keeper = client._keepaliver
    lost_at: list[float] = []
    short.on_lost(lambda lease: lost_at.append(time.monotonic()))
    serving = asyncio.ensure_future(keeper._serve("member", Backoff()))
    try:
        await asyncio.wait_for(short.lost.wait(), short._deadline - time.monotonic() + 5)
    finally:
        serving.cancel()
    assert lost_at and lost_at[0] <= short._deadline + 0.5, lost_at[0] - short._deadline
    assert not short.alive and short.remaining == 0.0
    assert "still unanswered" in short.lost_reason
    assert 99 not in member.answered and len(member.answered) >= 5  # the stream was answering others
    assert all(lease.alive for lease in others)


def test_a_renewal_left_unread_behind_others_loses_its_lease_by_its_deadline() -> None:
    """lease.py Rules 2 and 7: answers for other leases do not keep this one alive."""
    asyncio.run(_unread_renewal())


async def _stream_given_up() -> None:
    client, member, _, _ = _behind_a_backlog(attempt_timeout=1.0)
    started = time.monotonic()
    try:
        await asyncio.wait_for(client._keepaliver._serve("member", Backoff()), 30)
    except errors.Unavailable as err:
        assert "no keep-alive answer" in str(err)
    else:
        raise AssertionError("the stream was not given up")
    assert time.monotonic() - started < 3.0  # its oldest unanswered request was 1 s old then
    assert 1 <= len(member.answered) < 20  # while the member was still answering


def test_a_stream_whose_oldest_request_waits_the_attempt_timeout_is_given_up() -> None:
    """lease.py Rule 5: measured from the oldest unanswered request, not the last answer."""
    asyncio.run(_stream_given_up())


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
