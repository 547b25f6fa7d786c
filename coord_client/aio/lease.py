"""Leases and their background keep-alive.

A :class:`Lease` is a granted lease. While it is *tracked*, the client's one
:class:`KeepAliver` renews it over one Lease.KeepAlive stream shared by every lease of the
client (as etcd's clients do), every ``ttl / 3`` seconds.

Rule 1: the client's own view of a lease's end is conservative. Each renewal answered with
        TTL t, for a request sent at time s (monotonic), moves the lease's local deadline
        to s + t; the leader counts from when it received the request, which is later. So
        the client never believes a lease alive that the cluster has already ended.
Rule 2: a lease is *lost* when a renewal is answered with TTL 0 (it expired or was revoked)
        or when its local deadline passes without a confirmed renewal (the cluster could
        not be reached in time). Losing is final: ``lost`` is set, ``lost_reason`` says
        why, and every ``on_lost`` callback runs once, on the event loop.
Rule 3: when the stream fails, it is reopened on the leader named by ``coord-leader`` or
        the next endpoint, with backoff, and every lease is renewed at once (lease.proto:
        a new leader has extended every lease by one election timeout).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.aio

from coord.v1 import lease_pb2

from .. import errors
from .._transport import Backoff
from ..types import LeaseInfo

T = TypeVar("T")

if TYPE_CHECKING:
    from .client import AsyncClient

__all__ = ["KeepAliver", "Lease", "LeaseScope"]

log = logging.getLogger("coord_client.lease")

_MIN_INTERVAL = 0.1


class Lease:
    """A granted lease: ``id``, ``ttl`` (granted, seconds), and, while kept alive,
    ``lost`` / ``alive`` / ``remaining``. Use it as an async context manager to revoke it
    on exit. Obtain one from ``AsyncClient.grant_lease`` or ``AsyncClient.lease``."""

    def __init__(self, client: AsyncClient, lease_id: int, ttl: int, granted_at: float) -> None:
        self._client = client
        self.id = lease_id
        self.ttl = ttl
        self.lost = asyncio.Event()
        """Set once the lease has ended (Rule 2), or was revoked by this client."""
        self.lost_reason = ""
        self._deadline = granted_at + ttl
        self._next_due = granted_at + self.interval
        self._callbacks: list[Callable[[Lease], None]] = []
        self._mirrors: list[Callable[[], None]] = []
        """Called on every end, expected or not (the sync facade mirrors ``lost``)."""
        self.keepalive = False
        """Whether the client keeps this lease alive in the background."""

    def __repr__(self) -> str:
        state = "lost" if self.lost.is_set() else "kept alive" if self.keepalive else "granted"
        return f"Lease(id={self.id}, ttl={self.ttl}, {state})"

    @property
    def interval(self) -> float:
        """Seconds between renewals: a third of the TTL (as etcd)."""
        return max(_MIN_INTERVAL, self.ttl / 3)

    @property
    def alive(self) -> bool:
        return not self.lost.is_set()

    @property
    def remaining(self) -> float:
        """Seconds the lease is known to live at least, by the client's clock (Rule 1);
        0 once lost."""
        if self.lost.is_set():
            return 0.0
        return max(0.0, self._deadline - time.monotonic())

    def on_lost(self, callback: Callable[[Lease], None]) -> None:
        """Call ``callback(lease)`` on the event loop when the lease is lost (at once if it
        already is)."""
        if self.lost.is_set():
            callback(self)
        elif callback not in self._callbacks:  # a Lock re-acquired on one lease registers again
            self._callbacks.append(callback)

    def check(self) -> None:
        """Raise LeaseLost if the lease was lost."""
        if self.lost.is_set():
            raise errors.LeaseLost(f"lease {self.id} was lost: {self.lost_reason}")

    async def refresh(self, timeout: float | None = None) -> int:
        """Renew the lease once, now, and return its new TTL; LeaseNotFound (and the lease
        is lost) when it no longer exists."""
        sent = time.monotonic()
        ttl = await self._client._keepaliver.renew_once(self.id, timeout)
        if ttl <= 0:
            self._lose("the lease expired or was revoked")
            raise errors.LeaseNotFound(f"lease {self.id} does not exist")
        self._renewed(sent, ttl)
        return ttl

    async def time_to_live(self, *, attachments: bool = False, timeout: float | None = None) -> LeaseInfo:
        """The lease as the leader sees it: remaining TTL and, on request, what is bound
        to it."""
        return await self._client.lease_info(self.id, attachments=attachments, timeout=timeout)

    async def revoke(self, timeout: float | None = None) -> None:
        """End the lease now: its keys are deleted, its locks released, its elections
        resigned, its ring members removed. A lease already gone is not an error."""
        await self._end(timeout)

    async def _end(self, timeout: float | None, to_leader: bool = False) -> None:
        """``revoke``; ``to_leader`` when the lease is a lock's or a campaign's own
        (client.py)."""
        self._client._keepaliver.untrack(self.id)
        try:
            await self._client._revoke_lease(self.id, timeout, to_leader)
        except errors.LeaseNotFound:
            pass
        self._lose("revoked by this client", unexpected=False)

    def stop_keepalive(self) -> None:
        """Stop renewing; the lease then ends when its TTL runs out."""
        self._client._keepaliver.untrack(self.id)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.revoke()

    # -- called by the keep-aliver ------------------------------------------------------

    def _renewed(self, sent: float, ttl: int) -> None:
        self._deadline = max(self._deadline, sent + ttl)
        self._next_due = time.monotonic() + max(_MIN_INTERVAL, ttl / 3)

    def _lose(self, reason: str, unexpected: bool = True) -> None:
        """Rule 2. ``unexpected`` is False for this client's own revoke: ``lost`` is set
        but the callbacks (which report a loss) do not run."""
        if self.lost.is_set():
            return
        self.lost_reason = reason
        self.lost.set()
        self.keepalive = False
        self._client._keepaliver.untrack(self.id)
        callbacks, self._callbacks = self._callbacks, []
        if unexpected:
            log.warning("lease %d lost: %s", self.id, reason)
            for callback in callbacks:
                try:
                    callback(self)
                except Exception:  # noqa: BLE001 - one bad callback must not stop the others
                    log.exception("on_lost callback of lease %d failed", self.id)
        for mirror in self._mirrors:  # last: a thread woken by them sees the callbacks' work
            mirror()


class LeaseScope:
    """What ``AsyncClient.lease(ttl)`` returns: ``async with`` it for a lease that is kept
    alive and revoked on exit (leaving the block normally after the lease was lost raises
    LeaseLost), or ``await`` it for a kept-alive lease you revoke yourself."""

    def __init__(self, client: AsyncClient, ttl: int, lease_id: int, timeout: float | None) -> None:
        self._client = client
        self._ttl = ttl
        self._id = lease_id
        self._timeout = timeout
        self._lease: Lease | None = None

    def __await__(self) -> Generator[Any, None, Lease]:
        return self._client.grant_lease(self._ttl, lease_id=self._id, timeout=self._timeout).__await__()

    async def __aenter__(self) -> Lease:
        self._lease = await self._client.grant_lease(self._ttl, lease_id=self._id, timeout=self._timeout)
        return self._lease

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        lease = self._lease
        if lease is None:
            return
        lost, reason = lease.lost.is_set(), lease.lost_reason
        try:
            await lease.revoke()
        except errors.CoordError as err:
            log.warning("could not revoke lease %d on exit (it ends with its TTL): %s", lease.id, err)
        if lost and exc_type is None:  # as for locks: a loss during the block is never silent
            raise errors.LeaseLost(f"lease {lease.id} was lost while the block ran: {reason}")


class KeepAliver:
    """Renews every tracked lease of one client over one KeepAlive stream."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._leases: dict[int, Lease] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.reconnects = 0

    def track(self, lease: Lease) -> None:
        lease.keepalive = True
        self._leases[lease.id] = lease
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="coord-keepalive")

    def tracked(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def untrack(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id, None)
        if lease is not None:
            lease.keepalive = False
            self._wake.set()

    async def close(self) -> None:
        self._leases.clear()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    async def renew_once(self, lease_id: int, timeout: float | None) -> int:
        """One renewal on a short stream of its own, with the usual retries."""
        transport = self._client._transport
        deadline = transport.deadline(timeout)
        backoff = Backoff()
        while True:
            address = transport.pick()
            call = transport.stubs(address).lease.KeepAlive()
            try:
                async with asyncio.timeout(max(0.01, min(transport.attempt_timeout, deadline - time.monotonic()))):
                    await call.write(lease_pb2.LeaseKeepAliveRequest(id=lease_id))
                    response = await call.read()
                if not isinstance(response, lease_pb2.LeaseKeepAliveResponse):
                    raise errors.Unavailable("the member closed the keep-alive stream")
                transport.succeeded(address)
                return response.ttl
            except grpc.aio.AioRpcError as err:
                if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise errors.error_from_rpc(err, errors.LEASE_REFINE) from None
                at_once = transport.failed(address, errors.leader_hint(err))
            except (TimeoutError, errors.Unavailable):
                at_once = transport.failed(address)
            finally:
                call.cancel()
            if time.monotonic() >= deadline:
                raise errors.DeadlineExceeded(f"could not renew lease {lease_id} before the deadline")
            if not at_once:
                await asyncio.sleep(min(backoff.next(), max(0.0, deadline - time.monotonic())))

    # -- the background task -------------------------------------------------------------

    def _expire_overdue(self) -> None:
        now = time.monotonic()
        for lease in list(self._leases.values()):
            if now >= lease._deadline:
                lease._lose("no keep-alive was confirmed within its TTL (the cluster could not be reached)")

    async def _run(self) -> None:
        transport = self._client._transport
        backoff = Backoff(cap=0.5)
        while self._leases and not transport.closed:
            address = transport.pick()
            at_once = False
            try:
                await self._serve(address, backoff)
            except grpc.aio.AioRpcError as err:
                self.reconnects += 1
                hint = errors.leader_hint(err) if err.code() == grpc.StatusCode.UNAVAILABLE else ""
                log.info("keep-alive stream to %s ended (%s); reconnecting", address, err.code().name)
                at_once = transport.failed(address, hint)
            except (errors.Unavailable, TimeoutError, asyncio.InvalidStateError) as err:
                self.reconnects += 1
                log.info("keep-alive stream to %s ended (%s); reconnecting", address, err)
                at_once = transport.failed(address)
            except errors.ClientClosed:
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep renewing whatever happens
                log.exception("keep-alive stream to %s failed", address)
            self._expire_overdue()
            if not self._leases:
                return
            for lease in self._leases.values():  # Rule 3: renew at once on the new stream
                lease._next_due = 0.0
            if not at_once:
                soonest = min(lease._deadline for lease in self._leases.values())
                delay = min(backoff.next(), max(0.0, soonest - time.monotonic()))
                await asyncio.sleep(delay)

    async def _serve(self, address: str, backoff: Backoff) -> None:
        transport = self._client._transport
        call = transport.stubs(address).lease.KeepAlive()
        sent: dict[int, collections.deque[float]] = collections.defaultdict(collections.deque)
        reader = asyncio.get_running_loop().create_task(self._read(call, sent, address, backoff))
        try:
            while self._leases:
                now = time.monotonic()
                self._expire_overdue()
                for lease in list(self._leases.values()):
                    if lease._next_due <= now:
                        # Until answered, the next attempt is one interval away; an
                        # unanswered stream is given up after attempt_timeout (below).
                        lease._next_due = now + lease.interval
                        sent[lease.id].append(now)
                        await call.write(lease_pb2.LeaseKeepAliveRequest(id=lease.id))
                if not self._leases:
                    break
                oldest = min((q[0] for q in sent.values() if q), default=None)
                if oldest is not None and now - oldest > transport.attempt_timeout:
                    raise errors.Unavailable(f"no keep-alive answer from {address} in {transport.attempt_timeout}s")
                wake_at = min(min(l._next_due for l in self._leases.values()), min(l._deadline for l in self._leases.values()))
                if oldest is not None:
                    wake_at = min(wake_at, oldest + transport.attempt_timeout)
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                done, _ = await asyncio.wait(
                    {waiter, reader}, timeout=max(0.0, wake_at - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                if reader in done:
                    reader.result()  # raises the stream's error
                    raise errors.Unavailable(f"{address} closed the keep-alive stream")
        finally:
            reader.cancel()
            call.cancel()
            if reader.done() and not reader.cancelled():
                reader.exception()  # retrieved: the stream's end is handled by the caller

    async def _read(
        self,
        call: Any,
        sent: dict[int, collections.deque[float]],
        address: str,
        backoff: Backoff,
    ) -> None:
        transport = self._client._transport
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                return
            backoff.reset()
            transport.succeeded(address)
            queue = sent.get(response.id)
            at = queue.popleft() if queue else time.monotonic()
            lease = self._leases.get(response.id)
            if lease is None:
                continue
            if response.ttl <= 0:
                lease._lose("the lease expired or was revoked (the cluster no longer knows it)")
            else:
                lease._renewed(at, response.ttl)


async def call_while_alive(lease: Lease, call: Awaitable[T], lost: str) -> T:
    """Await ``call`` (an Acquire or Campaign that waits in a queue) unless ``lease`` is
    lost first: then the call is cancelled and LeaseLost says ``lost`` and why."""
    task = asyncio.ensure_future(call)
    lost_wait = asyncio.ensure_future(lease.lost.wait())
    try:
        done, _ = await asyncio.wait({task, lost_wait}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            raise errors.LeaseLost(f"{lost}: {lease.lost_reason}")
        return task.result()
    finally:
        task.cancel()
        lost_wait.cancel()
