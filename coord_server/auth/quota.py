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

import time
from typing import Any

from coord.v1 import kv_pb2
from coord_server.errors import QuotaExhausted, ResourceExhausted
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
        if len(self._granted.get(client, ())) + self._pending.get(client, 0) >= self.limit:
            return False
        self._pending[client] = self._pending.get(client, 0) + 1
        return True

    async def check(self, client: str, context: Any) -> None:
        """Admit one grant for ``client`` (RESOURCE_EXHAUSTED at the limit); every
        admitted grant must be followed by ``granted`` (with its id, or 0 if it failed)."""
        if self.limit <= 0:
            return
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
