"""AsyncClient: the asyncio client of coord, one object for every service.

    async with AsyncClient() as client:          # $COORD_ENDPOINTS, else the local defaults
        await client.put("greeting", "hello")
        kv = await client.get("greeting")

Every method takes ``timeout`` (seconds for the whole call, retries included; None means
the client's default) and raises :mod:`coord_client.errors` exceptions. Calls find the
leader, follow ``coord-leader`` hints, fail over and retry on their own, and a retried
write is applied at most once (see ``coord_client._transport``). Methods that wait by
design (locks, campaigns) wait without limit unless given a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import Any

import grpc
import grpc.aio

from coord.v1 import cluster_pb2, election_pb2, kv_pb2, lease_pb2, lock_pb2, ring_pb2

from .. import errors
from .._transport import DEFAULT_TIMEOUT, Transport
from ..auth import AsyncAuth
from ..tls import TLSConfig
from ..txn import TxnBuilder
from ..types import (
    Bytes,
    Candidate,
    DeleteResult,
    EndpointHealth,
    EndpointStatus,
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
    _delete,
    _leader,
    _lease_ttl,
    _lock_info,
    _member,
    _put,
    _range,
    _ring_member,
    _ring_state,
    _status,
    _txn,
    key_range,
    to_bytes,
)
from .election import Campaign, Observation
from .lease import KeepAliver, Lease, LeaseScope
from .lock import Lock
from .ring import RingView
from .watch import Watch

__all__ = ["AsyncClient", "AsyncTxn"]

log = logging.getLogger("coord_client")


_SORT_ORDER = {None: 0, "ascend": kv_pb2.SORT_ORDER_ASCEND, "descend": kv_pb2.SORT_ORDER_DESCEND}
_SORT_TARGET = {
    "key": kv_pb2.SORT_TARGET_KEY,
    "version": kv_pb2.SORT_TARGET_VERSION,
    "create": kv_pb2.SORT_TARGET_CREATE_REVISION,
    "mod": kv_pb2.SORT_TARGET_MOD_REVISION,
    "value": kv_pb2.SORT_TARGET_VALUE,
}

def _lease_id(lease: Lease | int | None) -> int:
    if lease is None:
        return 0
    if isinstance(lease, int):
        return lease
    return lease.id


class AsyncTxn(TxnBuilder):
    """A transaction being built; ``await txn.commit()`` runs it (see coord_client.txn)."""

    def __init__(self, client: AsyncClient) -> None:
        super().__init__()
        self._client = client

    async def commit(self, *, timeout: float | None = None) -> TxnResult:
        return await self._client._commit_txn(self.to_request(), timeout)


class AsyncClient:
    """The asyncio client; see the module docstring.

    ``endpoints``: a list of "host:port", or one comma-separated string; default
    ``$COORD_ENDPOINTS``, else a local cluster: a bare ``coord-server`` (127.0.0.1:7379) or
    `make cluster`'s 127.0.0.1:7001-7003, whichever answers. ``timeout``: the
    default for every call, in seconds. ``token``: the bearer token sent with every call
    and stream when the cluster has authentication on; default ``$COORD_TOKEN``. ``tls``: a
    TLSConfig (CA, client certificate and key) for a cluster serving TLS; None: plain
    connections. Use it in ``async with``, or call ``close()``."""

    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        tls: TLSConfig | None = None,
    ) -> None:
        self._transport = Transport(endpoints, timeout=timeout, token=token, tls=tls)
        self._keepaliver = KeepAliver(self)
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def auth(self) -> AsyncAuth:
        """Users, roles and permissions (coord_client/auth.py)."""
        return AsyncAuth(self._transport)

    @property
    def endpoints(self) -> list[str]:
        return list(self._transport.endpoints)

    def __repr__(self) -> str:
        return f"AsyncClient({','.join(self._transport.endpoints)})"

    async def close(self) -> None:
        """Stop keep-alives and close the connections. Leases are not revoked: they end
        with their TTL (revoke them first, or use the context managers, to end them now)."""
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        await self._keepaliver.close()
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        """Run ``coro`` in the background (clean-ups that must survive the caller's
        cancellation); failures are logged."""

        def done(task: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.warning("could not %s: %s", what, task.exception())

        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(done)

    # ================================================================== KV

    async def put(
        self,
        key: Bytes,
        value: Bytes,
        *,
        lease: Lease | int | None = None,
        prev_kv: bool = False,
        timeout: float | None = None,
    ) -> PutResult:
        """Set ``key`` to ``value`` (attached to ``lease`` if given)."""
        request = kv_pb2.PutRequest(key=to_bytes(key), value=to_bytes(value), lease=_lease_id(lease), prev_kv=prev_kv)
        response = await self._transport.call(lambda s: s.pipelined("put"), request, timeout=timeout, mutating=True, to_leader=True, refine=errors.LEASE_REFINE)
        return _put(response)

    async def get(
        self,
        key: Bytes,
        *,
        revision: int = 0,
        serializable: bool = False,
        timeout: float | None = None,
    ) -> KeyValue | None:
        """The key's pair (at ``revision`` if given), or None when it does not exist."""
        result = await self.range(key, revision=revision, serializable=serializable, timeout=timeout)
        return result.kvs[0] if result.kvs else None

    async def get_prefix(
        self,
        prefix: Bytes,
        *,
        revision: int = 0,
        limit: int = 0,
        keys_only: bool = False,
        serializable: bool = False,
        timeout: float | None = None,
    ) -> list[KeyValue]:
        """Every pair whose key starts with ``prefix``, in key order."""
        key, end = key_range(prefix, True)
        result = await self.range(
            key, end, revision=revision, limit=limit, keys_only=keys_only,
            serializable=serializable, timeout=timeout,
        )
        return list(result.kvs)

    async def range(
        self,
        key: Bytes,
        range_end: Bytes = b"",
        *,
        revision: int = 0,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        serializable: bool = False,
        sort_order: str | None = None,
        sort_target: str = "key",
        timeout: float | None = None,
    ) -> RangeResult:
        """The keys in [key, range_end) (only ``key`` when range_end is empty), with the
        revision read and the count. ``sort_order`` is "ascend" or "descend", by
        ``sort_target`` ("key", "version", "create", "mod", "value")."""
        if sort_order not in _SORT_ORDER or sort_target not in _SORT_TARGET:
            raise errors.InvalidArgument(f"bad sort: order {sort_order!r}, target {sort_target!r}")
        request = kv_pb2.RangeRequest(
            key=to_bytes(key), range_end=to_bytes(range_end), revision=revision, limit=limit,
            keys_only=keys_only, count_only=count_only, serializable=serializable,
            sort_order=_SORT_ORDER[sort_order],  # type: ignore[arg-type]
            sort_target=_SORT_TARGET[sort_target],
        )
        return _range(await self._transport.call(lambda s: s.pipelined("range"), request, timeout=timeout))

    async def delete(
        self,
        key: Bytes,
        *,
        prefix: bool = False,
        range_end: Bytes = b"",
        prev_kv: bool = False,
        timeout: float | None = None,
    ) -> DeleteResult:
        """Delete ``key`` (every key under it with ``prefix``, or [key, range_end))."""
        k, end = key_range(key, prefix, range_end)
        request = kv_pb2.DeleteRangeRequest(key=k, range_end=end, prev_kv=prev_kv)
        return _delete(await self._transport.call(lambda s: s.pipelined("delete_range"), request, timeout=timeout, mutating=True, to_leader=True))

    async def delete_prefix(self, prefix: Bytes, *, timeout: float | None = None) -> DeleteResult:
        return await self.delete(prefix, prefix=True, timeout=timeout)

    def txn(self) -> AsyncTxn:
        """A transaction builder: ``await client.txn().when(...).then(...).otherwise(...)
        .commit()`` (see coord_client.txn)."""
        return AsyncTxn(self)

    async def _commit_txn(self, request: kv_pb2.TxnRequest, timeout: float | None) -> TxnResult:
        response = await self._transport.call(lambda s: s.pipelined("txn"), request, timeout=timeout, mutating=True, to_leader=True, refine=errors.LEASE_REFINE)
        return _txn(response)

    async def compact(self, revision: int, *, physical: bool = False, timeout: float | None = None) -> None:
        """Discard the history before ``revision``."""
        request = kv_pb2.CompactRequest(revision=revision, physical=physical)
        await self._transport.call(lambda s: s.kv.Compact, request, timeout=timeout, mutating=True)

    def watch(
        self,
        key: Bytes,
        *,
        prefix: bool = False,
        range_end: Bytes = b"",
        start_revision: int = 0,
        prev_kv: bool = False,
        no_put: bool = False,
        no_delete: bool = False,
        progress_notify: bool = False,
        timeout: float | None = None,
        reconnect_timeout: float | None = None,
    ) -> Watch:
        """Watch ``key`` (every key under it with ``prefix``) from ``start_revision`` (0:
        changes after now): an async iterator of Events that resumes across member
        failures and raises Compacted when history is gone (see aio/watch.py)."""
        k, end = key_range(key, prefix, range_end)
        return Watch(
            self._transport, k, end, start_revision=start_revision, prev_kv=prev_kv, no_put=no_put,
            no_delete=no_delete, progress_notify=progress_notify, timeout=timeout,
            reconnect_timeout=reconnect_timeout,
        )

    def watch_prefix(self, prefix: Bytes, **kwargs: Any) -> Watch:
        return self.watch(prefix, prefix=True, **kwargs)

    # ================================================================== leases

    async def grant_lease(
        self, ttl: int, *, lease_id: int = 0, keepalive: bool = True, timeout: float | None = None
    ) -> Lease:
        """A new lease of ``ttl`` seconds (raised to the cluster's minimum), kept alive in
        the background unless ``keepalive`` is False."""
        if keepalive:
            await self._keepaliver.caught_up()  # renewals before grants (lease.py Rule 6)
        sent = time.monotonic()
        request = lease_pb2.LeaseGrantRequest(ttl=ttl, id=lease_id)
        # Through the member's Pipeline stream, to the leader: many grants in flight at
        # once travel in a few messages and one group commit (a unary call each cost the
        # client and the leader ~0.5 ms of CPU; 100,000 leases took minutes to grant).
        response = await self._transport.call(
            lambda s: s.pipelined("lease_grant"), request, timeout=timeout, mutating=True, to_leader=True
        )
        lease = Lease(self, response.id, response.ttl, sent)
        if keepalive:
            self._keepaliver.track(lease)
        return lease

    def lease(self, ttl: int = 10, *, lease_id: int = 0, timeout: float | None = None) -> LeaseScope:
        """``async with client.lease(ttl=10) as lease:``: a lease kept alive during the
        block and revoked after it; ``lease.lost`` tells if it ended meanwhile."""
        return LeaseScope(self, ttl, lease_id, timeout)

    async def revoke_lease(self, lease: Lease | int, *, timeout: float | None = None) -> None:
        """End a lease now (LeaseNotFound if it does not exist). A Lease this client keeps
        alive stops being renewed and is marked lost."""
        await self._revoke_lease(lease, timeout)

    async def _revoke_lease(self, lease: Lease | int, timeout: float | None, to_leader: bool = False) -> None:
        """``revoke_lease``; ``to_leader`` for a lock's or a campaign's own lease, whose
        revocation is the release or the resignation (_transport.py Rule 5)."""
        lease_id = _lease_id(lease)
        tracked = lease if isinstance(lease, Lease) else self._keepaliver.tracked(lease_id)
        self._keepaliver.untrack(lease_id)
        await self._transport.call(
            lambda s: s.lease.Revoke, lease_pb2.LeaseRevokeRequest(id=lease_id), timeout=timeout,
            mutating=True, to_leader=to_leader, refine=errors.LEASE_REFINE,
        )
        if tracked is not None:
            tracked._lose("revoked by this client", unexpected=False)

    async def lease_info(
        self, lease: Lease | int, *, attachments: bool = False, timeout: float | None = None
    ) -> LeaseInfo:
        """Remaining and granted TTL of a lease and, with ``attachments``, what is bound
        to it (LeaseNotFound if it does not exist)."""
        request = lease_pb2.LeaseTimeToLiveRequest(id=_lease_id(lease), attachments=attachments)
        response = await self._transport.call(lambda s: s.lease.TimeToLive, request, timeout=timeout, refine=errors.LEASE_REFINE)
        return _lease_ttl(response)

    async def leases(self, *, timeout: float | None = None) -> list[LeaseInfo]:
        """Every live lease, by ascending ID (``ttl`` is None: use lease_info)."""
        response = await self._transport.call(lambda s: s.lease.List, lease_pb2.LeaseListRequest(), timeout=timeout)
        return [LeaseInfo(item.id, item.granted_ttl) for item in response.leases]

    async def keepalive_once(self, lease: Lease | int, *, timeout: float | None = None) -> int:
        """Renew a lease once and return its new TTL (0 when it does not exist)."""
        return await self._keepaliver.renew_once(_lease_id(lease), timeout)

    # ================================================================== locks

    def lock(
        self,
        name: str,
        *,
        ttl: int = 10,
        lease: Lease | None = None,
        owner: str | None = None,
        timeout: float | None = None,
        cancel_on_loss: bool = False,
    ) -> Lock:
        """A mutex: ``async with client.lock("jobs", ttl=10) as held:`` waits for it
        (up to ``timeout``, default no limit), holds it through a kept-alive lease,
        exposes ``held.fencing_token`` and ``held.lost``, and releases it on exit."""
        return Lock(self, name, ttl=ttl, lease=lease, owner=owner, timeout=timeout, cancel_on_loss=cancel_on_loss)

    def semaphore(
        self,
        name: str,
        permits: int,
        *,
        ttl: int = 10,
        lease: Lease | None = None,
        owner: str | None = None,
        timeout: float | None = None,
        cancel_on_loss: bool = False,
    ) -> Lock:
        """A counting semaphore: at most ``permits`` holders at once; otherwise as lock()."""
        return Lock(
            self, name, ttl=ttl, permits=permits, lease=lease, owner=owner, timeout=timeout,
            cancel_on_loss=cancel_on_loss,
        )

    async def lock_info(self, name: str, *, serializable: bool = False, timeout: float | None = None) -> LockInfo:
        """A lock's permits, holders (tokens, leases, owners) and waiters."""
        request = lock_pb2.LockInspectRequest(name=name, serializable=serializable)
        return _lock_info(name, await self._transport.call(lambda s: s.lock.Inspect, request, timeout=timeout))

    # ================================================================== elections

    def campaign(
        self,
        name: str,
        value: Bytes,
        *,
        ttl: int = 10,
        lease: Lease | None = None,
        timeout: float | None = None,
        cancel_on_loss: bool = False,
    ) -> Campaign:
        """``async with client.campaign("scheduler", "host-a") as term:`` waits until this
        process leads (up to ``timeout``, default no limit), keeps the leadership's lease
        alive, and resigns on exit; ``term.leader.token`` fences, ``term.lost`` tells."""
        return Campaign(self, name, value, ttl=ttl, lease=lease, timeout=timeout, cancel_on_loss=cancel_on_loss)

    async def leader(self, name: str, *, serializable: bool = False, timeout: float | None = None) -> Leader | None:
        """The current leader of an election, or None."""
        request = election_pb2.ElectionLeaderRequest(name=name, serializable=serializable)
        response = await self._transport.call(lambda s: s.election.Leader, request, timeout=timeout)
        return _leader(response.leader, response.value) if response.HasField("leader") else None

    async def candidates(
        self, name: str, *, serializable: bool = False, timeout: float | None = None
    ) -> list[Candidate]:
        """Every campaigner of an election in queue order, the leader first (empty when
        nobody campaigns)."""
        request = election_pb2.ElectionLeaderRequest(name=name, serializable=serializable, candidates=True)
        response = await self._transport.call(lambda s: s.election.Leader, request, timeout=timeout)
        return [Candidate(c.lease, c.value, c.revision, c.token) for c in response.candidates]

    def observe(self, name: str, *, timeout: float | None = None) -> Observation:
        """An async iterator over the leadership of an election: the current state, then
        every change (``None`` while nobody leads)."""
        return Observation(self, name, timeout=timeout)

    # ================================================================== rings

    async def ring_join(
        self,
        ring: str,
        member_id: str,
        address: str = "",
        *,
        weight: int = 1,
        lease: Lease | int | None = None,
        hash_mode: HashMode | None = None,
        vnodes: int = 0,
        timeout: float | None = None,
    ) -> int:
        """Add (or update) a member; with ``lease`` it leaves when the lease ends.
        ``hash_mode``/``vnodes`` fix the ring's settings when this join creates it.
        Returns the ring's new version."""
        request = ring_pb2.RingJoinRequest(
            ring=ring, member_id=member_id, address=address, weight=weight, lease=_lease_id(lease)
        )
        if hash_mode is not None or vnodes:
            mode = ring_pb2.HashMode.ValueType(int(hash_mode or HashMode.FAST))
            request.settings.CopyFrom(ring_pb2.RingSettings(hash_mode=mode, vnodes=vnodes))
        response = await self._transport.call(lambda s: s.ring.Join, request, timeout=timeout, mutating=True, refine=errors.LEASE_REFINE)
        return response.version

    async def ring_leave(self, ring: str, member_id: str, *, timeout: float | None = None) -> int:
        """Remove a member; returns the ring's new version."""
        request = ring_pb2.RingLeaveRequest(ring=ring, member_id=member_id)
        response = await self._transport.call(lambda s: s.ring.Leave, request, timeout=timeout, mutating=True)
        return response.version

    async def ring_lookup(
        self, ring: str, key: Bytes, n: int = 1, *, serializable: bool = False, timeout: float | None = None
    ) -> list[RingMember]:
        """The server's placement of ``key``: ``n`` distinct members in preference order."""
        request = ring_pb2.RingLookupRequest(ring=ring, key=to_bytes(key), n=n, serializable=serializable)
        response = await self._transport.call(lambda s: s.ring.Lookup, request, timeout=timeout)
        return [_ring_member(m) for m in response.members]

    async def ring_get(self, ring: str, *, serializable: bool = False, timeout: float | None = None) -> RingState:
        """A ring's version, settings and members (NotFound if it has no members)."""
        request = ring_pb2.RingGetRequest(ring=ring, serializable=serializable)
        response = await self._transport.call(lambda s: s.ring.Get, request, timeout=timeout)
        return _ring_state(ring, response.version, response.settings, response.members)

    def ring_view(self, ring: str, *, timeout: float | None = None) -> RingView:
        """A live local copy of a ring for lookups without round trips: ``async with
        client.ring_view("cache") as view: view.lookup(key)``."""
        return RingView(self._transport, ring, timeout=timeout)

    # ================================================================== cluster

    async def members(self, *, linearizable: bool = False, timeout: float | None = None) -> list[Member]:
        """Every member of the cluster, voters and learners."""
        request = cluster_pb2.ClusterMemberListRequest(linearizable=linearizable)
        response = await self._transport.call(lambda s: s.cluster.MemberList, request, timeout=timeout)
        return [_member(m) for m in response.members]

    async def member_add(
        self, peer_address: str, *, client_address: str = "", name: str = "", timeout: float | None = None
    ) -> Member:
        """Add a learner; start its server with the returned ID, then promote it."""
        request = cluster_pb2.ClusterMemberAddRequest(
            name=name, peer_address=peer_address, client_address=client_address or peer_address
        )
        response = await self._transport.call(lambda s: s.cluster.MemberAdd, request, timeout=timeout, mutating=True)
        return _member(response.member)

    async def member_promote(self, member_id: int, *, timeout: float | None = None) -> list[Member]:
        """Make a caught-up learner a voter; returns the members after the change."""
        request = cluster_pb2.ClusterMemberPromoteRequest(id=member_id)
        response = await self._transport.call(lambda s: s.cluster.MemberPromote, request, timeout=timeout, mutating=True)
        return [_member(m) for m in response.members]

    async def member_remove(self, member_id: int, *, timeout: float | None = None) -> list[Member]:
        """Remove a member; returns the members after the change."""
        request = cluster_pb2.ClusterMemberRemoveRequest(id=member_id)
        response = await self._transport.call(lambda s: s.cluster.MemberRemove, request, timeout=timeout, mutating=True)
        return [_member(m) for m in response.members]

    async def transfer_leadership(self, target_id: int = 0, *, timeout: float | None = None) -> int:
        """Hand leadership to ``target_id`` (0: the most up-to-date voter); returns the
        new leader's ID."""
        request = cluster_pb2.ClusterTransferLeadershipRequest(target_id=target_id)
        response = await self._transport.call(lambda s: s.cluster.TransferLeadership, request, timeout=timeout)
        return response.leader

    async def status(self, endpoint: str | None = None, *, timeout: float | None = None) -> Status:
        """The Raft state of the member at ``endpoint`` (default: whichever member
        answers first, preferring the leader)."""
        request = cluster_pb2.ClusterStatusRequest()
        if endpoint is not None:
            response = await self._transport.call_at(endpoint, lambda s: s.cluster.Status, request, timeout=timeout)
            return _status(endpoint, response)
        response = await self._transport.call(lambda s: s.cluster.Status, request, timeout=timeout)
        return _status(self._transport.pick(), response)  # the member that answered

    async def cluster_status(self, *, timeout: float | None = None) -> list[EndpointStatus]:
        """The status of every member (from the member list) and of every configured
        endpoint that is not a member, asked concurrently; a member that does not answer
        is listed with the error."""
        per_call = timeout if timeout is not None else min(self._transport.timeout, 3.0)
        try:
            members = await self.members(timeout=timeout)
        except errors.CoordError:
            members = []
        targets: list[tuple[str, str]] = [(m.client_address, m.name) for m in members]
        for e in self._unlisted_endpoints(members):
            if e not in {a for a, _ in targets}:
                targets.append((e, ""))

        async def one(address: str, name: str) -> EndpointStatus:
            try:
                return EndpointStatus(address, name, await self.status(address, timeout=per_call))
            except errors.CoordError as err:
                return EndpointStatus(address, name, None, f"{type(err).__name__}: {err}")

        return list(await asyncio.gather(*(one(a, n) for a, n in targets)))

    async def health(self, endpoints: Sequence[str] | None = None, *, timeout: float | None = None) -> list[EndpointHealth]:
        """Check each endpoint (default: the configured ones) through grpc.health.v1
        alone, which needs no token: healthy when it answers SERVING, which a member does
        while it is a member of its cluster and knows a leader."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        per_call = timeout if timeout is not None else min(self._transport.timeout, 3.0)

        async def one(address: str) -> EndpointHealth:
            start = time.monotonic()
            try:
                stub = health_pb2_grpc.HealthStub(self._transport.stubs(address).channel)
                # types-grpcio-health-checking declares HealthStub without its methods.
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=per_call)  # type: ignore[attr-defined]
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    return EndpointHealth(address, False, time.monotonic() - start, "not serving (no leader, or not a member)")
                return EndpointHealth(address, True, time.monotonic() - start)
            except grpc.aio.AioRpcError as err:
                return EndpointHealth(address, False, time.monotonic() - start, f"{err.code().name}: {err.details()}")
            except errors.CoordError as err:
                return EndpointHealth(address, False, time.monotonic() - start, f"{type(err).__name__}: {err}")

        if not endpoints:
            endpoints = await self._endpoints_to_check()
        return list(await asyncio.gather(*(one(e) for e in endpoints)))

    def _unlisted_endpoints(self, members: Sequence[Member]) -> list[str]:
        """Configured endpoints to report on besides the members: all of them, unless they
        are the built-in defaults (candidates for a local cluster, not all expected to run)
        and a member list was found."""
        return [] if self._transport.defaulted and members else list(self._transport.endpoints)

    async def _endpoints_to_check(self) -> list[str]:
        """The configured endpoints; with the built-in defaults, the members' addresses."""
        if self._transport.defaulted:
            with contextlib.suppress(errors.CoordError):
                members = await self.members()
                if members:
                    return [m.client_address for m in members]
        return list(self._transport.endpoints)
