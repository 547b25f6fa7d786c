"""The leader's lease clocks: when each lease expires, by this process's monotonic clock.

Expiry is a leader-local decision (time never enters the replicated state machine); what
is replicated is the TTL, and the revocation once the leader decides a lease expired.

Rule 1: only a leader keeps deadlines. A node that becomes leader starts every lease afresh
        at ``ttl + extension`` (one election timeout): a client whose keepalives went to the
        old leader must not lose its lease because of the change (DESIGN.md "Lease").
Rule 2: a keepalive is answered only after the leader confirmed its leadership with a
        quorum (services/lease_renewals.py does that before calling ``keepalive``), so a
        deposed leader never promises a TTL the new leader then breaks (etcd issue #12528).
Rule 3: an expired lease is reported once per ``retry_after`` seconds until its revocation
        is applied, so a lost proposal is retried without flooding the log.
Rule 4: the cost follows the work, not the number of leases. A renewal is one dict store;
        finding expired leases pops a heap of deadlines (each lease has one entry, moved
        forward lazily when it surfaces and the lease was renewed meanwhile), so a tick
        with nothing due costs O(1) however many leases are kept alive.
Rule 5: ``expired`` reports at most ``limit`` leases per call: an expiry storm becomes a
        series of bounded LeaseExpire entries, one per tick, rather than one entry whose
        apply stalls the event loop (and every heartbeat and client behind it).
Rule 6: a renewal is judged by when it arrived, not when its batch was confirmed: one that
        waited in the leader's queue past the deadline still counts unless the expiry
        was already reported (services/lease_renewals.py passes the arrival time).
Rule 7: time the leader did not run does not count against leases, up to a bound. When
        its loop was held up (a long pause, or the process kept off the CPU on a busy
        machine), renewals sent meanwhile sit unread in its sockets; ``postpone`` stops
        the timers' clock for the pause, so no lease expires before the leader has read
        them. The timers' clock is the monotonic clock minus the total pause, one offset,
        so a pause costs O(1) however many leases there are. The node counts only stalls
        of at least a heartbeat interval, and the total per leadership is capped at
        ``max_postpone`` (one election timeout): a lease lives at most TTL + that cap
        after its last renewal to this leader (TTL + extension + cap after the leadership
        began, if not renewed since), and never less than its TTL, so each client's own
        view of its lease stays conservative.
Rule 8: once a lease's expiry was reported, its LeaseExpire may be in the log and will be
        applied whatever happens to the deadline: from then on ``keepalive`` refuses it
        (TTL 0) and ``remaining`` is 0, even if a pause moved the clock back before its
        deadline, until its revocation is applied or it is granted anew.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable

EXPIRE_CHUNK = 500
"""The most leases one ``expired`` call reports (Rule 5): one LeaseExpire entry per tick
(20 ms) of at most this many leases, so even 100,000 leases expiring at once are revoked
within a few seconds while each entry applies in a few milliseconds."""


class LeaseTimers:
    def __init__(self, clock: Callable[[], float], retry_after: float = 1.0) -> None:
        self._clock = clock
        self._retry_after = retry_after
        self._deadline: dict[int, float] = {}
        self._ttl: dict[int, int] = {}
        self._heap: list[tuple[float, int]] = []
        """(deadline when pushed, lease id) (Rule 4); an entry counts only while it
        matches ``_scheduled`` (others are left over from a revoked lease)."""
        self._scheduled: dict[int, float] = {}
        self._due: deque[tuple[float, int]] = deque()
        """(report at, lease id) of expired leases, in report order (Rule 3); an entry
        counts only while it matches ``_report_at``."""
        self._report_at: dict[int, float] = {}
        self._paused = 0.0
        """Total pause of this leadership (Rule 7): the timers' clock runs this much behind
        ``clock``; every deadline and report time is in the timers' clock."""
        self._max_paused = 0.0
        self.active = False

    def _now(self) -> float:
        return self._clock() - self._paused

    def start(self, leases: Iterable[tuple[int, int]], extension: float, max_postpone: float | None = None) -> None:
        """Become the keeper (Rule 1); ``postpone`` may stop the clock for at most
        ``max_postpone`` s in all (Rule 7; by default ``extension``, one election timeout)."""
        self._paused = 0.0
        self._max_paused = extension if max_postpone is None else max_postpone
        now = self._now()
        self.active = True
        self._ttl = dict(leases)
        self._deadline = {lid: now + ttl + extension for lid, ttl in self._ttl.items()}
        self._scheduled = dict(self._deadline)
        self._heap = [(deadline, lid) for lid, deadline in self._deadline.items()]
        heapq.heapify(self._heap)
        self._due = deque()
        self._report_at = {}

    def stop(self) -> None:
        self.active = False
        self._deadline.clear()
        self._ttl.clear()
        self._heap = []
        self._scheduled.clear()
        self._due.clear()
        self._report_at.clear()

    def granted(self, lease_id: int, ttl: int) -> None:
        if self.active:
            self._ttl[lease_id] = ttl
            self._deadline[lease_id] = deadline = self._now() + ttl
            self._report_at.pop(lease_id, None)
            if lease_id not in self._scheduled:
                self._scheduled[lease_id] = deadline
                heapq.heappush(self._heap, (deadline, lease_id))

    def postpone(self, seconds: float) -> None:
        """Stop the timers' clock for a pause of ``seconds`` (Rule 7), within what is left
        of this leadership's cap; O(1). Reported leases stay refused (Rule 8)."""
        if not self.active or seconds <= 0:
            return
        self._paused += min(seconds, max(0.0, self._max_paused - self._paused))

    @property
    def postponed(self) -> float:
        """Seconds the timers' clock was stopped in this leadership (at most the cap)."""
        return self._paused

    def revoked(self, lease_id: int) -> None:
        # Its heap and due entries no longer count; they are dropped when they surface.
        self._deadline.pop(lease_id, None)
        self._ttl.pop(lease_id, None)
        self._scheduled.pop(lease_id, None)
        self._report_at.pop(lease_id, None)

    def keepalive(self, lease_id: int, arrived_at: float | None = None) -> int | None:
        """Renew; the TTL granted, or None when the lease is unknown or already expired.

        ``arrived_at`` (this clock) is when the renewal reached this member: one that
        arrived in time but waited in a queue past the deadline still renews, unless
        the lease's expiry was already reported (Rule 8: its revocation may be in the log)."""
        deadline = self._deadline.get(lease_id)
        if deadline is None or lease_id in self._report_at:
            return None
        now = self._now()
        # A renewal that arrived before a pause is judged slightly leniently (the whole
        # pause is taken off its arrival): safe, since no expiry of it was reported.
        if deadline <= (now if arrived_at is None else min(now, arrived_at - self._paused)):
            return None
        ttl = self._ttl[lease_id]
        self._deadline[lease_id] = now + ttl
        return ttl

    def remaining(self, lease_id: int) -> float | None:
        deadline = self._deadline.get(lease_id)
        if deadline is None:
            return None
        if lease_id in self._report_at:
            return 0.0  # Rule 8
        return max(0.0, deadline - self._now())

    def __len__(self) -> int:
        return len(self._deadline)

    def expired(self, limit: int = EXPIRE_CHUNK) -> list[int]:
        """At most ``limit`` leases past their deadline and not reported in the last
        ``retry_after`` s (Rules 3-5), by ascending ID."""
        now = self._now()
        heap, deadlines, scheduled, report_at = self._heap, self._deadline, self._scheduled, self._report_at
        while heap and heap[0][0] <= now:
            pushed, lease_id = heapq.heappop(heap)
            if scheduled.get(lease_id) != pushed:
                continue  # left over from a revoked lease
            deadline = deadlines[lease_id]
            if deadline > now:
                scheduled[lease_id] = deadline  # renewed since: look again then
                heapq.heappush(heap, (deadline, lease_id))
            else:
                del scheduled[lease_id]
                report_at[lease_id] = now
                self._due.append((now, lease_id))
        out: list[int] = []
        due = self._due
        while due and due[0][0] <= now and len(out) < limit:
            at, lease_id = due.popleft()
            if report_at.get(lease_id) != at:
                continue  # its revocation was applied, or it was granted anew
            out.append(lease_id)
            report_at[lease_id] = later = now + self._retry_after
            due.append((later, lease_id))
        return sorted(out)
