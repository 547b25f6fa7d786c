"""Leases and their background keep-alive.

A :class:`Lease` is a granted lease. While it is *tracked*, the client's one
:class:`KeepAliver` renews it over one Lease.KeepAlive stream shared by every lease of the
client (as etcd's clients do), about every ``ttl / 3`` seconds.

Rule 1: the client's own view of a lease's end is conservative. Each renewal answered with
        TTL t, for a request sent at time s (monotonic), moves the lease's local deadline
        to s + t; the leader counts from when it received the request, which is later. So
        the client never believes a lease alive that the cluster has already ended.
Rule 2: a lease is *lost* when a renewal is answered with TTL 0 (it expired or was revoked)
        or when its local deadline passes without a confirmed renewal, whether or not a
        renewal is on its way: the leader may end it from then on, so a lock holder must
        know by then. An answer that comes after the deadline does not undo it. Losing is
        final: ``lost`` is set, ``lost_reason`` says why, and every ``on_lost`` callback
        runs once, on the event loop.
Rule 3: when the stream fails, it is reopened on the leader named by ``coord-leader`` or
        the next endpoint, with backoff, and every lease is renewed at once (lease.proto:
        a new leader has extended every lease by one election timeout).
Rule 4: renewals are paced and batched. Each lease is due again a third of its TTL after
        its last answer, less up to ``_JITTER`` of that (so leases granted together drift
        apart rather than renewing in one burst forever), and at most halfway from that
        answer to the deadline (an answer that came late leaves less time); every lease due within
        ``_GATHER`` seconds goes out at once, in requests of up to
        ``_MAX_IDS_PER_REQUEST`` ``ids``, answered together.
        Due times and deadlines sit in heaps, so the work per wake-up is the leases due,
        not every lease tracked. Against a member that ignores ``ids`` (an older server)
        the client falls back to one lease per request.
Rule 5: a stream is given up on (and every renewal on it with it) when its oldest
        unanswered request has waited the attempt timeout, even if it answers older
        requests meanwhile: a member that reads renewals far behind them (a burst) leaves
        them unread while it answers others.
Rule 6: renewals come before grants. While the oldest unanswered renewal has waited
        longer than ``_LAGGING``, a new grant that is to be kept alive waits for the
        renewals to catch up (``caught_up``): a client granting many leases at once
        (each a small write) must not starve the renewals of those it already holds.
Rule 7: deadlines are watched cheaply. While a stream is up, a lease costs one heap
        entry per renewal (its due time; a lease's next renewal is due before its
        deadline) and each request one more, at the earliest deadline among its leases;
        only when a request is still unanswered at that time are its leases' own
        deadlines queued. When the stream ends, every lease's deadline is queued.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import random
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
_JITTER = 0.2
"""A renewal is due up to this fraction of its interval early (Rule 4)."""
_MAX_IDS_PER_REQUEST = 1000
"""Leases renewed by one KeepAlive request (Rule 4); the server accepts up to 10,000."""
_AWAITING_ANSWER = float("inf")
"""A lease's ``_next_due`` while its renewal awaits the answer."""
_LAGGING = 0.5
"""Seconds a renewal may wait for its answer before new grants wait for it (Rule 6)."""
_GATHER = 0.2
"""Seconds ahead of its due time a lease is renewed with others due then (Rule 4), so
thousands of leases renew in a few requests per second rather than one per lease."""


