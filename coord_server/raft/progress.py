"""What the leader knows about each follower's log, and how fast it may send to it.

Each follower's ``Progress`` is in one of three states:

    PROBE      nothing known to match yet: send one APP at a time, wait for the answer
      |  ^         (or the next heartbeat response) before sending another.
      |  | reject / unreachable
      v  |
    REPLICATE  the follower matches up to ``match``: stream APPs optimistically, bounded
      |            by ``Inflights`` (flow control), advancing ``next`` on send.
      v
    SNAPSHOT   the entries it needs were compacted: one snapshot is in flight, nothing
                   else is sent until it is acknowledged or reported failed.

Rule 1: ``match < next``; ``match`` never goes backwards for a given leader term.
Rule 2: an APP that a follower rejects moves ``next`` down to at most the follower's hint.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Inflights:
    """A bounded FIFO of the last index of each APP in flight (replicate state only)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._last_indexes: deque[int] = deque()

    def full(self) -> bool:
        return len(self._last_indexes) >= self.capacity

    def count(self) -> int:
        return len(self._last_indexes)

    def add(self, last_index: int) -> None:
        if self.full():
            raise OverflowError(f"cannot add an inflight message beyond capacity {self.capacity}")
        self._last_indexes.append(last_index)

    def free_le(self, index: int) -> None:
        """Forget every message whose entries all lie at or below ``index`` (acknowledged)."""
        while self._last_indexes and self._last_indexes[0] <= index:
            self._last_indexes.popleft()

    def free_first_one(self) -> None:
        if self._last_indexes:
            self._last_indexes.popleft()

    def reset(self) -> None:
        self._last_indexes.clear()


class Progress:
    """The leader's view of one follower (or learner)."""

    __slots__ = (
        "match",
        "next",
        "state",
        "probe_sent",
        "pending_snapshot",
        "recent_active",
        "is_learner",
        "inflights",
    )

    def __init__(self, next_index: int, max_inflight: int, is_learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        """PROBE state: an APP is out and unanswered; send no more until a response or heartbeat."""
        self.pending_snapshot = 0
        """SNAPSHOT state: the index of the snapshot being sent."""
        self.recent_active = False
        """Heard from this node since the last quorum check (CheckQuorum)."""
        self.is_learner = is_learner
        self.inflights = Inflights(max_inflight)

    def __repr__(self) -> str:
        return (
            f"Progress(state={self.state.name}, match={self.match}, next={self.next}, "
            f"learner={self.is_learner}, inflight={self.inflights.count()})"
        )

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Fall back to probing; after a snapshot, resume right after the snapshot."""
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged entries up to ``index``; True if that is news."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an APP after ``rejected``; back off toward ``match_hint``.

        Returns False when the rejection is stale (answers an older APP) and was ignored.
        """
        if self.state == ProgressState.REPLICATE:
            # In replicate state next was advanced optimistically; a rejection at or below
            # match answers an old message.
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        # PROBE: only the rejection of the last probe (at next - 1) is meaningful.
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def sent_entries(self, last_index: int, count: int) -> None:
        """An APP carrying ``count`` entries up to ``last_index`` was sent."""
        if self.state == ProgressState.REPLICATE:
            if count > 0:
                self.next = last_index + 1
                self.inflights.add(last_index)
        elif self.state == ProgressState.PROBE:
            self.probe_sent = True

    def is_paused(self) -> bool:
        """Whether the leader must hold back further APPs to this node for now."""
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True
