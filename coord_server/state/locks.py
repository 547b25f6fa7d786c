"""Locks and counting semaphores with fencing tokens (lock.proto), inside the state machine.

Per lock name: ``permits`` (1 for a mutex), the holders (token -> holder, ascending token)
and a FIFO queue of waiting leases. A lock exists while it has holders or waiters.

Rule 1: tokens. A grant applied at log index i gets token max(i, last_token + 1), where
        last_token is the highest token this name was granted. Almost always that is i,
        the index of the entry that granted it (lock.proto); only one entry that grants
        several permits of one semaphore (a LeaseExpire of several holders) hands out
        i, i+1, ... Tokens are therefore strictly increasing per name, for ever: indexes
        only grow, and when a lock that is emptied had a token at or above the current
        index, its last token is kept as a floor (``_floors``) until the log passes it,
        so a lock created again right after cannot repeat a token. Everything, floors
        included, is in the snapshot.
Rule 2: invariant: a lock has waiters only when every permit is taken. Every change that
        frees a permit fills it from the head of the queue in the same entry (``_fill``),
        so a release and the next grant are one committed entry, and exactly the waiters
        granted are told (events), nobody else: no thundering herd.
Rule 3: a lease's end (revoke or expiry) first removes every hold and wait of every
        ending lease, then fills the locks that lost holders. A waiter whose lease ends in
        the same entry is never granted, so it is never told it holds the lock.
Rule 4: every operation checks everything before it changes anything, so a refused
        command changes nothing (machine.py Rule 2).
Rule 5: lookups are O(1): holders by token and by lease, waiters by lease in an
        insertion-ordered dict (the queue), locks by lease for lease ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from coord.raft.v1 import command_pb2
from coord.v1 import lock_pb2

from coord_server.errors import FailedPrecondition


class LockGrant(NamedTuple):
    """Event: ``lease`` now holds ``name`` with ``token`` (from the queue or at once)."""

    name: str
    lease: int
    token: int


class LockWaitEnd(NamedTuple):
    """Event: ``lease`` left the queue of ``name`` without a grant (its lease ended, or its
    wait was cancelled); ``queued_at`` identifies the wait."""

    name: str
    lease: int
    queued_at: int


class Holder:
    __slots__ = ("token", "lease", "owner", "revision")

    def __init__(self, token: int, lease: int, owner: str, revision: int) -> None:
        self.token = token
        self.lease = lease
        self.owner = owner
        self.revision = revision


class Waiter:
    __slots__ = ("lease", "owner", "revision", "queued_at")

    def __init__(self, lease: int, owner: str, revision: int, queued_at: int) -> None:
        self.lease = lease
        self.owner = owner
        self.revision = revision
        self.queued_at = queued_at


class Lock:
    __slots__ = ("name", "permits", "holders", "holder_of", "waiters", "last_token")

    def __init__(self, name: str, permits: int, last_token: int) -> None:
        self.name = name
        self.permits = permits
        self.holders: dict[int, Holder] = {}
        """token -> holder, in grant order (= ascending token)."""
        self.holder_of: dict[int, int] = {}
        """lease -> token."""
        self.waiters: dict[int, Waiter] = {}
        """lease -> waiter, in queue order."""
        self.last_token = last_token

    def __bool__(self) -> bool:
        return bool(self.holders or self.waiters)


Emit = Callable[[object], None]


class LockTable:
    """Every lock; changes go through the methods, which append events with ``emit``."""

    __slots__ = ("_locks", "_by_lease", "_floors", "_emit")

    def __init__(self, emit: Emit) -> None:
        self._locks: dict[str, Lock] = {}
        self._by_lease: dict[int, set[str]] = {}
        self._floors: dict[str, int] = {}
        self._emit = emit

    # ------------------------------------------------------------------ helpers

    def _bind(self, lease: int, name: str) -> None:
        self._by_lease.setdefault(lease, set()).add(name)

    def _unbind(self, lease: int, name: str) -> None:
        names = self._by_lease.get(lease)
        if names is not None:
            names.discard(name)
            if not names:
                del self._by_lease[lease]

    def names_of_lease(self, lease: int) -> list[str]:
        """The locks ``lease`` holds or waits for (what its end would release)."""
        return sorted(self._by_lease.get(lease, ()))

    def held_by_lease(self, lease: int) -> list[str]:
        """The locks ``lease`` holds a permit of (not those it waits for)."""
        return [n for n in self.names_of_lease(lease) if lease in self._locks[n].holder_of]

    def _grant(self, lock: Lock, lease: int, owner: str, index: int, revision: int) -> int:
        token = max(index, lock.last_token + 1)
        lock.last_token = token
        lock.holders[token] = Holder(token, lease, owner, revision)
        lock.holder_of[lease] = token
        self._emit(LockGrant(lock.name, lease, token))
        return token

    def _fill(self, lock: Lock, index: int, revision: int) -> None:
        """Rule 2: grant free permits to the head of the queue."""
        waiters = lock.waiters
        while waiters and len(lock.holders) < lock.permits:
            lease = next(iter(waiters))
            w = waiters.pop(lease)
            self._grant(lock, lease, w.owner, index, revision)

    def _drop_if_empty(self, lock: Lock, index: int) -> None:
        if lock:
            return
        del self._locks[lock.name]
        if lock.last_token > index:
            self._floors[lock.name] = lock.last_token

    def advance(self, index: int) -> None:
        """Forget token floors the log has passed (Rule 1); called for every entry."""
        if self._floors:
            for name in [n for n, t in self._floors.items() if t < index]:
                del self._floors[name]

    # ------------------------------------------------------------------ commands

    def acquire(
        self, req: lock_pb2.LockAcquireRequest, index: int, revision: int
    ) -> command_pb2.LockAcquireResult:
        """Apply a validated Acquire whose lease exists (the machine checked it)."""
        name, lease = req.name, req.lease
        permits = req.permits or 1
        lock = self._locks.get(name)
        result = command_pb2.LockAcquireResult()
        response = result.response
        if lock is not None:
            if lock.permits != permits:
                raise FailedPrecondition(
                    f"lock {name!r} has {lock.permits} permits; the request asked for {permits}"
                )
            token = lock.holder_of.get(lease)
            if token is not None:
                response.acquired, response.token = True, token
                return result
            waiter = lock.waiters.get(lease)
            if waiter is not None:
                if not req.no_wait:
                    result.queued_at = waiter.queued_at
                return result
            if len(lock.holders) >= lock.permits:
                if not req.no_wait:
                    lock.waiters[lease] = Waiter(lease, req.owner, revision, index)
                    self._bind(lease, name)
                    result.queued_at = index
                return result
        else:
            lock = self._locks[name] = Lock(name, permits, self._floors.pop(name, 0))
        response.acquired = True
        response.token = self._grant(lock, lease, req.owner, index, revision)
        self._bind(lease, name)
        return result

    def release(self, req: lock_pb2.LockReleaseRequest, index: int, revision: int) -> None:
        """Apply a validated Release; FailedPrecondition when no holder has the token."""
        lock = self._locks.get(req.name)
        holder = lock.holders.get(req.token) if lock is not None else None
        if lock is None or holder is None:
            raise FailedPrecondition(
                f"lock {req.name!r} is not held with token {req.token} (never granted, "
                f"already released, or released because its lease ended)"
            )
        del lock.holders[req.token]
        del lock.holder_of[holder.lease]
        self._unbind(holder.lease, lock.name)
        self._fill(lock, index, revision)
        self._drop_if_empty(lock, index)

    def cancel(self, req: command_pb2.WaitCancel, index: int) -> bool:
        """Take a lease out of a lock's queue (queued_at 0 matches any wait); False when it
        does not wait there (granted meanwhile, or gone)."""
        lock = self._locks.get(req.name)
        if lock is None:
            return False
        w = lock.waiters.get(req.lease)
        if w is None or (req.queued_at and w.queued_at != req.queued_at):
            return False
        del lock.waiters[req.lease]
        self._unbind(req.lease, lock.name)
        self._emit(LockWaitEnd(lock.name, req.lease, w.queued_at))
        self._drop_if_empty(lock, index)  # a waiter leaving never frees a permit (Rule 2)
        return True

    def end_leases(self, ids: Iterable[int], index: int, revision: int) -> None:
        """Rule 3, for leases ``ids`` (ascending) ending at ``index``."""
        touched: set[str] = set()
        for lease in ids:
            for name in sorted(self._by_lease.pop(lease, ())):
                lock = self._locks[name]
                token = lock.holder_of.pop(lease, None)
                if token is not None:
                    del lock.holders[token]
                else:
                    w = lock.waiters.pop(lease)
                    self._emit(LockWaitEnd(name, lease, w.queued_at))
                touched.add(name)
        for name in sorted(touched):
            lock = self._locks[name]
            self._fill(lock, index, revision)
            self._drop_if_empty(lock, index)

    # ------------------------------------------------------------------ reads

    def tokens(self, name: str) -> set[int]:
        """The tokens of the current holders of ``name`` (empty when free)."""
        lock = self._locks.get(name)
        return set(lock.holders) if lock is not None else set()

    def would_queue(self, name: str, lease: int) -> bool:
        lock = self._locks.get(name)
        return lock is not None and lease not in lock.holder_of and len(lock.holders) >= lock.permits

    def holder_token(self, name: str, lease: int) -> int | None:
        lock = self._locks.get(name)
        return lock.holder_of.get(lease) if lock is not None else None

    def counts(self) -> tuple[int, int]:
        """(holders, waiters) over every lock, for the metrics endpoint (read at scrape time)."""
        held = waiting = 0
        for lock in self._locks.values():
            held += len(lock.holders)
            waiting += len(lock.waiters)
        return held, waiting

    def waiting(self, name: str, lease: int) -> int | None:
        """The queued_at of ``lease``'s wait for ``name``, or None."""
        lock = self._locks.get(name)
        if lock is None:
            return None
        w = lock.waiters.get(lease)
        return w.queued_at if w is not None else None

    def inspect(self, name: str) -> lock_pb2.LockInspectResponse:
        """The lock as Inspect describes it (empty when it does not exist)."""
        response = lock_pb2.LockInspectResponse()
        lock = self._locks.get(name)
        if lock is None:
            return response
        response.permits = lock.permits
        response.holders.extend(
            lock_pb2.LockHolder(token=h.token, lease=h.lease, owner=h.owner, revision=h.revision)
            for h in lock.holders.values()
        )
        response.waiters.extend(
            lock_pb2.LockWaiter(lease=w.lease, owner=w.owner, revision=w.revision)
            for w in lock.waiters.values()
        )
        return response

    # ------------------------------------------------------------------ snapshots

    def records(self) -> list[command_pb2.LockRecord]:
        """Every lock and token floor, by ascending name."""
        out = []
        for name in sorted(set(self._locks) | set(self._floors)):
            lock = self._locks.get(name)
            if lock is None:
                out.append(command_pb2.LockRecord(name=name, last_token=self._floors[name]))
                continue
            rec = command_pb2.LockRecord(name=name, permits=lock.permits, last_token=lock.last_token)
            rec.holders.extend(
                lock_pb2.LockHolder(token=h.token, lease=h.lease, owner=h.owner, revision=h.revision)
                for h in lock.holders.values()
            )
            rec.waiters.extend(
                command_pb2.LockWaiterRecord(lease=w.lease, owner=w.owner, revision=w.revision, queued_at=w.queued_at)
                for w in lock.waiters.values()
            )
            out.append(rec)
        return out

    def load(self, records: Iterable[command_pb2.LockRecord], live_leases: Callable[[int], bool]) -> None:
        """Replace the table with snapshot records; ValueError when they are inconsistent."""
        self._locks, self._by_lease, self._floors = {}, {}, {}
        for rec in records:
            if not rec.holders and not rec.waiters:
                self._floors[rec.name] = rec.last_token
                continue
            if rec.permits < 1 or len(rec.holders) > rec.permits or (rec.waiters and len(rec.holders) < rec.permits):
                raise ValueError(f"lock {rec.name!r} breaks its permits")
            lock = self._locks[rec.name] = Lock(rec.name, rec.permits, rec.last_token)
            previous = 0
            for h in rec.holders:
                if h.token <= previous or h.token > rec.last_token or h.lease in lock.holder_of:
                    raise ValueError(f"lock {rec.name!r} has bad holder tokens")
                previous = h.token
                lock.holders[h.token] = Holder(h.token, h.lease, h.owner, h.revision)
                lock.holder_of[h.lease] = h.token
            for w in rec.waiters:
                if w.lease in lock.holder_of or w.lease in lock.waiters:
                    raise ValueError(f"lock {rec.name!r} lists lease {w.lease} twice")
                lock.waiters[w.lease] = Waiter(w.lease, w.owner, w.revision, w.queued_at)
            for lease in (*lock.holder_of, *lock.waiters):
                if not live_leases(lease):
                    raise ValueError(f"lock {rec.name!r} is bound to lease {lease}, which is missing")
                self._bind(lease, rec.name)
