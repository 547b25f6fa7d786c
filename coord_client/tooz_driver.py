"""A tooz backend on coord: ``tooz.coordination.get_coordinator("coord://host:port,...", member)``.

Registered under tooz's ``tooz.backends`` entry point as ``coord`` (pyproject.toml), so a
service that picks its tooz backend by URL switches by changing the URL. URL options:
``timeout`` (seconds, default 10: the session's and each lock's lease TTL),
``namespace`` (key prefix, default ``tooz``), ``token`` (bearer token),
``ca_file``/``cert_file``/``key_file``/``server_name`` (TLS), ``connect_timeout``
(seconds ``start()`` tries to reach the cluster, default 5).

How tooz maps onto coord (each on coord's own service, nothing emulated client-side):

Rule 1: a coordinator is a session: one lease of ``timeout`` seconds granted by
        ``start()``, refreshed by ``heartbeat()`` (tooz's contract: call it, or start with
        ``start_heart=True``), revoked by ``stop()``. Everything ephemeral hangs on it. A
        heartbeat that finds the lease expired raises ToozConnectionError once and starts
        a new session (the groups and elections of the old one are gone: rejoin).
Rule 2: groups are keys. ``<ns>/group/<g>`` marks a group (persistent, as in
        ZooKeeper); ``<ns>/member/<g>/<m>`` is a member, attached to the session lease and
        holding its capabilities, so a member whose session expires vanishes. Every
        check-and-write is one Txn: no window between "the group exists" and "join it".
        watch_join_group/watch_leave_group follow the member prefix with a coord Watch
        from the revision of the first read; ``run_watchers`` hands the events out.
Rule 3: locks are coord Locks: FIFO waiters, a fencing token per grant (``lock.fencing_token``,
        strictly increasing per name), each tooz lock object with its own lease (kept alive
        while it waits, then by ``heartbeat()``), so two lock objects exclude each other
        even within one coordinator, and a holder that dies loses the lock when its lease
        ends. ``break_`` releases the holders' grants by token.
Rule 4: leader election is a coord Election per group, campaigned with the session lease
        and the member id as value; a waiting candidate keeps its place in the FIFO queue
        between ``run_watchers`` calls. ``stand_down_group_leader`` resigns.
Rule 5: ``join_partitioned_group`` also joins a coord Ring ``<ns>/<g>`` as an ephemeral
        member (on the session lease) with the given weight, and the Partitioner places
        objects with a live view of that ring, so every member places every object the same
        way as the server's Ring.Lookup. ``run_watchers`` brings the views up to the
        server's current version.

Group and member ids are bytes; they are percent-encoded into keys, so any id is safe.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
import urllib.parse
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any, TypeVar

import tooz
from tooz import coordination, locking, partitioner, utils

from coord.v1 import lock_pb2

from . import errors
from .aio import AsyncClient
from .aio.election import Campaign
from .aio.lease import Lease
from .aio.lock import Lock as AioLock
from .aio.ring import RingView
from .aio.watch import Watch
from .sync import Client
from .tls import TLSConfig
from .txn import Compare, Op
from .types import EventType, KeyValue, RangeResult, TxnResult

__all__ = ["CoordDriver", "CoordLock", "CoordPartitioner"]

log = logging.getLogger("coord_client.tooz")

T = TypeVar("T")

DEFAULT_TIMEOUT = 10
DEFAULT_CONNECT_TIMEOUT = 5.0
ELECTION_SETTLE = 5.0
"""How long run_watchers waits for a campaign that nobody else blocks to be granted."""


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """coord errors as tooz errors (what tooz callers catch)."""
    try:
        yield
    except (errors.Unavailable, errors.ClientClosed) as err:
        utils.raise_with_cause(coordination.ToozConnectionError, str(err), cause=err)
    except errors.DeadlineExceeded as err:
        utils.raise_with_cause(coordination.OperationTimedOut, str(err), cause=err)
    except errors.CoordError as err:
        utils.raise_with_cause(tooz.ToozError, str(err), cause=err)


def _id_str(value: bytes | str) -> str:
    """A tooz id (bytes, or str at run time) as a percent-encoded key segment."""
    raw = value.encode() if isinstance(value, str) else value
    return urllib.parse.quote_from_bytes(raw, safe="")


def _id_bytes(segment: str) -> bytes:
    return urllib.parse.unquote_to_bytes(segment)


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


class _Keys:
    """The key layout of Rule 2 under one namespace."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace.strip("/") or "tooz"

    def group(self, group_id: bytes) -> bytes:
        return f"{self.ns}/group/{_id_str(group_id)}".encode()

    @property
    def groups(self) -> bytes:
        return f"{self.ns}/group/".encode()

    def members(self, group_id: bytes) -> bytes:
        return f"{self.ns}/member/{_id_str(group_id)}/".encode()

    def member(self, group_id: bytes, member_id: bytes) -> bytes:
        return self.members(group_id) + _id_str(member_id).encode()

    def election(self, group_id: bytes) -> str:
        return f"{self.ns}/leader/{_id_str(group_id)}"

    def ring(self, group_id: bytes) -> str:
        return f"{self.ns}/ring/{_id_str(group_id)}"

    def lock(self, name: bytes) -> str:
        return f"{self.ns}/lock/{_id_str(name)}"


