"""Leader election among client processes: campaign as a context manager, observe as an
async iterator.

    async with client.campaign("scheduler", value="host-a:8080", ttl=10) as term:
        ...                                # this process leads; term.leader.token fences
    async for leader in client.observe("scheduler"):
        print(leader.value if leader else "no leader")

Rule 1: a candidacy is bound to a lease, granted by the campaign (``ttl``) unless one is
        passed in, kept alive while campaigning and leading, and revoked on exit (which
        resigns in the same log entry).
Rule 2: as for locks (aio/lock.py Rule 2), the block learns when the leadership ends:
        ``lost`` is set, ``check()`` raises LeadershipLost, leaving the block normally
        raises it, and ``cancel_on_loss=True`` cancels the block at once. A Proclaim
        refused because the leadership is gone also counts as a loss.
Rule 3: an observation follows the election across member failures: the stream is
        reopened elsewhere and a state equal to the last one delivered is not repeated.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from coord.v1 import election_pb2

from .. import errors
from .lease import call_while_alive
from .._transport import Backoff
from ..types import Bytes, Leader, _leader, to_bytes
from .lock import LossScope

if TYPE_CHECKING:
    from .client import AsyncClient
    from .lease import Lease

__all__ = ["Campaign", "Observation"]

log = logging.getLogger("coord_client.election")

_LEADERSHIP_REFINE = {grpc.StatusCode.FAILED_PRECONDITION: errors.LeadershipLost}


def leader_key(leader: Leader) -> election_pb2.LeaderKey:
    return election_pb2.LeaderKey(name=leader.name, lease=leader.lease, token=leader.token, revision=leader.revision)


class Campaign:
    """A candidacy in election ``name`` with ``value``; ``async with`` it to lead for the
    duration of the block (see the module docstring)."""

    def __init__(
        self,
        client: AsyncClient,
        name: str,
        value: Bytes,
        *,
        ttl: int = 10,
        lease: Lease | None = None,
        timeout: float | None = None,
        cancel_on_loss: bool = False,
    ) -> None:
        if not name:
            raise errors.InvalidArgument("an election needs a name")
        self._client = client
        self.name = name
        self.value = to_bytes(value)
        self.ttl = ttl
        self.timeout = timeout
        self._given_lease = lease
        self.lease: Lease | None = lease
        self.leader: Leader | None = None
        """The leadership won (its ``token`` is a fencing token), None while not leading."""
        self._scope = LossScope(cancel_on_loss)

    def __repr__(self) -> str:
        state = f"leading, token {self.leader.token}" if self.is_leader and self.leader else "not leading"
        return f"Campaign({self.name!r}, {state})"

    @property
    def lost(self) -> asyncio.Event:
        return self._scope.lost

    @property
    def lost_reason(self) -> str:
        return self._scope.lost_reason

    @property
    def is_leader(self) -> bool:
        return self.leader is not None and not self._scope.lost.is_set()

    @property
    def token(self) -> int:
        return self.leader.token if self.leader is not None else 0

    def check(self) -> None:
        """Raise LeadershipLost if the leadership ended."""
        if self._scope.lost.is_set():
            raise errors.LeadershipLost(f"leadership of {self.name!r} was lost: {self._scope.lost_reason}")

    async def campaign(self, *, timeout: float | None = None) -> Leader:
        """Become leader: wait in the election's queue up to ``timeout`` (None: the
        Campaign's timeout, default no limit; DeadlineExceeded when it passes)."""
        if self.leader is not None:
            return self.leader
        if timeout is None:
            timeout = self.timeout
        lease = self._given_lease
        if lease is None:
            lease = await self._client.grant_lease(self.ttl, timeout=timeout)
        self.lease = lease
        lease.check()
        request = election_pb2.ElectionCampaignRequest(name=self.name, lease=lease.id, value=self.value)
        call = self._client._transport.call(
            lambda s: s.election.Campaign, request, timeout=timeout, mutating=True, waits=True,
            forever=True, to_leader=True, refine=errors.LEASE_REFINE,
        )
        try:
            response = await call_while_alive(lease, call, f"the lease of the campaign in {self.name!r} was lost")
        except BaseException:
            self._abandon(lease)
            raise
        self.leader = _leader(response.leader, self.value)
        self._scope.reset()
        lease.on_lost(self._on_lease_lost)
        return self.leader

    def _on_lease_lost(self, lease: Lease) -> None:
        if self.leader is not None and lease is self.lease:
            self._scope.lose(f"lease {lease.id} ended: {lease.lost_reason}")

    def _abandon(self, lease: Lease) -> None:
        self.lease = self._given_lease
        if self._given_lease is None:
            self._client._spawn(lease._end(None, to_leader=True), f"revoke the lease of the campaign in {self.name!r}")
        # With a lease passed in, the server drops the candidacy when the call ends
        # (election.proto: "the candidate then leaves the queue").

    async def proclaim(self, value: Bytes, *, timeout: float | None = None) -> None:
        """Publish a new value without a new election; LeadershipLost when not leading."""
        if self.leader is None:
            raise errors.LeadershipLost(f"not leading {self.name!r}")
        self.check()
        data = to_bytes(value)
        request = election_pb2.ElectionProclaimRequest(leader=leader_key(self.leader), value=data)
        try:
            await self._client._transport.call(
                lambda s: s.election.Proclaim, request, timeout=timeout, mutating=True, to_leader=True,
                refine=_LEADERSHIP_REFINE,
            )
        except errors.LeadershipLost as err:
            self._scope.lose(f"the leadership is no longer current: {err.details}")
            raise
        self.value = data
        self.leader = Leader(self.leader.name, self.leader.lease, self.leader.token, self.leader.revision, data)

    async def resign(self, *, timeout: float | None = None) -> None:
        """Give up the leadership (revoking the campaign's own lease); the next candidate
        leads. Does nothing when not leading."""
        leader, self.leader = self.leader, None
        lease, self.lease = self.lease, self._given_lease
        if leader is None or lease is None:
            return
        if self._given_lease is None:
            await lease._end(timeout, to_leader=True)  # resigns in the same entry
            return
        if lease.lost.is_set():
            return
        try:
            await self._client._transport.call(
                lambda s: s.election.Resign, election_pb2.ElectionResignRequest(leader=leader_key(leader)),
                timeout=timeout, mutating=True, to_leader=True, refine=_LEADERSHIP_REFINE,
            )
        except errors.LeadershipLost:
            pass

    async def __aenter__(self) -> Campaign:
        await self.campaign()
        self._scope.enter()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        raise_lost = self._scope.exit(exc_type)
        try:
            await self.resign()
        except errors.CoordError as err:
            log.warning("could not resign %r: %s; the leadership ends with its lease", self.name, err)
        if raise_lost:
            raise errors.LeadershipLost(
                f"leadership of {self.name!r} was lost while the block ran: {self._scope.lost_reason}"
            ) from (exc if exc_type is not None else None)


