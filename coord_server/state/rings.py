"""Consistent-hash rings (ring.proto), inside the state machine: membership only.

A ring holds its settings (hash mode and vnodes, defaults applied, fixed while the ring
exists), its members (id -> address, weight, lease) and its version, the log index of its
last change. Lookups are not computed here: the services build a
``coord_common.hashring.HashRing`` from what ``get`` returns, the same code a client runs
on Ring.Get's answer.

Rule 1: a change bumps the version to the index of the entry that made it, and emits one
        ``RingChange``; a Join that changes nothing (same address, weight and lease) keeps
        the version and emits nothing.
Rule 2: a lease's end removes every member bound to it, one version per touched ring.
Rule 3: checks before changes (machine.py Rule 2): the point limit is checked on the
        member list the join would produce.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from coord.raft.v1 import command_pb2
from coord.v1 import ring_pb2
from coord_common import hashring

from coord_server.errors import FailedPrecondition, NotFound, ResourceExhausted


class RingChange(NamedTuple):
    """Event: ring ``name`` changed to ``version`` (it may now be empty: gone)."""

    name: str
    version: int


class Member:
    __slots__ = ("id", "address", "weight", "lease")

    def __init__(self, member_id: str, address: str, weight: int, lease: int) -> None:
        self.id = member_id
        self.address = address
        self.weight = weight
        self.lease = lease

    def to_proto(self) -> ring_pb2.RingMember:
        return ring_pb2.RingMember(id=self.id, address=self.address, weight=self.weight, lease=self.lease)


class Ring:
    __slots__ = ("name", "mode", "vnodes", "version", "members")

    def __init__(self, name: str, mode: int, vnodes: int, version: int) -> None:
        self.name = name
        self.mode = mode
        self.vnodes = vnodes
        self.version = version
        self.members: dict[str, Member] = {}

    def settings(self) -> ring_pb2.RingSettings:
        return ring_pb2.RingSettings(hash_mode=self.mode, vnodes=self.vnodes)  # type: ignore[arg-type]

    def sorted_members(self) -> list[Member]:
        return [self.members[i] for i in sorted(self.members)]


def _mode_name(mode: int) -> str:
    names: dict[int, str] = {ring_pb2.HASH_MODE_FAST: "FAST", ring_pb2.HASH_MODE_KETAMA: "KETAMA"}
    return names.get(mode, str(mode))


def resolve(settings: ring_pb2.RingSettings) -> tuple[int, int]:
    """(hash mode, vnodes) with defaults applied."""
    mode = settings.hash_mode or ring_pb2.HASH_MODE_FAST
    return mode, settings.vnodes or hashring.DEFAULT_VNODES[mode]


Emit = Callable[[object], None]


class RingTable:
    __slots__ = ("_rings", "_by_lease", "_emit")

    def __init__(self, emit: Emit) -> None:
        self._rings: dict[str, Ring] = {}
        self._by_lease: dict[int, set[tuple[str, str]]] = {}
        self._emit = emit

    def _unbind(self, lease: int, ring: str, member_id: str) -> None:
        if not lease:
            return
        entries = self._by_lease.get(lease)
        if entries is not None:
            entries.discard((ring, member_id))
            if not entries:
                del self._by_lease[lease]

    def names_of_lease(self, lease: int) -> list[str]:
        """The rings ``lease`` has members in (what its end would remove)."""
        return sorted({ring for ring, _ in self._by_lease.get(lease, ())})

    def members_of_lease(self, lease: int) -> list[tuple[str, str]]:
        """(ring, member ID) of every ring member bound to ``lease``."""
        return sorted(self._by_lease.get(lease, ()))

    def _changed(self, ring: Ring, index: int) -> None:
        ring.version = index
        if not ring.members:
            del self._rings[ring.name]
        self._emit(RingChange(ring.name, index))

    # ------------------------------------------------------------------ commands

    def join(self, req: ring_pb2.RingJoinRequest, index: int) -> ring_pb2.RingJoinResponse:
        """Apply a validated Join whose lease (if any) exists."""
        mode, vnodes = resolve(req.settings)
        ring = self._rings.get(req.ring)
        if ring is not None and req.HasField("settings") and (mode, vnodes) != (ring.mode, ring.vnodes):
            raise FailedPrecondition(
                f"ring {req.ring!r} has hash mode {_mode_name(ring.mode)} and vnodes "
                f"{ring.vnodes}; the join asked for {_mode_name(mode)} and {vnodes}"
            )
        weight = req.weight or 1
        if ring is not None:
            old = ring.members.get(req.member_id)
            if old is not None and (old.address, old.weight, old.lease) == (req.address, weight, req.lease):
                return ring_pb2.RingJoinResponse(version=ring.version)
            mode, vnodes = ring.mode, ring.vnodes
            weights = [m.weight for i, m in ring.members.items() if i != req.member_id] + [weight]
        else:
            old = None
            weights = [weight]
        points = hashring.point_count(weights, mode, vnodes)
        if points > hashring.MAX_POINTS:
            raise ResourceExhausted(
                f"ring {req.ring!r} would have {points} points; the limit is {hashring.MAX_POINTS} "
                f"(lower the weights, or create the ring with fewer vnodes)"
            )
        if ring is None:
            ring = self._rings[req.ring] = Ring(req.ring, mode, vnodes, index)
        if old is not None:
            self._unbind(old.lease, ring.name, old.id)
        ring.members[req.member_id] = Member(req.member_id, req.address, weight, req.lease)
        if req.lease:
            self._by_lease.setdefault(req.lease, set()).add((ring.name, req.member_id))
        self._changed(ring, index)
        return ring_pb2.RingJoinResponse(version=index)

    def leave(self, req: ring_pb2.RingLeaveRequest, index: int) -> ring_pb2.RingLeaveResponse:
        ring = self._rings.get(req.ring)
        member = ring.members.get(req.member_id) if ring is not None else None
        if ring is None or member is None:
            raise NotFound(f"ring {req.ring!r} has no member {req.member_id!r}")
        del ring.members[member.id]
        self._unbind(member.lease, ring.name, member.id)
        self._changed(ring, index)
        return ring_pb2.RingLeaveResponse(version=index)

    def end_leases(self, ids: Iterable[int], index: int) -> None:
        touched: set[str] = set()
        for lease in ids:
            for ring_name, member_id in sorted(self._by_lease.pop(lease, ())):
                del self._rings[ring_name].members[member_id]
                touched.add(ring_name)
        for name in sorted(touched):
            self._changed(self._rings[name], index)

    # ------------------------------------------------------------------ reads

    def get(self, name: str) -> Ring | None:
        """The ring (do not change it), or None when it does not exist."""
        return self._rings.get(name)

    # ------------------------------------------------------------------ snapshots

    def records(self) -> list[command_pb2.RingRecord]:
        out = []
        for name in sorted(self._rings):
            ring = self._rings[name]
            rec = command_pb2.RingRecord(name=name, version=ring.version)
            rec.settings.CopyFrom(ring.settings())
            rec.members.extend(m.to_proto() for m in ring.sorted_members())
            out.append(rec)
        return out

    def load(self, records: Iterable[command_pb2.RingRecord], live_leases: Callable[[int], bool]) -> None:
        self._rings, self._by_lease = {}, {}
        for rec in records:
            mode, vnodes = rec.settings.hash_mode, rec.settings.vnodes
            if mode not in (ring_pb2.HASH_MODE_FAST, ring_pb2.HASH_MODE_KETAMA) or not rec.members or not vnodes:
                raise ValueError(f"ring {rec.name!r} is malformed")
            ring = self._rings[rec.name] = Ring(rec.name, mode, vnodes, rec.version)
            for m in rec.members:
                if not m.id or m.id in ring.members or m.weight < 1:
                    raise ValueError(f"ring {rec.name!r} has a bad member list")
                ring.members[m.id] = Member(m.id, m.address, m.weight, m.lease)
                if m.lease:
                    if not live_leases(m.lease):
                        raise ValueError(f"ring {rec.name!r} member {m.id!r} is bound to missing lease {m.lease}")
                    self._by_lease.setdefault(m.lease, set()).add((rec.name, m.id))