def _member_record(capabilities: Any, created_at: float | None = None) -> bytes:
    now = time.time()
    return utils.dumps({"capabilities": capabilities, "created_at": created_at or now, "updated_at": now})


def _read_record(kv: KeyValue) -> dict[str, Any]:
    record: dict[str, Any] = utils.loads(kv.value)
    return record


class CoordLock(locking.Lock):
    """A tooz lock on a coord Lock (Rule 3). ``fencing_token`` is the current grant's
    token (0 while not held); present it to what the lock protects."""

    def __init__(self, driver: CoordDriver, name: bytes) -> None:
        super().__init__(name)
        self._driver = driver
        self._coord_name = driver._keys.lock(name)
        self._local = threading.Lock()
        """Held while this object holds (or is acquiring) the coord lock: a second acquire
        of the same object waits here (from another thread) or fails (non-blocking)."""
        self._inner: AioLock | None = None

    @property
    def fencing_token(self) -> int:
        inner = self._inner
        return inner.fencing_token if inner is not None else 0

    @property
    def acquired(self) -> bool:
        inner = self._inner
        return inner is not None and inner.is_held

    def acquire(self, blocking: bool | float = True, shared: bool = False, timeout: int | None = None) -> bool:
        if shared:
            raise tooz.NotImplemented("coord locks are exclusive (a shared mode is not implemented)")
        wait, deadline = utils.convert_blocking(blocking, timeout)
        start = time.monotonic()
        if not self._local.acquire(blocking=wait, timeout=-1 if deadline is None or not wait else deadline):
            return False
        try:
            left = None if deadline is None else max(0.0, deadline - (time.monotonic() - start))
            acquired = self._driver._run(self._acquire(wait, left))
        except BaseException:
            self._local.release()
            raise
        if not acquired:
            self._local.release()
        return acquired

    async def _acquire(self, wait: bool, timeout: float | None) -> bool:
        client = self._driver._aclient
        # The lease is kept alive while waiting; once held, heartbeat() keeps it (Rule 3).
        lease = await client.grant_lease(self._driver.ttl, timeout=timeout)
        inner = client.lock(self._coord_name, lease=lease, owner=_as_bytes(self._driver._member_id).decode(errors="replace"))
        try:
            acquired = await inner.acquire(timeout=timeout, wait=wait)
        except errors.DeadlineExceeded:
            acquired = False
        except BaseException:
            await _revoke_quietly(lease)
            raise
        if not acquired:
            await _revoke_quietly(lease)
            return False
        lease.stop_keepalive()
        self._inner = inner
        self._driver._held_locks.add(self)
        return True

    def release(self) -> bool:
        inner = self._inner
        if inner is None:
            return False
        self._inner = None
        self._driver._held_locks.discard(self)
        try:
            return self._driver._run(self._release(inner))
        finally:
            self._local.release()

    @staticmethod
    async def _release(inner: AioLock) -> bool:
        lease = inner.lease
        try:
            await inner.release()
            held = True
        except (errors.LockNotHeld, errors.LeaseLost, errors.LeaseNotFound):
            held = False  # broken, or the lease ended: someone else may hold it now
        if lease is not None:
            await _revoke_quietly(lease)
        return held

    def break_(self) -> bool:
        """Release every current grant of this lock, whoever holds it."""
        return self._driver._run(self._break())

    async def _break(self) -> bool:
        client = self._driver._aclient
        info = await client.lock_info(self._coord_name)
        broken = False
        for holder in info.holders:
            with contextlib.suppress(errors.LockNotHeld):
                await client._transport.call(
                    lambda s: s.pipelined("lock_release"), _release_request(self._coord_name, holder.token),
                    mutating=True, to_leader=True,
                )
                broken = True
        return broken

    def is_still_owner(self) -> bool:
        inner = self._inner
        if inner is None:
            return False
        info = self._driver._run(self._driver._aclient.lock_info(self._coord_name))
        return any(h.token == inner.fencing_token for h in info.holders)

    def heartbeat(self) -> bool:
        """Refresh the lease holding the lock; False when not held."""
        inner = self._inner
        if inner is None or inner.lease is None or not inner.is_held:
            return False
        try:
            self._driver._run(inner.lease.refresh())
        except (errors.LeaseNotFound, errors.LeaseLost):
            return False
        return True