class Observation:
    """``async for leader in client.observe(name)``: the election's current state, then
    every change; ``None`` means nobody leads. Reconnects by itself (Rule 3)."""

    def __init__(self, client: AsyncClient, name: str, *, timeout: float | None = None) -> None:
        self._client = client
        self.name = name
        self._timeout = timeout
        self._call: Any = None
        self._address = ""
        self._last: tuple[int, int, bytes] | None = None
        self._delivered = False
        self._closed = False
        self.reconnects = 0

    def __aiter__(self) -> Observation:
        return self

    async def __anext__(self) -> Leader | None:
        transport = self._client._transport
        backoff = Backoff()
        deadline = transport.deadline(self._timeout) if not self._delivered else float("inf")
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._call is None:
                self._address = transport.pick()
                self._call = transport.stubs(self._address).election.Observe(
                    election_pb2.ElectionObserveRequest(name=self.name)
                )
            try:
                response = await self._call.read()
            except asyncio.CancelledError:
                if self._closed:
                    raise StopAsyncIteration from None
                raise
            except grpc.aio.AioRpcError as err:
                self._call = None
                if self._closed:
                    raise StopAsyncIteration from None
                if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                    raise errors.error_from_rpc(err) from None
                self.reconnects += 1
                if not transport.failed(self._address, errors.leader_hint(err)):
                    await transport.sleep_backoff(backoff, deadline)
                continue
            if response is grpc.aio.EOF:
                self._call = None
                if self._closed:
                    raise StopAsyncIteration
                self.reconnects += 1
                transport.failed(self._address)
                await transport.sleep_backoff(backoff, deadline)
                continue
            transport.succeeded(self._address)
            backoff.reset()
            state = (response.leader.lease, response.leader.token, response.value) if response.HasField("leader") else (0, 0, b"")
            if self._delivered and state == self._last:
                continue
            self._last = state
            self._delivered = True
            return _leader(response.leader, response.value) if response.HasField("leader") else None

    async def aclose(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()
            self._call = None

    async def __aenter__(self) -> Observation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
