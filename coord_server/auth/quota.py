"""Backend size quota and the per-client lease limit, checked at the edge.

The quota (``--quota-bytes``, 2 GiB by default, etcd's default) is checked against
``StateMachine.size_bytes``: key and value bytes of every record the store keeps,
history included, plus a fixed overhead per record. Like etcd's database file it grows
with every write, deletes included (a tombstone is a record), and shrinks only when a
compaction drops history. Once it is over the quota, requests that would add state get
RESOURCE_EXHAUSTED; deletes, compaction, lease revokes, releases, resigns and leaves
still pass and are how an operator relieves it (delete, then compact).

The check is made on the member the client talks to, against its own applied state, so
a member that lags sees a slightly older size: the quota is a soft limit by the size of
what is in flight, as etcd's is.
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from typing import Any

from coord.v1 import kv_pb2
from coord_server.errors import Cancelled, QuotaExhausted, ResourceExhausted, Unavailable
from coord_server.member import Member


_GROWING_METHODS = frozenset({
    "/coord.v1.KV/Put",
    "/coord.v1.Lease/Grant",
    "/coord.v1.Lock/Acquire",
    "/coord.v1.Election/Campaign",
    "/coord.v1.Election/Proclaim",
    "/coord.v1.Ring/Join",
})


QUOTA_CHECKED_METHODS = _GROWING_METHODS | {"/coord.v1.KV/Txn", "/coord.v1.KV/Pipeline"}
"""The calls the quota and the lease limit concern (Pipeline: its put and Txn ops)."""


def txn_grows(request: kv_pb2.TxnRequest) -> bool:
    """Whether any branch of the Txn (nested ones included) puts a key."""
    for op in (*request.success, *request.failure):
        which = op.WhichOneof("request")
        if which == "request_put" or (which == "request_txn" and txn_grows(op.request_txn)):
            return True
    return False


def op_grows(which: str, request: Any) -> bool:
    """For a Pipeline operation by its oneof name: whether it may add to the store (a
    lock_acquire, as Lock.Acquire, may queue a waiter)."""
    if which in ("put", "lock_acquire", "lease_grant"):
        return True
    if which == "txn":
        return txn_grows(request)
    return False


class Quota:
    """The size quota of one member's state (0: no quota)."""

    def __init__(self, node: Member, quota_bytes: int) -> None:
        self.node = node
        self.quota_bytes = quota_bytes

    def exceeded(self) -> bool:
        return self.quota_bytes > 0 and self.node.state.size_bytes > self.quota_bytes

    def check_method(self, method: str, request: Any) -> None:
        if method == "/coord.v1.KV/Txn":
            grows = txn_grows(request)
        else:
            grows = method in _GROWING_METHODS
        if grows:
            self._refuse_if_exceeded()

    def check_op(self, which: str, request: Any) -> None:
        if op_grows(which, request):
            self._refuse_if_exceeded()

    def _refuse_if_exceeded(self) -> None:
        if self.exceeded():
            raise QuotaExhausted(
                f"the backend quota is exhausted: the store keeps {self.node.state.size_bytes} bytes, "
                f"over the {self.quota_bytes}-byte quota (--quota-bytes); delete keys and compact "
                "to free space (deletes, compaction and lease revokes still work)"
            )