def _paced(interval: float) -> float:
    """``interval`` less a random part of up to _JITTER of it (Rule 4)."""
    return interval * (1.0 - _JITTER * random.random())


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
        self._next_due = granted_at + _paced(self.interval)
        self._pending = 0
        """Renewals of this lease sent on the current stream and not yet answered."""
        self._deadline_queued: float | None = None
        """The deadline this lease has in the keep-aliver's heap, if any."""
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
        0 once lost (Rule 2)."""
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
        self._client._keepaliver.rescheduled(self)
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
        now = time.monotonic()
        self._deadline = max(self._deadline, sent + ttl)
        self._next_due = now + min(_paced(max(_MIN_INTERVAL, ttl / 3)), (self._deadline - now) / 2)

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
    """Renews every tracked lease of one client over one KeepAlive stream (Rules 2-4)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._leases: dict[int, Lease] = {}
        self._due: list[tuple[float, int]] = []
        """(due at, lease id); an entry counts while it matches the lease's _next_due."""
        self._deadlines: list[tuple[float, int]] = []
        """(deadline, lease id); an entry counts while it matches _deadline_queued."""
        self._batched = True
        """Whether the members accept ``ids`` (Rule 4)."""
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.reconnects = 0
        self.renewals = 0
        """Renewals confirmed by the cluster so far (a statistic)."""
        self.requests = 0
        """KeepAlive requests sent so far (a statistic: renewals per request, Rule 4)."""
        self._sent: collections.deque[tuple[float, list[int], bool]] = collections.deque()
        """The current stream's unanswered requests (see _serve)."""
        self._sent_count = 0
        self._answered_count = 0
        """Requests sent and answered on the current stream: request n (counted from 0) is
        unanswered while n >= _answered_count (a member answers in order)."""
        self._watch: list[tuple[float, int, list[int]]] = []
        """(earliest deadline among its leases, n, its lease ids) for each request n sent
        on the current stream (Rule 7)."""
        self._live = False
        """Whether a stream is up (Rule 7: lease deadlines are then queued only for late
        requests)."""
        self._catching_up: asyncio.Event | None = None
        """Set once renewals are answered in time again (Rule 6)."""

    def lagging(self) -> bool:
        """Whether the oldest unanswered renewal waits longer than _LAGGING (Rule 6)."""
        sent = self._sent
        return bool(sent) and time.monotonic() - sent[0][0] > _LAGGING

    async def caught_up(self) -> None:
        """Return once renewals are not lagging (Rule 6): at once when they are not, else
        when an answer brings the oldest unanswered one under _LAGGING, or after
        _LAGGING seconds at most (the stream may have ended meanwhile)."""
        while self.lagging():
            if self._catching_up is None:
                self._catching_up = asyncio.Event()
            try:
                async with asyncio.timeout(_LAGGING):
                    await self._catching_up.wait()
            except TimeoutError:
                pass

    def track(self, lease: Lease) -> None:
        lease.keepalive = True
        self._leases[lease.id] = lease
        heapq.heappush(self._due, (lease._next_due, lease.id))
        self._queue_deadline(lease)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="coord-keepalive")

    def tracked(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def untrack(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id, None)
        if lease is not None:
            lease.keepalive = False
            lease._deadline_queued = None
            self._wake.set()

    def rescheduled(self, lease: Lease) -> None:
        """``lease`` was renewed outside the stream (Lease.refresh): due at its new time."""
        if self._leases.get(lease.id) is lease:
            heapq.heappush(self._due, (lease._next_due, lease.id))
            self._queue_deadline(lease)
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

    # -- schedules (Rule 4) --------------------------------------------------------------

    def _queue_deadline(self, lease: Lease) -> None:
        if self._live:
            return  # Rule 7: the stream's answers decide
        if lease._deadline_queued is None:
            lease._deadline_queued = lease._deadline
            heapq.heappush(self._deadlines, (lease._deadline, lease.id))

    def _expire_overdue(self, now: float) -> None:
        """Lose every lease past its deadline (Rule 2), first queuing the deadlines of the
        leases of every request unanswered at its earliest deadline (Rule 7)."""
        self._watch_late(now)
        heap, leases = self._deadlines, self._leases
        while heap and heap[0][0] <= now:
            queued, lease_id = heapq.heappop(heap)
            lease = leases.get(lease_id)
            if lease is None or lease._deadline_queued != queued:
                continue
            lease._deadline_queued = None
            if lease._deadline > now:
                self._queue_deadline(lease)  # renewed since
            elif lease._pending > 0:
                lease._lose("no keep-alive was confirmed within its TTL (its renewal is still unanswered)")
            else:
                lease._lose("no keep-alive was confirmed within its TTL (the cluster could not be reached)")

    def _watch_late(self, now: float) -> None:
        """Queue the deadline of every lease of each request still unanswered when the
        earliest of them came (Rule 7); forget the requests answered."""
        watch, leases = self._watch, self._leases
        while self._prune_watch() and watch[0][0] <= now:
            _, _, ids = heapq.heappop(watch)
            for lease_id in ids:
                lease = leases.get(lease_id)
                if lease is not None and lease._deadline_queued is None:
                    lease._deadline_queued = lease._deadline
                    heapq.heappush(self._deadlines, (lease._deadline, lease_id))

    def _prune_watch(self) -> bool:
        """Drop the answered requests at the top of the watch; whether one is left."""
        watch = self._watch
        while watch and watch[0][1] < self._answered_count:
            heapq.heappop(watch)
        return bool(watch)

    def _take_due(self, now: float) -> list[int]:
        """Once a lease is due, it and every lease due within _GATHER seconds (Rule 4).
        A lease taken is due again only when its answer comes (``_read`` schedules it),
        or at once on the next stream if this one ends first (``_stream_ended``): one
        heap entry per renewal, not two. A lease already past its deadline (the loop was
        held up) is lost rather than taken (Rule 2)."""
        if not self._prune() or self._due[0][0] > now:
            return []
        heap, leases, out = self._due, self._leases, []
        while heap and heap[0][0] <= now + _GATHER:
            due, lease_id = heapq.heappop(heap)
            lease = leases.get(lease_id)
            if lease is None or lease._next_due != due:
                continue
            if lease._deadline <= now:
                lease._lose("no keep-alive was confirmed within its TTL (its renewal was not sent in time)")
                continue
            lease._next_due = _AWAITING_ANSWER
            out.append(lease_id)
        return out

    def _prune_deadlines(self) -> bool:
        """Move the leases renewed since their entry reached the top of the deadline heap
        to their real deadline, so the sender wakes only for a deadline that may pass;
        whether any lease has a deadline."""
        heap, leases = self._deadlines, self._leases
        while heap:
            queued, lease_id = heap[0]
            lease = leases.get(lease_id)
            if lease is None or lease._deadline_queued != queued:
                heapq.heappop(heap)
            elif lease._deadline > queued:
                lease._deadline_queued = lease._deadline
                heapq.heapreplace(heap, (lease._deadline, lease_id))
            else:
                return True
        return False

    def _prune(self) -> bool:
        """Drop the entries at the top of the due heap that no longer count, so that the
        next wake-up is a real due time (a superseded entry must not wake the sender to
        send the few leases that happen to be due then); whether any lease is due."""
        heap, leases = self._due, self._leases
        while heap:
            due, lease_id = heap[0]
            lease = leases.get(lease_id)
            if lease is not None and lease._next_due == due:
                return True
            heapq.heappop(heap)
        return False

    def _stream_ended(self) -> None:
        """Unanswered renewals died with the stream: their leases are decided by their
        deadlines again, and every lease is due at once (Rule 3)."""
        self._sent = collections.deque()
        self._watch = []
        self._live = False
        self._deadlines = []
        for lease in self._leases.values():
            lease._deadline_queued = None
        if self._catching_up is not None:
            self._catching_up.set()
            self._catching_up = None
        now = time.monotonic()
        self._due = []
        for lease in self._leases.values():
            lease._pending = 0
            lease._next_due = now
            self._due.append((now, lease.id))
            self._queue_deadline(lease)
        self._expire_overdue(now)

    # -- the background task -------------------------------------------------------------

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
                log.info("keep-alive stream to %s ended (%s: %s); reconnecting", address, err.code().name, err.details())
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
            self._stream_ended()
            if not self._leases:
                return
            if not at_once:
                soonest = self._deadlines[0][0] if self._deadlines else time.monotonic()
                delay = min(backoff.next(), max(0.0, soonest - time.monotonic()))
                await asyncio.sleep(delay)

    async def _serve(self, address: str, backoff: Backoff) -> None:
        transport = self._client._transport
        call = transport.stubs(address).lease.KeepAlive()
        sent: collections.deque[tuple[float, list[int], bool]] = collections.deque()
        """(sent at, lease ids, as ``ids``) of every unanswered request, in order."""
        self._sent = sent
        self._sent_count = self._answered_count = 0
        self._watch = []
        self._live = True  # until _stream_ended
        reader = asyncio.get_running_loop().create_task(self._read(call, sent, address, backoff))
        try:
            while self._leases:
                now = time.monotonic()
                due = self._take_due(now)
                for lease_id in due:  # before any await: the reader may lose one meanwhile
                    taken = self._leases.get(lease_id)  # (an on_lost callback may untrack one)
                    if taken is not None:
                        taken._pending += 1
                self._expire_overdue(now)
                step = _MAX_IDS_PER_REQUEST if self._batched else 1
                for i in range(0, len(due), step):
                    ids = due[i : i + step]
                    self.requests += 1
                    leases = self._leases
                    deadline = min((leases[k]._deadline for k in ids if k in leases), default=float("inf"))
                    heapq.heappush(self._watch, (deadline, self._sent_count, ids))
                    self._sent_count += 1
                    # Stamped as it goes out, not when the loop woke: a write that waited
                    # for the member to read (flow control) must not age its renewals.
                    if len(ids) == 1:
                        sent.append((time.monotonic(), ids, False))
                        await self._write_watching(call, reader, lease_pb2.LeaseKeepAliveRequest(id=ids[0]))
                    else:
                        sent.append((time.monotonic(), ids, True))
                        await self._write_watching(call, reader, lease_pb2.LeaseKeepAliveRequest(ids=ids))
                if not self._leases:
                    break
                # Rule 5: a member is given up on when a request waited too long for its
                # answer, whatever it answered meanwhile.
                oldest = sent[0][0] if sent else None
                if oldest is not None and now - oldest > transport.attempt_timeout:
                    raise errors.Unavailable(f"no keep-alive answer from {address} in {transport.attempt_timeout}s")
                wake_at = now + 60.0
                if self._prune():
                    wake_at = min(wake_at, self._due[0][0])
                if self._prune_deadlines():
                    wake_at = min(wake_at, self._deadlines[0][0])
                if self._prune_watch():
                    wake_at = min(wake_at, self._watch[0][0])
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

    async def _write_watching(self, call: Any, reader: asyncio.Task[None], request: lease_pb2.LeaseKeepAliveRequest) -> None:
        """``_write``, losing the leases whose deadlines pass while it waits for the member
        to read (flow control: a member reads renewals only so far ahead, Rule 2)."""
        write = asyncio.ensure_future(self._write(call, reader, request))
        try:
            while True:
                wake_at = min(
                    self._watch[0][0] if self._prune_watch() else float("inf"),
                    self._deadlines[0][0] if self._prune_deadlines() else float("inf"),
                )
                timeout = None if wake_at == float("inf") else max(0.0, wake_at - time.monotonic())
                done, _ = await asyncio.wait({write}, timeout=timeout)
                if done:
                    return write.result()
                self._expire_overdue(time.monotonic())
        finally:
            write.cancel()

    @staticmethod
    async def _write(call: Any, reader: asyncio.Task[None], request: lease_pb2.LeaseKeepAliveRequest) -> None:
        """Write one request. A write to a stream the member has just ended fails with
        grpc's INTERNAL ("Internal error from Core"): the stream's own status (read by
        ``reader``) is the one that says why, and where the leader is."""
        try:
            await call.write(request)
        except grpc.aio.AioRpcError:
            await asyncio.wait({reader}, timeout=1.0)
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                raise reader.exception() from None  # type: ignore[misc]
            raise

    async def _read(
        self,
        call: Any,
        sent: collections.deque[tuple[float, list[int], bool]],
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
            if not sent:
                raise errors.Unavailable(f"{address} answered a keep-alive that was not sent")
            at, ids, batched = sent.popleft()
            self._answered_count += 1
            now = time.monotonic()
            if not batched:
                ttls = [response.ttl]
            elif list(response.ids) == ids and len(response.ttls) == len(ids):
                ttls = list(response.ttls)
            else:
                # A member that ignores ``ids`` (Rule 4): send these again, one by one.
                log.info("%s does not renew several leases per request; renewing one per request", address)
                self._batched = False
                for lease_id in ids:
                    lease = self._leases.get(lease_id)
                    if lease is not None:
                        lease._pending -= 1
                        lease._next_due = at
                        heapq.heappush(self._due, (at, lease_id))
                self._wake.set()
                continue
            if self._catching_up is not None and not self.lagging():
                self._catching_up.set()
                self._catching_up = None
            for lease_id, ttl in zip(ids, ttls):
                lease = self._leases.get(lease_id)
                if lease is None:
                    continue
                lease._pending -= 1
                if ttl <= 0:
                    lease._lose("the lease expired or was revoked (the cluster no longer knows it)")
                    continue
                if lease._deadline <= now:  # the deadline passed unconfirmed (Rule 2)
                    lease._lose("no keep-alive was confirmed within its TTL (the answer came too late)")
                    continue
                self.renewals += 1
                lease._renewed(at, ttl)
                heapq.heappush(self._due, (lease._next_due, lease_id))
                self._queue_deadline(lease)


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
