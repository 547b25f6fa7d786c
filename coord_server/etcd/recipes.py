"""etcd's v3lock and v3election services, built as etcd builds them: keys in the store.

A lock or a candidacy is the key ``<name>/<lease in hex>``, put in a Txn only if absent,
bound to the caller's lease; the holder (leader) is the key under the name with the
lowest create revision, and a waiter waits until every key created before its own is
deleted. So these keys are ordinary keys: visible to Range and Watch through both APIs,
deleted with their lease. They are not coord's fencing-token locks (coord.v1.Lock).

Every read and write goes through coord's KV servicer (calls.py), so auth applies as to
the same calls made by a client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from coord.etcd.mvccpb import kv_pb2 as mvcc
from coord.etcd.v3electionpb import v3election_pb2 as election
from coord.etcd.v3electionpb import v3election_pb2_grpc as election_grpc
from coord.etcd.v3lockpb import v3lock_pb2 as lock
from coord.etcd.v3lockpb import v3lock_pb2_grpc as lock_grpc
from coord.v1 import common_pb2, kv_pb2
from coord_server.services.common import Headers, read_barrier
from coord_server.state.keys import prefix_end
from coord_server.member import Member

from . import convert, errors
from .calls import CoordCalls, abort_etcd
from .kv import DELETE_RANGE, RANGE, TXN

RECHECK_SECONDS = 0.5
"""A waiter looks again at least this often, even without a change under its prefix (the
state may have been replaced by a snapshot)."""


class PrefixChanges:
    """Wakes a waiter when a key under ``prefix`` changes on this member."""

    def __init__(self, node: Member, prefix: bytes) -> None:
        self.node = node
        self.prefix = prefix
        self.changed = asyncio.Event()
        self.state = node.state

    def _on_events(self, revision: int, events: list[common_pb2.Event]) -> None:
        prefix = self.prefix
        if any(e.kv.key.startswith(prefix) for e in events):
            self.changed.set()

    def __enter__(self) -> PrefixChanges:
        self.state.add_listener(self._on_events)
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.remove_listener(self._on_events)

    async def wait(self) -> None:
        try:
            await asyncio.wait_for(self.changed.wait(), RECHECK_SECONDS)
        except (asyncio.TimeoutError, TimeoutError):
            pass
        self.changed.clear()


def _key_of(name: bytes, lease: int) -> bytes:
    return name + b"/" + format(lease, "x").encode()


class Recipes:
    """The KV steps etcd's concurrency package takes, over coord's KV servicer."""

    def __init__(self, node: Member, calls: CoordCalls) -> None:
        self.node = node
        self.calls = calls

    async def create_once(self, key: bytes, value: bytes, lease: int, context: Any) -> tuple[Any, Any]:
        """Put ``key`` if it does not exist; (Txn response, the key's KeyValue)."""
        txn = kv_pb2.TxnRequest(
            compare=[kv_pb2.Compare(result=kv_pb2.COMPARE_RESULT_EQUAL, target=kv_pb2.COMPARE_TARGET_CREATE_REVISION,
                                    key=key, create_revision=0)],
            success=[kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=key, value=value, lease=lease))],
            failure=[kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=key))],
        )
        r = await self.calls.call(TXN, txn, context)
        if r.succeeded:
            kv = common_pb2.KeyValue(key=key, value=value, lease=lease, create_revision=r.header.revision,
                                     mod_revision=r.header.revision, version=1)
        else:
            kv = r.responses[0].response_range.kvs[0]
        return r, kv

    async def wait_deletes(self, prefix: bytes, before: int, context: Any) -> None:
        """Until no key under ``prefix`` has a create revision below ``before``."""
        await read_barrier(self.node, context)  # every older key is in the local state now
        with PrefixChanges(self.node, prefix) as changes:
            while True:
                older = self.node.state.range(kv_pb2.RangeRequest(
                    key=prefix, range_end=prefix_end(prefix), max_create_revision=before - 1, count_only=True,
                ))
                if older.count == 0:
                    return
                await changes.wait()

    async def guarded(self, key: bytes, rev: int, op: kv_pb2.RequestOp, context: Any) -> bool:
        """Run ``op`` if ``key`` still has create revision ``rev``."""
        txn = kv_pb2.TxnRequest(
            compare=[kv_pb2.Compare(result=kv_pb2.COMPARE_RESULT_EQUAL, target=kv_pb2.COMPARE_TARGET_CREATE_REVISION,
                                    key=key, create_revision=rev)],
            success=[op],
        )
        r = await self.calls.call(TXN, txn, context)
        return bool(r.succeeded)

    async def delete(self, key: bytes, context: Any) -> Any:
        return await self.calls.call(DELETE_RANGE, kv_pb2.DeleteRangeRequest(key=key), context)

    async def first(self, prefix: bytes, context: Any) -> Any:
        """The key under ``prefix`` with the lowest create revision (a linearizable read),
        or None; and the Range's header."""
        r = await self.calls.call(RANGE, kv_pb2.RangeRequest(
            key=prefix, range_end=prefix_end(prefix), limit=1,
            sort_order=kv_pb2.SORT_ORDER_ASCEND, sort_target=kv_pb2.SORT_TARGET_CREATE_REVISION,
        ), context)
        return (r.kvs[0] if r.kvs else None), r.header

    async def abandon(self, key: bytes) -> None:
        """Delete a key whose caller went away while waiting (as etcd's server does)."""
        try:
            await self.calls.call(DELETE_RANGE, kv_pb2.DeleteRangeRequest(key=key), _NoDeadline())
        except Exception:  # noqa: BLE001 - best effort: the lease removes it otherwise
            pass


