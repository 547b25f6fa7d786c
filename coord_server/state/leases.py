"""Leases: the live leases, their TTLs, and the keys attached to each.

Rule 1: the table holds only what the log decided: a lease exists from the Grant entry
        until the Revoke or LeaseExpire entry that ends it. Remaining time is the leader's
        business (coord_server/lease_timer.py); here a lease has only its granted TTL.
Rule 2: a key is attached to the lease named by its latest live record, and to no other;
        ``track`` keeps the attachment sets in step with every committed KV change, so
        revoking a lease finds its keys in O(keys attached).
Rule 3: an ID the client leaves at 0 is chosen deterministically: the log index of the
        Grant, or the next free ID above it. Indexes only grow, so assigned IDs do not
        repeat, and every member assigns the same one.
"""

from __future__ import annotations

from collections.abc import Iterable

from .kv import LEASE, VERSION, Change


class Lease:
    """One live lease: its ID, granted TTL (seconds), attached keys, and owner (the user
    that granted it; "" when auth was off)."""

    __slots__ = ("id", "ttl", "keys", "owner")

    def __init__(self, lease_id: int, ttl: int, owner: str = "") -> None:
        self.id = lease_id
        self.ttl = ttl
        self.keys: set[bytes] = set()
        self.owner = owner


class LeaseTable:
    """The live leases by ID."""

    __slots__ = ("_leases",)

    def __init__(self) -> None:
        self._leases: dict[int, Lease] = {}

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def __len__(self) -> int:
        return len(self._leases)

    def get(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def choose_id(self, index: int) -> int:
        """The ID for a grant that asked for none, applied at log ``index`` (Rule 3)."""
        lease_id = max(index, 1)
        while lease_id in self._leases:
            lease_id += 1
        return lease_id

    def grant(self, lease_id: int, ttl: int, owner: str = "") -> Lease:
        lease = self._leases[lease_id] = Lease(lease_id, ttl, owner)
        return lease

    def remove(self, lease_id: int) -> Lease:
        return self._leases.pop(lease_id)

    def track(self, changes: Iterable[Change]) -> None:
        """Move attachments after committed KV changes (Rule 2)."""
        leases = self._leases
        for key, prev, rec in changes:
            if prev is not None and prev[LEASE]:
                old = leases.get(prev[LEASE])
                if old is not None:
                    old.keys.discard(key)
            if rec[VERSION] and rec[LEASE]:
                leases[rec[LEASE]].keys.add(key)

    def sorted(self) -> list[Lease]:
        """Every live lease, by ascending ID."""
        return [self._leases[i] for i in sorted(self._leases)]
