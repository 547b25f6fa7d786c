"""A leader's COMMIT messages, held back briefly so that the next append carries them.

When the leader's commit index moves and a follower has no new entries to receive, the
core sends it a COMMIT (raft/core.py ``_send_append``), so that the follower applies now
rather than at the next append or heartbeat: its watches, lock waiters and reads wait on
what it has applied. In a serial workload (one client's puts, a contended lock passed
from holder to holder) the next append follows within a millisecond or two and carries
the same commit index, which makes every COMMIT a gRPC message to each follower for
nothing: written by the leader, read by the follower, 100-200 us of CPU each, on the
critical path of the next request when the cores are busy. Held back for 2 ms,
contended lock handoffs went from 209 to 279/s (bench/locks.py, coord alone, mean of 3
alternating runs; all 3 won; 5 ms did no better), and the followers' CPU per put at
concurrency 1 fell from about 1.1 to 0.8-0.9 ms.

Rule 1: a COMMIT waits up to ``delay`` seconds; the newest one per follower wins.
Rule 2: an APP or HEARTBEAT of the same term to the same follower, carrying at least the
        held commit index, replaces the held COMMIT, which is dropped: the follower
        learns the same commit from it.
Rule 3: when the delay has passed, whatever is still held is sent. ``drop`` forgets it
        all (this member stopped leading; a follower ignores a deposed leader's
        messages anyway).

Safety does not rest on COMMIT messages: a follower only ever learns a commit index the
leader has already reached, and a notice that comes late, or never, only delays when a
follower applies (heartbeats carry the commit index too).
"""

from __future__ import annotations

from collections.abc import Callable

from coord_server.clock import LOOP_CLOCK, Clock, Timer
from coord_server.raft import Message, MessageType

COMMIT_NOTICE_DELAY = 0.002
"""Seconds a COMMIT may wait for an append to carry it. The longest a follower's
watchers, lock waiters and reads can wait for an idle leader's last commit beyond what
etcd-style immediate notices would give."""

_CARRIERS = (MessageType.APP, MessageType.HEARTBEAT)


class CommitNotices:
    """The COMMITs a leader holds back, by follower (module docstring)."""

    def __init__(self, send: Callable[[list[Message]], None], delay: float = COMMIT_NOTICE_DELAY,
                 clock: Clock = LOOP_CLOCK) -> None:
        self._send = send
        self.delay = delay
        self._clock = clock
        self._held: dict[int, Message] = {}
        self._timer: Timer | None = None

    def filter(self, messages: list[Message]) -> list[Message]:
        """``messages`` to send now: the COMMITs among them are held (Rule 1), and a held
        one that another message carries is dropped (Rule 2)."""
        if not self._held and not any(m.type == MessageType.COMMIT for m in messages):
            return messages
        now: list[Message] = []
        for m in messages:
            if m.type == MessageType.COMMIT:
                self._held[m.to] = m
                continue
            held = self._held.get(m.to)
            if held is not None and m.type in _CARRIERS and m.term == held.term and m.commit >= held.commit:
                del self._held[m.to]
            now.append(m)
        if self._held and self._timer is None:
            self._timer = self._clock.call_later(self.delay, self._flush)
        return now

    @property
    def held(self) -> int:
        """How many followers have a COMMIT waiting."""
        return len(self._held)

    def _flush(self) -> None:
        """Rule 3."""
        self._timer = None
        if self._held:
            held, self._held = list(self._held.values()), {}
            self._send(held)

    def drop(self) -> None:
        """Forget every held COMMIT (Rule 3)."""
        self._held.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
