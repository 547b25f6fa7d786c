"""Client: the synchronous client, a thin facade over :class:`AsyncClient`.

    with Client() as client:                        # $COORD_ENDPOINTS, else 127.0.0.1:7379 or 7001-7003
        client.put("greeting", "hello")
        with client.lock("jobs", ttl=10) as held:
            run_job(held.fencing_token)

Why a facade: one implementation of leader following, retries, exactly-once sessions,
keep-alives, watch resumption and ring views, instead of two that drift apart. The
Client runs its AsyncClient on a private event loop thread (coord_client/_loop.py); each
method blocks until its coroutine finishes. Background work (keep-alives, ring views,
watch streams) runs on that thread too, so it goes on while your thread is busy.

Every method has the AsyncClient method's name, arguments and result types. The objects
returned (Lease, Lock, Campaign, Watch, Observation, RingView, Txn) are synchronous
twins of the async ones; their ``lost`` is a ``threading.Event``. Callbacks you register
(``on_lost``, ``on_change``) run on the client's loop thread: keep them short and do not
call the Client from them.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from . import aio, errors
from ._loop import LoopThread
from ._transport import DEFAULT_TIMEOUT
from .tls import TLSConfig
from .txn import TxnBuilder
from .types import (
    Bytes,
    Candidate,
    DeleteResult,
    EndpointHealth,
    EndpointStatus,
    Event,
    HashMode,
    KeyValue,
    Leader,
    LeaseInfo,
    LockInfo,
    Member,
    PutResult,
    RangeResult,
    RingMember,
    RingState,
    Status,
    TxnResult,
)

__all__ = ["Campaign", "Client", "Lease", "LeaseScope", "Lock", "Observation", "RingView", "Txn", "Watch"]

log = logging.getLogger("coord_client")

T = TypeVar("T")


def _inner_lease(lease: Lease | int | None) -> aio.Lease | int | None:
    return lease._inner if isinstance(lease, Lease) else lease


class Lease:
    """A granted lease (see aio.Lease): ``id``, ``ttl``, ``lost`` (threading.Event),
    ``refresh()``, ``time_to_live()``, ``revoke()``; revoked when used in ``with``."""

    def __init__(self, client: Client, inner: aio.Lease) -> None:
        self._client = client
        self._inner = inner
        self.lost = threading.Event()
        """Set when the lease ends: expired, revoked elsewhere, or revoked by this client."""

    @classmethod
    async def _wrap(cls, client: Client, inner: aio.Lease) -> Lease:
        lease = cls(client, inner)
        inner._mirrors.append(lease.lost.set)
        if inner.lost.is_set():
            lease.lost.set()
        return lease

    def __repr__(self) -> str:
        return repr(self._inner)

    @property
    def id(self) -> int:
        return self._inner.id

    @property
    def ttl(self) -> int:
        return self._inner.ttl

    @property
    def alive(self) -> bool:
        return self._inner.alive

    @property
    def lost_reason(self) -> str:
        return self._inner.lost_reason

    @property
    def remaining(self) -> float:
        return self._inner.remaining

    @property
    def keepalive(self) -> bool:
        return self._inner.keepalive

    def check(self) -> None:
        self._inner.check()

    def on_lost(self, callback: Callable[[Lease], None]) -> None:
        """Call ``callback(lease)`` when the lease is lost (on the client's loop thread)."""

        async def register() -> None:
            self._inner.on_lost(lambda _: callback(self))

        self._client._run(register())

    def refresh(self, timeout: float | None = None) -> int:
        return self._client._run(self._inner.refresh(timeout))

    def time_to_live(self, *, attachments: bool = False, timeout: float | None = None) -> LeaseInfo:
        return self._client._run(self._inner.time_to_live(attachments=attachments, timeout=timeout))

    def revoke(self, timeout: float | None = None) -> None:
        self._client._run(self._inner.revoke(timeout))

    def stop_keepalive(self) -> None:
        async def stop() -> None:
            self._inner.stop_keepalive()

        self._client._run(stop())

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.revoke()


class LeaseScope:
    """What ``Client.lease(ttl)`` returns: ``with`` it for a kept-alive lease revoked on
    exit (leaving the block normally after the lease was lost raises LeaseLost), or call
    ``grant()`` for one you revoke yourself."""

    def __init__(self, client: Client, ttl: int, lease_id: int, timeout: float | None) -> None:
        self._client = client
        self._args = (ttl, lease_id, timeout)
        self._lease: Lease | None = None

    def grant(self) -> Lease:
        ttl, lease_id, timeout = self._args
        return self._client.grant_lease(ttl, lease_id=lease_id, timeout=timeout)

    def __enter__(self) -> Lease:
        self._lease = self.grant()
        return self._lease

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        lease = self._lease
        if lease is None:
            return
        lost, reason = lease.lost.is_set(), lease.lost_reason
        try:
            lease.revoke()
        except errors.CoordError as err:
            log.warning("could not revoke lease %d on exit (it ends with its TTL): %s", lease.id, err)
        if lost and exc_type is None:  # as for locks: a loss during the block is never silent
            raise errors.LeaseLost(f"lease {lease.id} was lost while the block ran: {reason}")


class _Held:
    """What Lock and Campaign share: a threading.Event mirroring the async LossScope."""

    def __init__(self, client: Client, scope: aio.lock.LossScope) -> None:
        self._client = client
        self.lost = threading.Event()
        """Set when the lease ended while held (the block should stop)."""
        scope.listeners.append(lambda reason: self.lost.set())


class Lock(_Held):
    """A lock or semaphore (see aio.Lock): ``with client.lock("jobs") as held:``;
    ``held.fencing_token``, ``held.lost`` (threading.Event), ``held.check()``. Leaving
    the block normally after the lease was lost raises LockLost."""

    def __init__(self, client: Client, inner: aio.Lock) -> None:
        super().__init__(client, inner._scope)
        self._inner = inner

    def __repr__(self) -> str:
        return repr(self._inner)

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def permits(self) -> int:
        return self._inner.permits

    @property
    def fencing_token(self) -> int:
        return self._inner.fencing_token

    @property
    def lease_id(self) -> int:
        lease = self._inner.lease
        return lease.id if lease is not None else 0

    @property
    def is_held(self) -> bool:
        return self._inner.is_held

    @property
    def lost_reason(self) -> str:
        return self._inner.lost_reason

    def check(self) -> None:
        self._inner.check()

    def acquire(self, *, timeout: float | None = None, wait: bool = True) -> bool:
        self.lost.clear()
        return self._client._run(self._inner.acquire(timeout=timeout, wait=wait))

    def release(self, *, timeout: float | None = None) -> None:
        self._client._run(self._inner.release(timeout=timeout))

    def inspect(self, *, timeout: float | None = None) -> LockInfo:
        return self._client._run(self._inner.inspect(timeout=timeout))

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise errors.DeadlineExceeded(f"lock {self.name!r} was not acquired")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        lost = self.lost.is_set()
        token = self.fencing_token
        try:
            self.release()
        except errors.CoordError as err:
            log.warning("could not release lock %r (token %d): %s; it is released when its lease ends", self.name, token, err)
        if lost and exc_type is None:
            raise errors.LockLost(f"lock {self.name!r} (token {token}) was lost while held: {self.lost_reason}")


class Campaign(_Held):
    """A candidacy (see aio.Campaign): ``with client.campaign("sched", "me") as term:``;
    ``term.leader``, ``term.token``, ``term.lost``, ``term.proclaim(value)``."""

    def __init__(self, client: Client, inner: aio.Campaign) -> None:
        super().__init__(client, inner._scope)
        self._inner = inner

    def __repr__(self) -> str:
        return repr(self._inner)

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def value(self) -> bytes:
        return self._inner.value

    @property
    def leader(self) -> Leader | None:
        return self._inner.leader

    @property
    def token(self) -> int:
        return self._inner.token

    @property
    def is_leader(self) -> bool:
        return self._inner.is_leader

    @property
    def lost_reason(self) -> str:
        return self._inner.lost_reason

    def check(self) -> None:
        self._inner.check()

    def campaign(self, *, timeout: float | None = None) -> Leader:
        self.lost.clear()
        return self._client._run(self._inner.campaign(timeout=timeout))

    def proclaim(self, value: Bytes, *, timeout: float | None = None) -> None:
        self._client._run(self._inner.proclaim(value, timeout=timeout))

    def resign(self, *, timeout: float | None = None) -> None:
        self._client._run(self._inner.resign(timeout=timeout))

    def __enter__(self) -> Campaign:
        self.campaign()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        lost = self.lost.is_set()
        try:
            self.resign()
        except errors.CoordError as err:
            log.warning("could not resign %r: %s; the leadership ends with its lease", self.name, err)
        if lost and exc_type is None:
            raise errors.LeadershipLost(f"leadership of {self.name!r} was lost while the block ran: {self.lost_reason}")


class _SyncIterator(Iterator[T]):
    def __init__(self, client: Client, inner: Any) -> None:
        self._client = client
        self._inner = inner

    def __iter__(self) -> _SyncIterator[T]:
        return self

    def __next__(self) -> T:
        try:
            item: T = self._client._run(self._inner.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None
        return item

    def close(self) -> None:
        """Stop; safe to call from another thread (a blocked ``next`` then ends)."""
        if self._client._loop.running:
            self._client._loop.loop.call_soon_threadsafe(lambda: self._client._aclient._spawn(self._inner.aclose(), "close"))

    @property
    def reconnects(self) -> int:
        return int(self._inner.reconnects)


class Watch(_SyncIterator[Event]):
    """An iterator of Events (see aio.Watch): resumes across member failures, raises
    Compacted when history is gone. ``cancel()`` stops it (from any thread)."""

    _inner: aio.Watch

    @property
    def revision(self) -> int:
        return self._inner.revision

    def start(self) -> Watch:
        self._client._run(self._inner.start())
        return self

    def cancel(self) -> None:
        self.close()

    def __enter__(self) -> Watch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class Observation(_SyncIterator["Leader | None"]):
    """An iterator over an election's leadership (see aio.Observation)."""

    def __enter__(self) -> Observation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RingView:
    """A live local copy of a ring (see aio.RingView); ``lookup`` runs in the calling
    thread, without I/O, on the latest version received."""

    def __init__(self, client: Client, inner: aio.RingView) -> None:
        self._client = client
        self._inner = inner

    def __repr__(self) -> str:
        return repr(self._inner)

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def version(self) -> int:
        return self._inner.version

    @property
    def state(self) -> RingState:
        return self._inner.state

    @property
    def members(self) -> dict[str, RingMember]:
        return self._inner.members

    def lookup(self, key: bytes | str, n: int = 1) -> list[str]:
        return self._inner.lookup(key, n)

    def lookup_members(self, key: bytes | str, n: int = 1) -> list[RingMember]:
        return self._inner.lookup_members(key, n)

    def on_change(self, callback: Callable[[RingState], None]) -> None:
        """``callback(state)`` after every new version, on the client's loop thread."""

        async def register() -> None:
            self._inner.on_change(callback)

        self._client._run(register())

    def wait_for_version(self, version: int, timeout: float | None = None) -> RingState:
        return self._client._run(self._inner.wait_for_version(version, timeout))

    def start(self) -> RingView:
        self._client._run(self._inner.start())
        return self

    def close(self) -> None:
        if self._client._loop.running:
            self._client._run(self._inner.close())

    def __enter__(self) -> RingView:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class Txn(TxnBuilder):
    """A transaction being built; ``commit()`` runs it (see coord_client.txn)."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self._client = client

    def commit(self, *, timeout: float | None = None) -> TxnResult:
        return self._client._run(self._client._aclient._commit_txn(self.to_request(), timeout))


class Client:
    """The synchronous client; see the module docstring and AsyncClient for every
    method. ``endpoints``, ``timeout``, ``token`` and ``tls`` as for AsyncClient."""

    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        tls: TLSConfig | None = None,
    ) -> None:
        self._loop = LoopThread()

        async def make() -> aio.AsyncClient:
            return aio.AsyncClient(endpoints, timeout=timeout, token=token, tls=tls)

        try:
            self._aclient = self._loop.run(make())
        except BaseException:
            self._loop.stop()
            raise
        self._finalizer = weakref.finalize(self, self._loop.stop)

    def __repr__(self) -> str:
        return f"Client({','.join(self.endpoints)})"

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run(coro)

    @property
    def endpoints(self) -> list[str]:
        return self._aclient.endpoints

    def close(self) -> None:
        """Stop keep-alives, close connections and the loop thread."""
        if self._loop.running:
            try:
                self._run(self._aclient.close())
            finally:
                self._loop.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- KV ----------------------------------------------------------------------------

    def put(
        self, key: Bytes, value: Bytes, *, lease: Lease | int | None = None, prev_kv: bool = False,
        timeout: float | None = None,
    ) -> PutResult:
        return self._run(self._aclient.put(key, value, lease=_inner_lease(lease), prev_kv=prev_kv, timeout=timeout))

    def get(
        self, key: Bytes, *, revision: int = 0, serializable: bool = False, timeout: float | None = None
    ) -> KeyValue | None:
        return self._run(self._aclient.get(key, revision=revision, serializable=serializable, timeout=timeout))

    def get_prefix(
        self, prefix: Bytes, *, revision: int = 0, limit: int = 0, keys_only: bool = False,
        serializable: bool = False, timeout: float | None = None,
    ) -> list[KeyValue]:
        return self._run(self._aclient.get_prefix(
            prefix, revision=revision, limit=limit, keys_only=keys_only, serializable=serializable, timeout=timeout))

    def range(
        self, key: Bytes, range_end: Bytes = b"", *, revision: int = 0, limit: int = 0, keys_only: bool = False,
        count_only: bool = False, serializable: bool = False, sort_order: str | None = None,
        sort_target: str = "key", timeout: float | None = None,
    ) -> RangeResult:
        return self._run(self._aclient.range(
            key, range_end, revision=revision, limit=limit, keys_only=keys_only, count_only=count_only,
            serializable=serializable, sort_order=sort_order, sort_target=sort_target, timeout=timeout))

    def delete(
        self, key: Bytes, *, prefix: bool = False, range_end: Bytes = b"", prev_kv: bool = False,
        timeout: float | None = None,
    ) -> DeleteResult:
        return self._run(self._aclient.delete(key, prefix=prefix, range_end=range_end, prev_kv=prev_kv, timeout=timeout))

    def delete_prefix(self, prefix: Bytes, *, timeout: float | None = None) -> DeleteResult:
        return self._run(self._aclient.delete_prefix(prefix, timeout=timeout))

    def txn(self) -> Txn:
        return Txn(self)

    def compact(self, revision: int, *, physical: bool = False, timeout: float | None = None) -> None:
        self._run(self._aclient.compact(revision, physical=physical, timeout=timeout))

    def watch(
        self, key: Bytes, *, prefix: bool = False, range_end: Bytes = b"", start_revision: int = 0,
        prev_kv: bool = False, no_put: bool = False, no_delete: bool = False, progress_notify: bool = False,
        timeout: float | None = None, reconnect_timeout: float | None = None,
    ) -> Watch:
        inner = self._aclient.watch(
            key, prefix=prefix, range_end=range_end, start_revision=start_revision, prev_kv=prev_kv,
            no_put=no_put, no_delete=no_delete, progress_notify=progress_notify, timeout=timeout,
            reconnect_timeout=reconnect_timeout,
        )
        return Watch(self, inner)

    def watch_prefix(self, prefix: Bytes, **kwargs: Any) -> Watch:
        return self.watch(prefix, prefix=True, **kwargs)

    # -- leases ------------------------------------------------------------------------

    def grant_lease(
        self, ttl: int, *, lease_id: int = 0, keepalive: bool = True, timeout: float | None = None
    ) -> Lease:
        async def grant() -> Lease:
            inner = await self._aclient.grant_lease(ttl, lease_id=lease_id, keepalive=keepalive, timeout=timeout)
            return await Lease._wrap(self, inner)

        return self._run(grant())

    def lease(self, ttl: int = 10, *, lease_id: int = 0, timeout: float | None = None) -> LeaseScope:
        return LeaseScope(self, ttl, lease_id, timeout)

    def revoke_lease(self, lease: Lease | int, *, timeout: float | None = None) -> None:
        if isinstance(lease, Lease):
            lease.revoke(timeout)
            return
        self._run(self._aclient.revoke_lease(lease, timeout=timeout))

    def lease_info(self, lease: Lease | int, *, attachments: bool = False, timeout: float | None = None) -> LeaseInfo:
        return self._run(self._aclient.lease_info(_inner_lease(lease) or 0, attachments=attachments, timeout=timeout))

    def leases(self, *, timeout: float | None = None) -> list[LeaseInfo]:
        return self._run(self._aclient.leases(timeout=timeout))

    def keepalive_once(self, lease: Lease | int, *, timeout: float | None = None) -> int:
        return self._run(self._aclient.keepalive_once(_inner_lease(lease) or 0, timeout=timeout))

    # -- locks -------------------------------------------------------------------------

    def lock(
        self, name: str, *, ttl: int = 10, lease: Lease | None = None, owner: str | None = None,
        timeout: float | None = None, cancel_on_loss: bool = False,
    ) -> Lock:
        """As AsyncClient.lock. ``cancel_on_loss=True`` is refused (InvalidArgument): a
        thread cannot be cancelled; watch ``held.lost`` or call ``held.check()`` instead."""
        _no_cancel_on_loss(cancel_on_loss)
        inner = self._aclient.lock(
            name, ttl=ttl, lease=lease._inner if lease else None, owner=owner, timeout=timeout)
        return Lock(self, inner)

    def semaphore(
        self, name: str, permits: int, *, ttl: int = 10, lease: Lease | None = None, owner: str | None = None,
        timeout: float | None = None, cancel_on_loss: bool = False,
    ) -> Lock:
        """As AsyncClient.semaphore; ``cancel_on_loss=True`` is refused as for ``lock``."""
        _no_cancel_on_loss(cancel_on_loss)
        inner = self._aclient.semaphore(
            name, permits, ttl=ttl, lease=lease._inner if lease else None, owner=owner, timeout=timeout)
        return Lock(self, inner)

    def lock_info(self, name: str, *, serializable: bool = False, timeout: float | None = None) -> LockInfo:
        return self._run(self._aclient.lock_info(name, serializable=serializable, timeout=timeout))

    # -- elections ---------------------------------------------------------------------

    def campaign(
        self, name: str, value: Bytes, *, ttl: int = 10, lease: Lease | None = None, timeout: float | None = None,
        cancel_on_loss: bool = False,
    ) -> Campaign:
        """As AsyncClient.campaign; ``cancel_on_loss=True`` is refused as for ``lock``
        (watch ``term.lost``)."""
        _no_cancel_on_loss(cancel_on_loss)
        inner = self._aclient.campaign(name, value, ttl=ttl, lease=lease._inner if lease else None, timeout=timeout)
        return Campaign(self, inner)

    def leader(self, name: str, *, serializable: bool = False, timeout: float | None = None) -> Leader | None:
        return self._run(self._aclient.leader(name, serializable=serializable, timeout=timeout))

    def candidates(self, name: str, *, serializable: bool = False, timeout: float | None = None) -> list[Candidate]:
        return self._run(self._aclient.candidates(name, serializable=serializable, timeout=timeout))

    def observe(self, name: str, *, timeout: float | None = None) -> Observation:
        return Observation(self, self._aclient.observe(name, timeout=timeout))

    # -- rings -------------------------------------------------------------------------

    def ring_join(
        self, ring: str, member_id: str, address: str = "", *, weight: int = 1, lease: Lease | int | None = None,
        hash_mode: HashMode | None = None, vnodes: int = 0, timeout: float | None = None,
    ) -> int:
        return self._run(self._aclient.ring_join(
            ring, member_id, address, weight=weight, lease=_inner_lease(lease), hash_mode=hash_mode,
            vnodes=vnodes, timeout=timeout))

    def ring_leave(self, ring: str, member_id: str, *, timeout: float | None = None) -> int:
        return self._run(self._aclient.ring_leave(ring, member_id, timeout=timeout))

    def ring_lookup(
        self, ring: str, key: Bytes, n: int = 1, *, serializable: bool = False, timeout: float | None = None
    ) -> list[RingMember]:
        return self._run(self._aclient.ring_lookup(ring, key, n, serializable=serializable, timeout=timeout))

    def ring_get(self, ring: str, *, serializable: bool = False, timeout: float | None = None) -> RingState:
        return self._run(self._aclient.ring_get(ring, serializable=serializable, timeout=timeout))

    def ring_view(self, ring: str, *, timeout: float | None = None) -> RingView:
        """A live local copy of a ring: ``with client.ring_view("cache") as view:``
        (or ``.start()``)."""
        return RingView(self, self._aclient.ring_view(ring, timeout=timeout))

    # -- cluster -----------------------------------------------------------------------

    def members(self, *, linearizable: bool = False, timeout: float | None = None) -> list[Member]:
        return self._run(self._aclient.members(linearizable=linearizable, timeout=timeout))

    def member_add(
        self, peer_address: str, *, client_address: str = "", name: str = "", timeout: float | None = None
    ) -> Member:
        return self._run(self._aclient.member_add(peer_address, client_address=client_address, name=name, timeout=timeout))

    def member_promote(self, member_id: int, *, timeout: float | None = None) -> list[Member]:
        return self._run(self._aclient.member_promote(member_id, timeout=timeout))

    def member_remove(self, member_id: int, *, timeout: float | None = None) -> list[Member]:
        return self._run(self._aclient.member_remove(member_id, timeout=timeout))

    def transfer_leadership(self, target_id: int = 0, *, timeout: float | None = None) -> int:
        return self._run(self._aclient.transfer_leadership(target_id, timeout=timeout))

    def status(self, endpoint: str | None = None, *, timeout: float | None = None) -> Status:
        return self._run(self._aclient.status(endpoint, timeout=timeout))

    def cluster_status(self, *, timeout: float | None = None) -> list[EndpointStatus]:
        return self._run(self._aclient.cluster_status(timeout=timeout))

    def health(self, endpoints: Sequence[str] | None = None, *, timeout: float | None = None) -> list[EndpointHealth]:
        return self._run(self._aclient.health(endpoints, timeout=timeout))


def _no_cancel_on_loss(cancel_on_loss: bool) -> None:
    """The sync client's answer to ``cancel_on_loss=True``: a clear refusal, not silence."""
    if cancel_on_loss:
        raise errors.InvalidArgument(
            "cancel_on_loss needs asyncio (AsyncClient): a thread cannot be cancelled; "
            "watch .lost or call .check() in the block instead")