def _release_request(name: str, token: int) -> lock_pb2.LockReleaseRequest:
    return lock_pb2.LockReleaseRequest(name=name, token=token)


async def _revoke_quietly(lease: Lease) -> None:
    try:
        await lease.revoke()
    except errors.CoordError as err:
        log.debug("lease %d not revoked (it ends with its TTL): %s", lease.id, err)


class _GroupWatch:
    """A coord Watch on one group's member prefix, feeding run_watchers (Rule 2)."""

    def __init__(self, members: set[bytes], revision: int) -> None:
        self.members = members
        self.revision = revision
        self.events: queue.SimpleQueue[tuple[EventType, bytes]] = queue.SimpleQueue()
        self.watch: Watch | None = None
        self.task: concurrent.futures.Future[None] | None = None


class _Candidacy:
    """This coordinator's campaign in one group's election (Rule 4)."""

    def __init__(self, campaign: Campaign, pending: concurrent.futures.Future[Any]) -> None:
        self.campaign = campaign
        self.pending = pending
        self.announced = False


class CoordPartitioner(partitioner.Partitioner):
    """tooz's Partitioner over a live view of the group's coord Ring (Rule 5)."""

    def __init__(self, driver: CoordDriver, group_id: bytes, view: RingView, partitions: int) -> None:
        # Not super().__init__: the placement comes from the coord ring, not tooz's hashring.
        self._coord = driver
        self._driver = driver
        self.group_id = group_id
        self.partitions = partitions
        self.view = view
        # tooz code reads ``ring.nodes`` and calls ``ring.get_nodes``; _RingNodes answers
        # both from the coord ring rather than from a tooz HashRing.
        self.ring = _RingNodes(view)  # type: ignore[assignment]

    def members_for_object(self, obj: object, ignore_members: Iterable[object] | None = None, replicas: int = 1) -> Any:
        ignore = {_as_bytes(m) for m in (ignore_members or ()) if isinstance(m, (bytes, str))}
        wanted = replicas + len(ignore)
        found = [_id_bytes(m) for m in self.view.lookup(self._hash_object(obj), wanted)]
        return set([m for m in found if m not in ignore][:replicas])

    def stop(self) -> None:
        self._driver._stop_partitioner(self)