class LeaseLimit:
    """At most ``limit`` live leases granted per client (the user when auth is on, the
    connection otherwise). Counted on the member the client talks to: the IDs granted
    through it that the state machine still holds, pruned when a client at the limit
    asks for more, after a ReadIndex round (a follower may not have applied the grants
    and revokes the leader already answered). Only IDs recorded before that round are
    pruned: a grant answered during it may not be applied here yet (a follower learns a
    commit from the next append, or up to 2 ms later, commit_notices.py), and would look
    revoked."""

    def __init__(self, node: Member, limit: int) -> None:
        self.node = node
        self.limit = limit
        self._granted: dict[str, set[int]] = {}
        # Grants admitted and not yet answered, per client: they count too, or a client
        # sending many grants at once would pass the check before any is recorded.
        self._pending: dict[str, int] = {}
        self._last_sweep = time.monotonic()
        self._recent: set[int] = set()
        """IDs granted since the last sweep, which it keeps (see ``check``)."""

    def admit_now(self, client: str) -> bool:
        """Admit one grant for ``client`` if it is below the limit without pruning (then
        ``granted`` must follow, as after ``check``); False: call ``check``, which may
        need a ReadIndex round. Lets a Pipeline admit a batch of grants without a task each."""
        if self.limit <= 0:
            return True
        if not client:
            return False
        if len(self._granted.get(client, ())) + self._pending.get(client, 0) >= self.limit:
            return False
        self._pending[client] = self._pending.get(client, 0) + 1
        return True

    async def check(self, client: str, context: Any) -> None:
        """Admit one grant for ``client`` (RESOURCE_EXHAUSTED at the limit); every
        admitted grant must be followed by ``granted`` (with its id, or 0 if it failed)."""
        if self.limit <= 0:
            return
        if not client:
            # gRPC names no peer for a call that has already ended (its deadline passed):
            # all such calls would share one count, a limit of their own.
            raise Cancelled("the call ended before its lease grant was admitted")
        ids = self._granted.setdefault(client, set())
        if len(ids) + self._pending.get(client, 0) >= self.limit:
            from coord_server.services.common import read_barrier

            known = list(ids)
            await read_barrier(self.node, context)
            ids.difference_update([i for i in known if not self.node.state.has_lease(i)])
            held = len(ids) + self._pending.get(client, 0)
            if held >= self.limit:
                raise ResourceExhausted(
                    f"{client} holds {held} leases granted through this member; the limit is {self.limit} "
                    "per client (--max-leases-per-client); revoke leases it no longer needs"
                )
        self._pending[client] = self._pending.get(client, 0) + 1

    def follow(self, client: str, proposal: asyncio.Future[Any], lease_id: int, ttl: int) -> None:
        """End the grant ``check`` admitted by the outcome of its ``proposal`` (the
        future ``Member.submit`` returned), never by the caller's deadline or cancel: a
        caller that gives up does not stop the entry from committing, and freeing its slot
        then would let a client with tiny deadlines grant without limit.

        - The CommandResult's lease: counted (``granted``). Its error: freed.
        - Unavailable on the leader that proposed it (overtaken by another leader's
          entry, dropped by the core, the member stopping): nothing was applied
          (errors.py), freed. A leader that loses its leadership answers the proposal
          only once the entry at its index is applied here (proposals.py Rule 3):
          until then the slot stays counted.
        - Any other failure, and any failure of a grant this member forwarded (the
          forwarding stream is shared, and a break of it fails every request it
          carries, answered or not): the outcome is unknown, and the conservative
          choice is to keep it counted. A grant of a chosen ``lease_id`` is recorded as
          that lease, so it is pruned when the lease list no longer holds it; a grant
          whose id the leader would pick cannot be looked up, so its slot stays pending
          for ``ttl`` seconds: by then a lease it may have created has expired unless
          someone who learned its ID renewed it.

        Called right after ``submit``, which proposed locally iff this member leads.
        """
        if self.limit <= 0:
            return
        proposed_here = self.node.is_leader

        def settle(fut: asyncio.Future[Any]) -> None:
            error = None if fut.cancelled() else fut.exception()
            if fut.cancelled() or (error is not None and not (proposed_here and isinstance(error, Unavailable))):
                if lease_id:
                    self.granted(client, lease_id)
                else:
                    asyncio.get_running_loop().call_later(max(ttl, 1), self.granted, client, 0)
                return
            if error is not None:
                self.granted(client, 0)
                return
            result = fut.result()
            granted = result.WhichOneof("result") == "lease_grant"
            self.granted(client, int(result.lease_grant.id) if granted else 0)

        proposal.add_done_callback(settle)

    def granted(self, client: str, lease_id: int) -> None:
        """The end of a grant ``check`` admitted: ``lease_id``, or 0 when it failed."""
        if self.limit <= 0:
            return
        left = self._pending.get(client, 0) - 1
        if left > 0:
            self._pending[client] = left
        else:
            self._pending.pop(client, None)
        if not lease_id:
            return
        self._granted.setdefault(client, set()).add(lease_id)
        self._recent.add(lease_id)
        now = time.monotonic()
        if now - self._last_sweep > 60:
            # Clients that went away leave their sets behind: drop the empty ones now and
            # then, so the table stays as small as the live leases.
            self._last_sweep = now
            recent, self._recent = self._recent, set()
            for name, ids in list(self._granted.items()):
                # In place: a check waiting for its ReadIndex round holds this set.
                ids.intersection_update([i for i in ids if i in recent or self.node.state.has_lease(i)])
                if not ids:
                    del self._granted[name]


class GrantSlot:
    """One unary Lease.Grant's admitted place under the limit, handed from the auth
    interceptor to the servicer: the servicer ``follow``s its proposal (the slot ends
    with the proposal's outcome); if it never proposes, the interceptor ``release``s it."""

    def __init__(self, limit: LeaseLimit, client: str) -> None:
        self.limit = limit
        self.client = client
        self.followed = False

    def follow(self, proposal: asyncio.Future[Any], lease_id: int, ttl: int) -> None:
        self.followed = True
        self.limit.follow(self.client, proposal, lease_id, ttl)

    def release(self) -> None:
        """The grant was refused before it was proposed."""
        if not self.followed:
            self.followed = True
            self.limit.granted(self.client, 0)


GRANT_SLOT: ContextVar[GrantSlot | None] = ContextVar("coord_grant_slot", default=None)
"""The current unary Lease.Grant's slot under the per-client lease limit (None: none)."""
