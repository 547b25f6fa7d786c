"""The leader's lease clocks: when each lease expires, by this process's monotonic clock.

Expiry is a leader-local decision (time never enters the replicated state machine); what
is replicated is the TTL, and the revocation once the leader decides a lease expired.

Rule 1: only a leader keeps deadlines. A node that becomes leader starts every lease afresh
        at ``ttl + extension`` (one election timeout): a client whose keepalives went to the
        old leader must not lose its lease because of the change (DESIGN.md "Lease").
Rule 2: a keepalive is answered only after the leader confirmed its leadership with a
        quorum (the node does that before calling ``keepalive``), so a deposed leader never
        promises a TTL the new leader then breaks (etcd issue #12528).
Rule 3: an expired lease is reported once per ``retry_after`` seconds until its revocation
        is applied, so a lost proposal is retried without flooding the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


class LeaseTimers:
    def __init__(self, clock: Callable[[], float], retry_after: float = 1.0) -> None:
        self._clock = clock
        self._retry_after = retry_after
        self._deadline: dict[int, float] = {}
        self._ttl: dict[int, int] = {}
        self._reported: dict[int, float] = {}
        self.active = False

    def start(self, leases: Iterable[tuple[int, int]], extension: float) -> None:
        """Become the keeper (Rule 1)."""
        now = self._clock()
        self.active = True
        self._deadline = {lid: now + ttl + extension for lid, ttl in leases}
        self._ttl = {lid: ttl for lid, ttl in leases}
        self._reported = {}

    def stop(self) -> None:
        self.active = False
        self._deadline.clear()
        self._ttl.clear()
        self._reported.clear()

    def granted(self, lease_id: int, ttl: int) -> None:
        if self.active:
            self._ttl[lease_id] = ttl
            self._deadline[lease_id] = self._clock() + ttl

    def revoked(self, lease_id: int) -> None:
        self._deadline.pop(lease_id, None)
        self._ttl.pop(lease_id, None)
        self._reported.pop(lease_id, None)

    def keepalive(self, lease_id: int) -> int | None:
        """Renew; the TTL granted, or None when the lease is unknown or already expired."""
        deadline = self._deadline.get(lease_id)
        if deadline is None or deadline <= self._clock():
            return None
        ttl = self._ttl[lease_id]
        self._deadline[lease_id] = self._clock() + ttl
        return ttl

    def remaining(self, lease_id: int) -> float | None:
        deadline = self._deadline.get(lease_id)
        if deadline is None:
            return None
        return max(0.0, deadline - self._clock())

    def expired(self) -> list[int]:
        """Leases past their deadline not reported in the last ``retry_after`` s (Rule 3)."""
        now = self._clock()
        out = []
        for lease_id, deadline in self._deadline.items():
            if deadline <= now and now - self._reported.get(lease_id, -1e18) >= self._retry_after:
                self._reported[lease_id] = now
                out.append(lease_id)
        return sorted(out)