class _RingNodes:
    """What tooz code reads of a Partitioner's ``ring``: ``nodes`` (member -> weight)."""

    def __init__(self, view: RingView) -> None:
        self._view = view

    @property
    def nodes(self) -> dict[bytes, int]:
        return {_id_bytes(m.id): m.weight for m in self._view.members.values()}

    def get_nodes(self, data: bytes, ignore_nodes: Iterable[object] | None = None, replicas: int = 1) -> set[bytes]:
        ignore = {_as_bytes(m) for m in (ignore_nodes or ()) if isinstance(m, (bytes, str))}
        found = [_id_bytes(m) for m in self._view.lookup(data, replicas + len(ignore))]
        return set([m for m in found if m not in ignore][:replicas])


class CoordDriver(coordination.CoordinationDriver):
    """tooz's CoordinationDriver on coord; see the module docstring for the URL and rules."""

    CHARACTERISTICS = (
        coordination.Characteristics.DISTRIBUTED_ACROSS_THREADS,
        coordination.Characteristics.DISTRIBUTED_ACROSS_PROCESSES,
        coordination.Characteristics.DISTRIBUTED_ACROSS_HOSTS,
        # Raft: every read is a ReadIndex read at the leader's commit point.
        coordination.Characteristics.LINEARIZABLE,
        coordination.Characteristics.SAME_VIEW_UNDER_PARTITIONS,
    )

    def __init__(self, member_id: bytes, parsed_url: Any, options: dict[str, Any]) -> None:
        super().__init__(member_id, parsed_url, options)
        opts = utils.collapse(options)
        self._endpoints = [e for e in (parsed_url.netloc or "").split(",") if e] or None
        self.ttl = int(float(opts.get("timeout", DEFAULT_TIMEOUT)))
        self._connect_timeout = float(opts.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        self._keys = _Keys(str(opts.get("namespace", "tooz")))
        self._token = opts.get("token") or None
        tls_options = {k: str(opts[k]) for k in ("ca_file", "cert_file", "key_file", "server_name") if opts.get(k)}
        self._tls = TLSConfig(**tls_options) if tls_options else None
        self._client: Client | None = None
        self._session: Lease | None = None
        self._held_locks: set[CoordLock] = set()
        self._watches: dict[bytes, _GroupWatch] = {}
        self._candidacies: dict[bytes, _Candidacy] = {}
        self._partitioners: dict[bytes, CoordPartitioner] = {}

    # -- plumbing ----------------------------------------------------------------------

    @property
    def _aclient(self) -> AsyncClient:
        if self._client is None:
            raise tooz.ToozError("the coordinator is not started")
        return self._client._aclient

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._client is None:
            coro.close()
            raise tooz.ToozError("the coordinator is not started")
        return self._client._loop.submit(coro)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        with _translated():
            return self._submit(coro).result()

    def _result(self, coro: Coroutine[Any, Any, T]) -> coordination.CoordinatorResult[T]:
        return coordination.CoordinatorResult(self._submit(coro), failure_translator=_translated)

    @property
    def _session_id(self) -> int:
        if self._session is None:
            raise tooz.ToozError("the coordinator is not started")
        return self._session.id

    @property
    def fencing_session(self) -> int:
        """The session's lease ID (members, campaigns and ring members hang on it)."""
        return self._session_id

    # -- life cycle (Rule 1) -----------------------------------------------------------

    def _start(self) -> None:
        client = Client(self._endpoints, token=self._token, tls=self._tls)
        try:
            self._client = client
            self._session = client._run(
                client._aclient.grant_lease(self.ttl, keepalive=False, timeout=self._connect_timeout))
        except errors.CoordError as err:
            self._client = None
            client.close()
            utils.raise_with_cause(
                coordination.ToozConnectionError, f"cannot reach coord at {self._endpoints}: {err}", cause=err)

    def _stop(self) -> None:
        client, session = self._client, self._session
        if client is None:
            return
        try:
            for watch in list(self._watches.values()):
                self._cancel_watch(watch)
            self._watches.clear()
            for p in list(self._partitioners.values()):
                client._run(p.view.close())
            self._partitioners.clear()
            for candidacy in self._candidacies.values():
                candidacy.pending.cancel()
            self._candidacies.clear()
            for lock in list(self._held_locks):
                with contextlib.suppress(tooz.ToozError):
                    lock.release()
            if session is not None:
                # Ends every member key, campaign and ring member of this session at once.
                with contextlib.suppress(errors.CoordError):
                    client._run(session.revoke())
        finally:
            self._session = None
            self._client = None
            client.close()

    def heartbeat(self) -> float:
        """Refresh the session lease and the leases of held locks (Rule 1); returns the
        seconds until the next heartbeat is due."""
        session = self._session
        if session is None:
            raise tooz.ToozError("the coordinator is not started")
        try:
            self._run(session.refresh())
        except tooz.ToozError as err:
            if isinstance(err.__cause__, (errors.LeaseNotFound, errors.LeaseLost)):
                self._new_session()
                raise coordination.ToozConnectionError(
                    f"the session lease {session.id} expired: this member left its groups and "
                    f"elections; a new session ({self._session_id}) serves the next calls") from err
            raise
        for lock in list(self._held_locks):
            lock.heartbeat()
        return self.ttl / 2

    def _new_session(self) -> None:
        """After the session lease expired (Rule 1): what hung on it is gone on the server,
        so forget it here too, and grant a fresh lease for what comes next."""
        self._joined_groups.clear()
        for candidacy in self._candidacies.values():
            candidacy.pending.cancel()
        self._candidacies.clear()
        self._session = self._run(self._aclient.grant_lease(self.ttl, keepalive=False))

    # -- groups (Rule 2) ---------------------------------------------------------------

    def create_group(self, group_id: bytes) -> coordination.CoordAsyncResult[None]:
        key = self._keys.group(group_id)

        async def create() -> None:
            result = await self._aclient.txn().when(Compare.missing(key)).then(Op.put(key, b"")).commit()
            if not result.succeeded:
                raise coordination.GroupAlreadyExist(group_id)

        return self._result(create())

    def get_groups(self) -> coordination.CoordAsyncResult[list[bytes]]:
        prefix = self._keys.groups

        async def groups() -> list[bytes]:
            kvs = await self._aclient.get_prefix(prefix, keys_only=True)
            return [_id_bytes(kv.key[len(prefix):].decode()) for kv in kvs]

        return self._result(groups())

    def delete_group(self, group_id: bytes) -> coordination.CoordAsyncResult[None]:
        key, members = self._keys.group(group_id), self._keys.members(group_id)

        async def delete() -> None:
            result = await (
                self._aclient.txn()
                .when(Compare.exists(key), Compare.version(members, prefix=True) == 0)
                .then(Op.delete(key))
                .otherwise(Op.get(key, keys_only=True))
                .commit()
            )
            if not result.succeeded:
                if not _range(result, 0).kvs:
                    raise coordination.GroupNotCreated(group_id)
                raise coordination.GroupNotEmpty(group_id)

        return self._result(delete())

    def join_group(
        self, group_id: bytes, capabilities: coordination.Capabilities | None = None
    ) -> coordination.CoordAsyncResult[None]:
        key, member = self._keys.group(group_id), self._keys.member(group_id, self._member_id)
        record = _member_record(capabilities)

        async def join() -> None:
            result = await (
                self._aclient.txn()
                .when(Compare.exists(key), Compare.missing(member))
                .then(Op.put(member, record, lease=self._session_id))
                .otherwise(Op.get(key, keys_only=True))
                .commit()
            )
            if not result.succeeded:
                if not _range(result, 0).kvs:
                    raise coordination.GroupNotCreated(group_id)
                raise coordination.MemberAlreadyExist(group_id, self._member_id)
            self._joined_groups.add(group_id)

        return self._result(join())

    def leave_group(self, group_id: bytes) -> coordination.CoordAsyncResult[None]:
        key, member = self._keys.group(group_id), self._keys.member(group_id, self._member_id)

        async def leave() -> None:
            result = await (
                self._aclient.txn()
                .when(Compare.exists(member))
                .then(Op.delete(member))
                .otherwise(Op.get(key, keys_only=True))
                .commit()
            )
            self._joined_groups.discard(group_id)
            if not result.succeeded:
                if not _range(result, 0).kvs:
                    raise coordination.GroupNotCreated(group_id)
                raise coordination.MemberNotJoined(group_id, self._member_id)

        return self._result(leave())

    async def _members(self, group_id: bytes, keys_only: bool) -> tuple[dict[bytes, KeyValue], int]:
        key, prefix = self._keys.group(group_id), self._keys.members(group_id)
        result = await (
            self._aclient.txn()
            .when(Compare.exists(key))
            .then(Op.get(prefix, prefix=True, keys_only=keys_only))
            .commit()
        )
        if not result.succeeded:
            raise coordination.GroupNotCreated(group_id)
        members = {_id_bytes(kv.key[len(prefix):].decode()): kv for kv in _range(result, 0).kvs}
        return members, result.revision

    def get_members(self, group_id: bytes) -> coordination.CoordAsyncResult[set[bytes]]:
        async def members() -> set[bytes]:
            return set((await self._members(group_id, keys_only=True))[0])

        return self._result(members())

    def get_members_with_capabilities(
        self, group_id: bytes
    ) -> coordination.CoordAsyncResult[dict[bytes, coordination.Capabilities | None]]:
        async def members() -> dict[bytes, coordination.Capabilities | None]:
            found = (await self._members(group_id, keys_only=False))[0]
            return {m: _capabilities(_read_record(kv)) for m, kv in found.items()}

        return self._result(members())

    async def _member(self, group_id: bytes, member_id: bytes) -> KeyValue:
        key, member = self._keys.group(group_id), self._keys.member(group_id, member_id)
        result = await self._aclient.txn().when(Compare.exists(key)).then(Op.get(member)).commit()
        if not result.succeeded:
            raise coordination.GroupNotCreated(group_id)
        kvs = _range(result, 0).kvs
        if not kvs:
            raise coordination.MemberNotJoined(group_id, member_id)
        return kvs[0]

    def get_member_capabilities(
        self, group_id: bytes, member_id: bytes
    ) -> coordination.CoordAsyncResult[coordination.Capabilities | None]:
        async def capabilities() -> coordination.Capabilities | None:
            return _capabilities(_read_record(await self._member(group_id, member_id)))

        return self._result(capabilities())

    def get_member_info(self, group_id: bytes, member_id: bytes) -> coordination.CoordAsyncResult[dict[str, Any]]:
        async def info() -> dict[str, Any]:
            kv = await self._member(group_id, member_id)
            record = _read_record(kv)
            return {
                "capabilities": _capabilities(record),
                "created_at": utils.millis_to_datetime(int(record["created_at"] * 1000)),
                "updated_at": utils.millis_to_datetime(int(record["updated_at"] * 1000)),
                "create_revision": kv.create_revision,
                "mod_revision": kv.mod_revision,
                "lease": kv.lease,
            }

        return self._result(info())

    def update_capabilities(
        self, group_id: bytes, capabilities: coordination.Capabilities
    ) -> coordination.CoordAsyncResult[None]:
        key, member = self._keys.group(group_id), self._keys.member(group_id, self._member_id)

        async def update() -> None:
            while True:
                result = await (
                    self._aclient.txn().when(Compare.exists(key)).then(Op.get(member)).commit()
                )
                if not result.succeeded:
                    raise coordination.GroupNotCreated(group_id)
                kvs = _range(result, 0).kvs
                if not kvs:
                    raise coordination.MemberNotJoined(group_id, self._member_id)
                old = kvs[0]
                record = _member_record(capabilities, _read_record(old)["created_at"])
                written = await (
                    self._aclient.txn()
                    .when(Compare.mod_revision(member) == old.mod_revision)
                    .then(Op.put(member, record, lease=self._session_id))
                    .commit()
                )
                if written.succeeded:
                    return

        return self._result(update())

    # -- join/leave watchers (Rule 2) --------------------------------------------------

    def watch_join_group(self, group_id: bytes, callback: coordination.EventCallback[coordination.MemberJoinedGroup]) -> None:
        self._ensure_watch(group_id)
        super().watch_join_group(group_id, callback)

    def watch_leave_group(self, group_id: bytes, callback: coordination.EventCallback[coordination.MemberLeftGroup]) -> None:
        self._ensure_watch(group_id)
        super().watch_leave_group(group_id, callback)

    def unwatch_join_group(self, group_id: bytes, callback: coordination.EventCallback[coordination.MemberJoinedGroup]) -> None:
        super().unwatch_join_group(group_id, callback)
        self._drop_watch_if_unused(group_id)

    def unwatch_leave_group(self, group_id: bytes, callback: coordination.EventCallback[coordination.MemberLeftGroup]) -> None:
        super().unwatch_leave_group(group_id, callback)
        self._drop_watch_if_unused(group_id)

    def _ensure_watch(self, group_id: bytes) -> None:
        if group_id in self._watches:
            return
        members, revision = self._run(self._members(group_id, keys_only=True))
        watch = _GroupWatch(set(members), revision)
        prefix = self._keys.members(group_id)

        async def follow() -> None:
            inner = self._aclient.watch(prefix, prefix=True, start_revision=revision + 1)
            watch.watch = inner
            async for event in inner:
                watch.events.put((event.type, _id_bytes(event.key[len(prefix):].decode())))

        watch.task = self._submit(follow())
        self._watches[group_id] = watch

    def _drop_watch_if_unused(self, group_id: bytes) -> None:
        if group_id in self._watches and not self._has_hooks_for_group(group_id):
            self._cancel_watch(self._watches.pop(group_id))

    def _cancel_watch(self, watch: _GroupWatch) -> None:
        if watch.task is not None:
            watch.task.cancel()

    def run_watchers(self, timeout: float | None = None) -> list[Any]:
        results: list[Any] = []
        for group_id, watch in list(self._watches.items()):
            results.extend(self._dispatch(group_id, watch))
        self._sync_partitioners(timeout)
        self.run_elect_coordinator()
        return results

    def _dispatch(self, group_id: bytes, watch: _GroupWatch) -> list[Any]:
        results: list[Any] = []
        while True:
            try:
                kind, member_id = watch.events.get_nowait()
            except queue.Empty:
                break
            if kind == EventType.PUT and member_id not in watch.members:
                watch.members.add(member_id)
                results.extend(self._hooks_join_group[group_id].run(coordination.MemberJoinedGroup(group_id, member_id)))
            elif kind == EventType.DELETE and member_id in watch.members:
                watch.members.discard(member_id)
                if member_id == _as_bytes(self._member_id):
                    self._joined_groups.discard(group_id)  # booted out (or our session ended)
                results.extend(self._hooks_leave_group[group_id].run(coordination.MemberLeftGroup(group_id, member_id)))
        return results

    # -- leader election (Rule 4) ------------------------------------------------------

    def run_elect_coordinator(self) -> None:
        for group_id in list(self._hooks_elected_leader):
            candidacy = self._candidacies.get(group_id)
            if candidacy is not None and candidacy.pending.done() and candidacy.pending.exception() is not None:
                del self._candidacies[group_id]  # the campaign failed (session ended): run again
                candidacy = None
            if candidacy is not None and candidacy.announced:
                if candidacy.campaign.is_leader:
                    continue
                del self._candidacies[group_id]  # lost the leadership: campaign again
                candidacy = None
            name = self._keys.election(group_id)
            if candidacy is None:
                campaign = self._aclient.campaign(name, _as_bytes(self._member_id), lease=self._session)
                candidacy = _Candidacy(campaign, self._submit(campaign.campaign()))
                self._candidacies[group_id] = candidacy
            if not candidacy.pending.done():
                # Granted already (the leader before us resigned) or about to be (nobody
                # leads): wait for the answer. Someone else leads: keep our place and go.
                leader = self._run(self._aclient.leader(name))
                if leader is not None and leader.lease != self._session_id:
                    continue
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    candidacy.pending.result(timeout=ELECTION_SETTLE)
            if candidacy.pending.done() and candidacy.pending.exception() is None:
                candidacy.announced = True
                self._hooks_elected_leader[group_id].run(coordination.LeaderElected(group_id, self._member_id))

    def unwatch_elected_as_leader(self, group_id: bytes, callback: coordination.EventCallback[coordination.LeaderElected]) -> None:
        super().unwatch_elected_as_leader(group_id, callback)
        candidacy = self._candidacies.get(group_id)
        if group_id not in self._hooks_elected_leader and candidacy is not None and not candidacy.announced:
            # Nobody here wants to lead any more: leave the queue (a leader stays leader).
            candidacy.pending.cancel()
            del self._candidacies[group_id]

    def stand_down_group_leader(self, group_id: bytes) -> bool:
        candidacy = self._candidacies.pop(group_id, None)
        if candidacy is None:
            return False
        if not candidacy.pending.done():
            candidacy.pending.cancel()
            return False
        was_leader = candidacy.campaign.is_leader
        with contextlib.suppress(tooz.ToozError):
            self._run(candidacy.campaign.resign())
        return was_leader

    def get_leader(self, group_id: bytes) -> coordination.CoordAsyncResult[bytes]:
        name = self._keys.election(group_id)

        async def leader() -> Any:
            current = await self._aclient.leader(name)
            return current.value if current is not None else None

        return self._result(leader())

    # -- locks (Rule 3) ----------------------------------------------------------------

    def get_lock(self, name: bytes) -> CoordLock:
        return CoordLock(self, _as_bytes(name))

    # -- partitioned groups (Rule 5) ---------------------------------------------------

    def join_partitioned_group(
        self, group_id: bytes, weight: int = 1, partitions: int = partitioner.Partitioner.DEFAULT_PARTITION_NUMBER
    ) -> partitioner.Partitioner:
        self.join_group_create(group_id, capabilities={"weight": weight})
        ring = self._keys.ring(group_id)

        async def join() -> RingView:
            version = await self._aclient.ring_join(ring, _id_str(self._member_id), weight=weight, lease=self._session)
            view = await self._aclient.ring_view(ring).start()
            await view.wait_for_version(version, timeout=self._aclient._transport.timeout)
            return view

        p = CoordPartitioner(self, group_id, self._run(join()), partitions)
        old = self._partitioners.pop(group_id, None)
        if old is not None:
            self._run(old.view.close())
        self._partitioners[group_id] = p
        return p

    def leave_partitioned_group(self, partitioner: partitioner.Partitioner) -> None:
        group_id = partitioner.group_id
        ring = self._keys.ring(group_id)
        leave = self.leave_group(group_id)
        partitioner.stop()
        with contextlib.suppress(tooz.ToozError):
            self._run(self._aclient.ring_leave(ring, _id_str(self._member_id)))
        leave.get()

    def _stop_partitioner(self, p: CoordPartitioner) -> None:
        if self._partitioners.get(p.group_id) is p:
            del self._partitioners[p.group_id]
        if self._client is not None:
            self._run(p.view.close())

    def _sync_partitioners(self, timeout: float | None) -> None:
        """Bring each ring view to the server's current version (a linearizable read)."""
        for p in list(self._partitioners.values()):
            ring = self._keys.ring(p.group_id)

            async def sync(view: RingView = p.view, ring: str = ring) -> None:
                try:
                    state = await self._aclient.ring_get(ring)
                except errors.NotFound:
                    return
                await view.wait_for_version(state.version, timeout=timeout or self._aclient._transport.timeout)

            self._run(sync())


def _range(result: TxnResult, index: int) -> RangeResult:
    response = result.responses[index]
    assert isinstance(response, RangeResult)
    return response


def _capabilities(record: dict[str, Any]) -> coordination.Capabilities | None:
    caps: coordination.Capabilities | None = record.get("capabilities")
    return caps