class _NoDeadline:
    """The context of a clean-up call made after the client left."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def time_remaining(self) -> float:
        return 5.0

    def peer(self) -> str:
        return "cleanup"


class EtcdLock(lock_grpc.LockServicer):
    def __init__(self, recipes: Recipes) -> None:
        self.recipes = recipes

    async def Lock(self, request: lock.LockRequest, context: Any) -> lock.LockResponse:
        key = _key_of(request.name, request.lease)
        created = False
        try:
            if not request.name:
                raise errors.EMPTY_KEY
            r, kv = await self.recipes.create_once(key, b"", request.lease, context)
            created = True
            await self.recipes.wait_deletes(request.name + b"/", kv.create_revision, context)
            return lock.LockResponse(header=convert.header(r.header), key=key)
        except asyncio.CancelledError:
            if created:
                asyncio.get_running_loop().create_task(self.recipes.abandon(key))
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - answered in etcd's terms
            await abort_etcd(context, exc)
            raise

    async def Unlock(self, request: lock.UnlockRequest, context: Any) -> lock.UnlockResponse:
        try:
            r = await self.recipes.delete(request.key, context)
            return lock.UnlockResponse(header=convert.header(r.header))
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            raise


class EtcdElection(election_grpc.ElectionServicer):
    def __init__(self, recipes: Recipes) -> None:
        self.recipes = recipes

    async def Campaign(self, request: election.CampaignRequest, context: Any) -> election.CampaignResponse:
        recipes = self.recipes
        key = _key_of(request.name, request.lease)
        created = False
        try:
            if not request.name:
                raise errors.EMPTY_KEY
            r, kv = await recipes.create_once(key, request.value, request.lease, context)
            created = True
            rev = kv.create_revision
            if kv.value != request.value:
                put = kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=key, value=request.value, lease=request.lease))
                if not await recipes.guarded(key, rev, put, context):
                    raise errors.ELECTION_NOT_LEADER
            await recipes.wait_deletes(request.name + b"/", rev, context)
            leader = election.LeaderKey(name=request.name, key=key, rev=rev, lease=request.lease)
            return election.CampaignResponse(header=convert.header(r.header), leader=leader)
        except asyncio.CancelledError:
            if created:
                asyncio.get_running_loop().create_task(recipes.abandon(key))
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            raise

    async def Proclaim(self, request: election.ProclaimRequest, context: Any) -> election.ProclaimResponse:
        try:
            leader = request.leader
            put = kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=leader.key, value=request.value, lease=leader.lease))
            if not await self.recipes.guarded(leader.key, leader.rev, put, context):
                raise errors.ELECTION_NOT_LEADER
            return election.ProclaimResponse(header=convert.header(self._header()))
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            raise

    async def Resign(self, request: election.ResignRequest, context: Any) -> election.ResignResponse:
        try:
            leader = request.leader
            delete = kv_pb2.RequestOp(request_delete_range=kv_pb2.DeleteRangeRequest(key=leader.key))
            await self.recipes.guarded(leader.key, leader.rev, delete, context)
            return election.ResignResponse(header=convert.header(self._header()))
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            raise

    async def Leader(self, request: election.LeaderRequest, context: Any) -> election.LeaderResponse:
        try:
            kv, header = await self.recipes.first(request.name + b"/", context)
            if kv is None:
                raise errors.ELECTION_NO_LEADER
            return election.LeaderResponse(header=convert.header(header), kv=convert.recode(kv, mvcc.KeyValue))
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            raise

    async def Observe(
        self, request: election.LeaderRequest, context: Any
    ) -> AsyncIterator[election.LeaderResponse]:
        """Every leader and every new value of the leader, in order, as etcd's Observe."""
        prefix = request.name + b"/"
        last: tuple[bytes, int] | None = None
        try:
            with PrefixChanges(self.recipes.node, prefix) as changes:
                while True:
                    kv, header = await self.recipes.first(prefix, context)
                    if kv is not None and (kv.key, kv.mod_revision) != last:
                        last = (kv.key, kv.mod_revision)
                        yield election.LeaderResponse(header=convert.header(header), kv=convert.recode(kv, mvcc.KeyValue))
                    await changes.wait()
        except (grpc.aio.AbortError, asyncio.CancelledError, grpc.aio.UsageError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)

    def _header(self) -> common_pb2.ResponseHeader:
        return Headers(self.recipes.node).header()


__all__ = ["EtcdElection", "EtcdLock", "Recipes"]
