"""Distributed locks and semaphores with fencing tokens.

    async with client.lock("jobs", ttl=10) as held:
        await do_work(fencing_token=held.fencing_token)
        held.check()                       # raises LockLost if the lease ended meanwhile

Rule 1: a lock is held through a lease. Unless one is passed in, the lock grants its own
        lease (``ttl`` seconds) when acquiring, keeps it alive while waiting and while
        held, and revokes it on release (which releases the lock in the same log entry).
Rule 2: the block learns when the lease is lost: ``held.lost`` is set, ``held.check()``
        raises :class:`~coord_client.errors.LockLost`, and leaving the block normally
        raises LockLost too, so a loss is never silent. With ``cancel_on_loss=True`` the
        task running the block is cancelled at once and the ``async with`` raises
        LockLost.
Rule 3: a failed or cancelled acquire leaves nothing behind: the lock's own lease is
        revoked (in the background if the caller was cancelled); with a lease passed in,
        a grant that raced the failure is found with Inspect and released.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from coord.v1 import lock_pb2

from .. import errors
from .lease import call_while_alive
from ..types import LockInfo

if TYPE_CHECKING:
    from .client import AsyncClient
    from .lease import Lease

__all__ = ["Lock", "LossScope"]

log = logging.getLogger("coord_client.lock")

_RELEASE_REFINE = {grpc.StatusCode.FAILED_PRECONDITION: errors.LockNotHeld}


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LossScope:
    """Rule 2 for anything held through a lease (locks, leaderships): ``lost``, and the
    optional cancellation of the task inside the ``async with``."""

    def __init__(self, cancel_on_loss: bool) -> None:
        self.cancel_on_loss = cancel_on_loss
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self._task: asyncio.Task[object] | None = None
        self._cancelled = False
        self.listeners: list[Callable[[str], None]] = []
        """Called with the reason on every loss, on the event loop (the sync facade
        mirrors ``lost`` into a threading.Event with one)."""

    def reset(self) -> None:
        """A new hold begins."""
        self.lost = asyncio.Event()
        self.lost_reason = ""

    def enter(self) -> None:
        self._task = asyncio.current_task()
        self._cancelled = False

    def lose(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.lost_reason = reason
        self.lost.set()
        for listener in self.listeners:
            listener(reason)
        if self.cancel_on_loss and self._task is not None and not self._task.done():
            self._cancelled = True
            self._task.cancel(f"lost: {reason}")

    def exit(self, exc_type: type[BaseException] | None) -> bool:
        """Leave the block; True when LockLost should be raised (Rule 2)."""
        task, self._task = self._task, None
        if self._cancelled and task is not None:
            task.uncancel()
        if not self.lost.is_set():
            return False
        if exc_type is None:
            return True
        return self._cancelled and issubclass(exc_type, asyncio.CancelledError)


class Lock:
    """A named lock (``permits`` = 1) or counting semaphore (``permits`` > 1), held
    through a lease; see the module docstring. Not reentrant; one Lock object holds at
    most one permit at a time."""

    def __init__(
        self,
        client: AsyncClient,
        name: str,
        *,
        ttl: int = 10,
        permits: int = 1,
        lease: Lease | None = None,
        owner: str | None = None,
        timeout: float | None = None,
        cancel_on_loss: bool = False,
    ) -> None:
        if not name:
            raise errors.InvalidArgument("a lock needs a name")
        if permits < 1:
            raise errors.InvalidArgument(f"permits must be at least 1, got {permits}")
        self._client = client
        self.name = name
        self.ttl = ttl
        self.permits = permits
        self.owner = owner if owner is not None else default_owner()
        self.timeout = timeout
        self._given_lease = lease
        self.lease: Lease | None = lease
        self.fencing_token = 0
        """The token of the current grant (0 while not held): strictly increasing per lock
        name. Present it to the resources the lock protects, or guard writes with
        ``Compare.lock_token(name) == token``."""
        self._scope = LossScope(cancel_on_loss)

    def __repr__(self) -> str:
        state = f"held, token {self.fencing_token}" if self.is_held else "not held"
        return f"Lock({self.name!r}, permits={self.permits}, {state})"

    @property
    def lost(self) -> asyncio.Event:
        """Set when the lease ended while the lock was held."""
        return self._scope.lost

    @property
    def lost_reason(self) -> str:
        return self._scope.lost_reason

    @property
    def is_held(self) -> bool:
        return self.fencing_token != 0 and not self._scope.lost.is_set()

    def check(self) -> None:
        """Raise LockLost if the lock was lost while held."""
        if self._scope.lost.is_set():
            raise errors.LockLost(f"lock {self.name!r} (token {self.fencing_token}) was lost: {self._scope.lost_reason}")

    async def acquire(self, *, timeout: float | None = None, wait: bool = True) -> bool:
        """Take one permit. Waits in the lock's FIFO queue up to ``timeout`` seconds (None:
        the Lock's timeout, which defaults to no limit) and raises DeadlineExceeded when
        it passes; with ``wait=False`` returns False at once when no permit is free.
        Returns True once held."""
        if self.fencing_token:
            raise errors.FailedPrecondition(f"lock {self.name!r} is already held by this Lock object")
        if timeout is None:
            timeout = self.timeout
        lease = self._given_lease
        if lease is None:
            lease = await self._client.grant_lease(self.ttl, timeout=timeout)
        self.lease = lease
        lease.check()
        request = lock_pb2.LockAcquireRequest(
            name=self.name, lease=lease.id, no_wait=not wait, permits=self.permits, owner=self.owner
        )
        acquire = self._client._transport.call(
            lambda s: s.pipelined("lock_acquire"), request, timeout=timeout, mutating=True, waits=True,
            forever=True, to_leader=True, refine=errors.LEASE_REFINE,
        )
        try:
            response = await call_while_alive(lease, acquire, f"the lease of lock {self.name!r} was lost while waiting")
        except BaseException:
            self._abandon(lease)
            raise
        if not response.acquired:
            self._abandon(lease)
            return False
        self.fencing_token = response.token
        self._scope.reset()
        lease.on_lost(self._on_lease_lost)
        return True

    def _on_lease_lost(self, lease: Lease) -> None:
        if self.fencing_token and lease is self.lease:
            self._scope.lose(f"lease {lease.id} ended: {lease.lost_reason}")

    def _abandon(self, lease: Lease) -> None:
        """Rule 3, in the background (the caller may be cancelled)."""
        own = self._given_lease is None
        self.lease = self._given_lease
        if own:
            self._client._spawn(lease._end(None, to_leader=True), f"revoke the lease of lock {self.name!r}")
        else:
            self._client._spawn(self._release_by_lease(lease.id), f"release a raced grant of {self.name!r}")

    async def _release_by_lease(self, lease_id: int) -> None:
        info = await self.inspect()
        for holder in info.holders:
            if holder.lease == lease_id:
                await self._client._transport.call(
                    lambda s: s.pipelined("lock_release"), lock_pb2.LockReleaseRequest(name=self.name, token=holder.token),
                    mutating=True, to_leader=True, refine=_RELEASE_REFINE,
                )

    async def release(self, *, timeout: float | None = None) -> None:
        """Give the permit back (revoking the lock's own lease). Releasing a lock that is
        not held, or whose lease is already gone, does nothing."""
        token, self.fencing_token = self.fencing_token, 0
        lease = self.lease
        self.lease = self._given_lease
        if not token or lease is None:
            return
        if self._given_lease is None:
            await lease._end(timeout, to_leader=True)  # releases the lock in the same entry
            return
        if lease.lost.is_set():
            return
        try:
            await self._client._transport.call(
                lambda s: s.pipelined("lock_release"), lock_pb2.LockReleaseRequest(name=self.name, token=token),
                timeout=timeout, mutating=True, to_leader=True, refine=_RELEASE_REFINE,
            )
        except errors.LockNotHeld:
            if not self._scope.lost.is_set():
                raise

    async def inspect(self, *, timeout: float | None = None) -> LockInfo:
        """The lock's permits, holders (with tokens) and waiters."""
        return await self._client.lock_info(self.name, timeout=timeout)

    async def __aenter__(self) -> Lock:
        if not await self.acquire():
            raise errors.DeadlineExceeded(f"lock {self.name!r} was not acquired")
        self._scope.enter()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        raise_lost = self._scope.exit(exc_type)
        token = self.fencing_token
        try:
            await self.release()
        except errors.CoordError as err:
            log.warning("could not release lock %r (token %d): %s; it is released when its lease ends", self.name, token, err)
        if raise_lost:
            raise errors.LockLost(
                f"lock {self.name!r} (token {token}) was lost while held: {self._scope.lost_reason}"
            ) from (exc if exc_type is not None else None)
