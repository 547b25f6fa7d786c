"""CoordHub: the member's waiting Acquire and Campaign calls, Observe streams and ring
Watch streams, fed by the state machine's coordination events.

The state machine calls ``_on_events`` synchronously after every applied entry that
granted a lock, ended a wait, changed an election or changed a ring
(``StateMachine.add_coordination_listener``); the hub wakes exactly the calls concerned.

Rule 1: no thundering herd. Waiting calls are indexed by (name, lease): a grant wakes the
        calls of the lease that got it and nobody else; a lease that keeps waiting is not
        woken at all. Same for campaigns.
Rule 2: no lost wake-up. ``wait_lock`` / ``wait_campaign`` look at the state and register
        in one synchronous step (no await between), after the member applied the entry
        that queued the call (the service waits for that index first), so a grant is
        either already visible in the state or still to come as an event.
Rule 3: streams hold whole states, in apply order: an Observe stream gets the leader and
        value after every change, a ring Watch stream the version and members after
        every change. A stream whose client reads too slowly skips intermediate states
        (at most ``max_pending`` are queued; the oldest go first), never the last one.
Rule 4: when a snapshot replaces the state (``Node.add_state_listener``), every waiting
        call is settled or kept from the new state, every stream gets the new state if it
        differs from the last one it was given, and the hub listens to the new state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from coord.v1 import election_pb2, ring_pb2
from coord_server.errors import CoordError, FailedPrecondition, NotFound, Unavailable
from coord_server.state.elections import CandidateGone, LeaderChange
from coord_server.state.locks import LockGrant, LockWaitEnd
from coord_server.state.rings import RingChange

if TYPE_CHECKING:
    from coord_server.node import Node

log = logging.getLogger("coord.coord_hub")

DEFAULT_MAX_PENDING = 1024
"""States queued for one stream before the oldest are skipped (Rule 3)."""


class _Wait:
    __slots__ = ("future", "queued_at")

    def __init__(self, future: asyncio.Future[Any], queued_at: int) -> None:
        self.future = future
        self.queued_at = queued_at


class Feed:
    """One stream's queue of states (Observe or ring Watch): ``next()`` returns the next
    state, oldest first; a state is a protobuf message without a header."""

    __slots__ = ("key", "queue", "wake", "last", "failure", "max_pending", "skipped")

    def __init__(self, key: str, max_pending: int) -> None:
        self.key = key
        self.queue: deque[Any] = deque()
        self.wake = asyncio.Event()
        self.last: Any = None
        """The identity of the last state queued (to skip repeats after a snapshot)."""
        self.failure: CoordError | None = None
        self.max_pending = max_pending

    def push(self, state: Any, identity: Any) -> None:
        self.last = identity
        self.queue.append(state)
        while len(self.queue) > self.max_pending:
            self.queue.popleft()
        self.wake.set()

    def fail(self, error: CoordError) -> None:
        if self.failure is None:
            self.failure = error
        self.wake.set()


class CoordHub:
    """Create once per node, before serving (``add_services`` does)."""

    def __init__(self, node: Node, *, max_pending: int = DEFAULT_MAX_PENDING,
                 leaderless_timeout: float | None = None) -> None:
        self.node = node
        self.max_pending = max_pending
        self.leaderless_timeout = (
            leaderless_timeout if leaderless_timeout is not None else 3 * node.config.election_timeout
        )
        self._locks: dict[tuple[str, int], list[_Wait]] = {}
        self._campaigns: dict[tuple[str, int], list[_Wait]] = {}
        self._observers: dict[str, set[Feed]] = {}
        self._ring_feeds: dict[str, set[Feed]] = {}
        self._closed = False
        # One clock for every Observe and Ring Watch stream (as WatchHub has), rather than
        # a timer per idle stream: it ends the feeds of a member without a leader.
        self._ticker: asyncio.Task[None] | None = None
        self._leaderless_since: float | None = None
        self._state: Any = node.state
        self._state.add_coordination_listener(self._on_events)
        node.add_state_listener(self._on_state_replaced)

    # ------------------------------------------------------------------ events

    def _on_events(self, index: int, events: list[object]) -> None:
        for e in events:
            if isinstance(e, LockGrant):
                self._settle(self._locks, (e.name, e.lease), None, e.token)
            elif isinstance(e, LockWaitEnd):
                if (e.name, e.lease) in self._locks:  # the outcome only for a call waiting here
                    self._settle(self._locks, (e.name, e.lease), e.queued_at, self._ended("lock", e.name, e.lease))
            elif isinstance(e, LeaderChange):
                if e.lease:
                    self._settle(self._campaigns, (e.name, e.lease), None, e.leader_key())
                feeds = self._observers.get(e.name)
                if feeds:
                    self._push_leader(feeds, e)
            elif isinstance(e, CandidateGone):
                if (e.name, e.lease) in self._campaigns:
                    self._settle(
                        self._campaigns, (e.name, e.lease), e.queued_at, self._ended("election", e.name, e.lease)
                    )
            elif isinstance(e, RingChange):
                feeds = self._ring_feeds.get(e.name)
                if feeds:
                    self._push_ring(feeds, e.name, e.version)

    def _ended(self, what: str, name: str, lease: int) -> CoordError:
        if not self._state.has_lease(lease):
            return NotFound(f"lease {lease} ended while waiting for {what} {name!r}")
        return FailedPrecondition(f"the wait of lease {lease} for {what} {name!r} was cancelled")

    @staticmethod
    def _settle(table: dict[tuple[str, int], list[_Wait]], key: tuple[str, int],
                queued_at: int | None, outcome: Any) -> None:
        """Resolve the waits of ``key`` (only those of ``queued_at`` when given) with
        ``outcome``: a value, or a CoordError to raise."""
        waits = table.get(key)
        if not waits:
            return
        keep = []
        for w in waits:
            if queued_at is not None and w.queued_at != queued_at:
                keep.append(w)
            elif not w.future.done():
                if isinstance(outcome, BaseException):
                    w.future.set_exception(outcome)
                else:
                    w.future.set_result(outcome)
        if keep:
            table[key] = keep
        else:
            del table[key]

    def _on_state_replaced(self, state: Any) -> None:
        """Rule 4."""
        self._state.remove_coordination_listener(self._on_events)
        self._state = state
        state.add_coordination_listener(self._on_events)
        for name, lease in list(self._locks):
            token = state.lock_holder_token(name, lease)
            if token is not None:
                self._settle(self._locks, (name, lease), None, token)
            elif state.lock_waiting(name, lease) is None:
                self._settle(self._locks, (name, lease), None, self._ended("lock", name, lease))
        for name, lease in list(self._campaigns):
            cand = state.election_candidate(name, lease)
            if cand is not None and cand[0]:
                self._settle(self._campaigns, (name, lease), None, state.election_leader(name).leader_key())
            elif cand is None:
                self._settle(self._campaigns, (name, lease), None, self._ended("election", name, lease))
        for name, feeds in self._observers.items():
            self._push_leader(feeds, state.election_leader(name), only_changed=True)
        for name, feeds in self._ring_feeds.items():
            self._push_ring(feeds, name, 0, only_changed=True)

    # ------------------------------------------------------------------ waiting calls

    def _register(self, table: dict[tuple[str, int], list[_Wait]], key: tuple[str, int],
                  queued_at: int) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        table.setdefault(key, []).append(_Wait(fut, queued_at))
        return fut

    def wait_lock(self, name: str, lease: int) -> tuple[asyncio.Future[int], int]:
        """A future for ``lease``'s grant of ``name`` and the queued_at of its wait
        (Rule 2). Already resolved when the lease holds the lock, failed when it neither
        holds nor waits (its lease ended, or the wait was cancelled)."""
        state = self._state
        token = state.lock_holder_token(name, lease)
        if token is not None:
            return _done(token), 0
        queued_at = state.lock_waiting(name, lease)
        if queued_at is None:
            return _failed(self._ended("lock", name, lease)), 0
        return self._register(self._locks, (name, lease), queued_at), queued_at

    def wait_campaign(self, name: str, lease: int) -> tuple[asyncio.Future[election_pb2.LeaderKey], int]:
        """As ``wait_lock``, for a candidate of an election: resolves to its LeaderKey."""
        state = self._state
        cand = state.election_candidate(name, lease)
        if cand is None:
            return _failed(self._ended("election", name, lease)), 0
        token, queued_at = cand
        if token:
            return _done(state.election_leader(name).leader_key()), 0
        return self._register(self._campaigns, (name, lease), queued_at), queued_at

    def forget_lock(self, name: str, lease: int, fut: asyncio.Future[Any]) -> bool:
        """Drop a wait whose call ended; True when no other call of this member still
        waits for the same (name, lease), so the wait may be cancelled in the log."""
        return _forget(self._locks, (name, lease), fut)

    def forget_campaign(self, name: str, lease: int, fut: asyncio.Future[Any]) -> bool:
        return _forget(self._campaigns, (name, lease), fut)

    @property
    def waiting(self) -> int:
        """Waiting Acquire and Campaign calls (for tests and status)."""
        return sum(len(w) for w in self._locks.values()) + sum(len(w) for w in self._campaigns.values())

    # ------------------------------------------------------------------ streams

    def _push_leader(self, feeds: set[Feed], e: LeaderChange, only_changed: bool = False) -> None:
        identity = (e.lease, e.token, e.value)
        body = election_pb2.ElectionObserveResponse(value=e.value)
        key = e.leader_key()
        if key is not None:
            body.leader.CopyFrom(key)
        for feed in feeds:
            if only_changed and feed.last == identity:
                continue
            feed.push(body, identity)

    def _ring_state(self, name: str, version_if_gone: int) -> tuple[ring_pb2.RingWatchResponse, Any]:
        """The ring as a Watch state, and its identity: its version, or "gone" when it does
        not exist (then reported with ``version_if_gone``: the version of the change that
        emptied it, or 0, as ring.proto says of a ring that does not exist)."""
        ring = self._state.ring(name)
        if ring is None:
            return ring_pb2.RingWatchResponse(version=version_if_gone), "gone"
        body = ring_pb2.RingWatchResponse(version=ring.version)
        body.settings.CopyFrom(ring.settings())
        body.members.extend(m.to_proto() for m in ring.sorted_members())
        return body, ring.version

    def _push_ring(self, feeds: set[Feed], name: str, version_if_gone: int, only_changed: bool = False) -> None:
        body, identity = self._ring_state(name, version_if_gone)
        for feed in feeds:
            if only_changed and feed.last == identity:
                continue
            feed.push(body, identity)

    def observe(self, name: str) -> Feed:
        """A feed of election ``name``'s states, starting with the current one."""
        self._check_open()
        feed = Feed(name, self.max_pending)
        self._observers.setdefault(name, set()).add(feed)
        self._ensure_ticker()
        self._push_leader({feed}, self._state.election_leader(name))
        return feed

    def watch_ring(self, name: str, after_version: int) -> Feed:
        """A feed of ring ``name``'s versions: its current state first unless
        ``after_version`` is set and the ring's version is not greater. A ring that no
        longer exists is reported (version 0) to a client that knew a version of it."""
        self._check_open()
        feed = Feed(name, self.max_pending)
        self._ring_feeds.setdefault(name, set()).add(feed)
        self._ensure_ticker()
        body, identity = self._ring_state(name, 0)
        if identity == "gone" or not after_version or body.version > after_version:
            feed.push(body, identity)
        else:
            feed.last = identity
        return feed

    def close_feed(self, feed: Feed) -> None:
        for table in (self._observers, self._ring_feeds):
            feeds = table.get(feed.key)
            if feeds is not None and feed in feeds:
                feeds.discard(feed)
                if not feeds:
                    del table[feed.key]

    async def next(self, feed: Feed) -> Any:
        """The next state of ``feed``; raises Unavailable when the member stops, fails, or
        has had no leader for ``leaderless_timeout`` (its states would silently stop:
        ``tick`` fails the feed)."""
        while not feed.queue:
            if feed.failure is not None:
                raise feed.failure
            if self._closed or self.node.failed is not None:
                raise Unavailable("the member is stopping", "")
            feed.wake.clear()
            await feed.wake.wait()
        return feed.queue.popleft()

    def _feeds(self) -> list[Feed]:
        return [f for table in (self._observers, self._ring_feeds) for feeds in table.values() for f in feeds]

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            # A clock that stopped with its last feed saw nothing since: start afresh.
            self._leaderless_since = None
            self._ticker = asyncio.get_running_loop().create_task(self._tick_loop(), name="coord-hub")

    async def _tick_loop(self) -> None:
        interval = max(0.02, min(0.5, self.leaderless_timeout / 3))
        while (self._observers or self._ring_feeds) and not self._closed:
            await asyncio.sleep(interval)
            self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        """Fail every feed of a member that stopped or has had no leader for
        ``leaderless_timeout``."""
        node = self.node
        if node.failed is not None:
            error = Unavailable("the member is stopping", "")
        elif node.leader_id:
            self._leaderless_since = None
            return
        elif self._leaderless_since is None:
            self._leaderless_since = now
            return
        elif now - self._leaderless_since < self.leaderless_timeout:
            return
        else:
            error = Unavailable("the member has no leader; observe through another member")
        for feed in self._feeds():
            if feed.failure is None:
                feed.fail(error)

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the member is stopping")

    async def close(self) -> None:
        """End every stream with UNAVAILABLE and fail every waiting call."""
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
        error = Unavailable("the member is stopping")
        for feed in self._feeds():
            feed.fail(error)
        for waits_table in (self._locks, self._campaigns):
            for waits in waits_table.values():
                for w in waits:
                    if not w.future.done():
                        w.future.set_exception(error)
            waits_table.clear()


def _done(value: Any) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


def _failed(error: BaseException) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_exception(error)
    return fut


def _forget(table: dict[tuple[str, int], list[_Wait]], key: tuple[str, int], fut: asyncio.Future[Any]) -> bool:
    waits = table.get(key)
    if waits is None:
        return True
    rest = [w for w in waits if w.future is not fut]
    if rest:
        table[key] = rest
        return False
    del table[key]
    return True

