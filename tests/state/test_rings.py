"""Rings in the state machine: join, update, leave, versions, settings, limits, lease ends,
snapshots."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from coord.v1 import ring_pb2
from coord_server.state import StateMachine
from coord_server.state.rings import RingChange

from .driver import Driver

IA, NF, FP, RE = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                  grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED)
FAST, KETAMA = ring_pb2.HASH_MODE_FAST, ring_pb2.HASH_MODE_KETAMA


class RingDriver(Driver):
    def __init__(self, sm: StateMachine | None = None) -> None:
        super().__init__(sm)
        self.events: list[tuple[int, object]] = []
        self.sm.add_coordination_listener(lambda index, evs: self.events.extend((index, e) for e in evs))

    def join(self, ring: str, member: str, **kw: Any) -> Any:
        return self.cmd(ring_join=ring_pb2.RingJoinRequest(ring=ring, member_id=member, **kw))

    def leave(self, ring: str, member: str) -> Any:
        return self.cmd(ring_leave=ring_pb2.RingLeaveRequest(ring=ring, member_id=member))

    def members(self, ring: str) -> list[tuple[str, str, int, int]]:
        r = self.sm.ring(ring)
        return [] if r is None else [(m.id, m.address, m.weight, m.lease) for m in r.sorted_members()]


@pytest.fixture
def d() -> RingDriver:
    drv = RingDriver()
    drv.grant(ttl=10, lease_id=7)  # index 1
    return drv


def test_join_update_leave_and_versions(d: RingDriver) -> None:
    assert d.ok(d.join("R", "b", address="h:2")).version == 2
    assert d.ok(d.join("R", "a", address="h:1", weight=3, lease=7)).version == 3
    ring = d.sm.ring("R")
    assert ring is not None and (ring.mode, ring.vnodes, ring.version) == (FAST, 1024, 3)
    assert d.members("R") == [("a", "h:1", 3, 7), ("b", "h:2", 1, 0)]
    assert d.ok(d.join("R", "a", address="h:1", weight=3, lease=7)).version == 3, "no change, same version"
    assert d.ok(d.join("R", "a", address="h:9", weight=3, lease=7)).version == 5
    assert d.ok(d.leave("R", "b")).version == 6
    assert d.code(d.leave("R", "b")) == NF  # index 7
    assert [e for _, e in d.events] == [RingChange("R", 2), RingChange("R", 3), RingChange("R", 5), RingChange("R", 6)]
    assert d.ok(d.leave("R", "a")).version == 8
    assert d.sm.ring("R") is None and d.events[-1][1] == RingChange("R", 8)
    assert d.ok(d.join("R", "a")).version == 9, "a ring created again never repeats a version"


def test_settings_are_fixed_at_creation(d: RingDriver) -> None:
    d.ok(d.join("K", "a", settings=ring_pb2.RingSettings(hash_mode=KETAMA)))
    ring = d.sm.ring("K")
    assert ring is not None and (ring.mode, ring.vnodes) == (KETAMA, 40)
    assert d.ok(d.join("K", "b")).version > 0, "unset settings join any ring"
    assert d.ok(d.join("K", "c", settings=ring_pb2.RingSettings(hash_mode=KETAMA, vnodes=40))).version > 0
    assert d.code(d.join("K", "d", settings=ring_pb2.RingSettings())) == FP, "FAST is not KETAMA"
    assert d.code(d.join("K", "d", settings=ring_pb2.RingSettings(hash_mode=KETAMA, vnodes=41))) == FP


@pytest.mark.parametrize(
    "kw, code",
    [
        ({"ring": "", "member_id": "a"}, IA),
        ({"ring": "R", "member_id": ""}, IA),
        ({"ring": "R" * 4097, "member_id": "a"}, IA),
        ({"ring": "R", "member_id": "a", "weight": 65536}, IA),
        ({"ring": "R", "member_id": "a", "settings": ring_pb2.RingSettings(vnodes=1025)}, IA),
        ({"ring": "R", "member_id": "a", "settings": ring_pb2.RingSettings(hash_mode=7)}, IA),
        ({"ring": "R", "member_id": "a", "lease": 99}, NF),
        ({"ring": "R", "member_id": "a", "lease": -1}, NF),
        ({"ring": "R", "member_id": "a", "weight": 1025}, RE),  # 1025 x 1024 points > 2**20
    ],
)
def test_join_errors(d: RingDriver, kw: dict[str, Any], code: grpc.StatusCode) -> None:
    assert d.code(d.cmd(ring_join=ring_pb2.RingJoinRequest(**kw))) == code
    assert d.sm.ring("R") is None


def test_weight_zero_means_one(d: RingDriver) -> None:
    d.ok(d.join("R", "a", weight=0))
    assert d.members("R") == [("a", "", 1, 0)]


def test_lease_end_removes_members_in_one_version(d: RingDriver) -> None:
    d.ok(d.join("R", "a", lease=7))
    d.ok(d.join("R", "b", lease=7))
    d.ok(d.join("R", "c"))
    d.ok(d.join("S", "a", lease=7))
    d.ok(d.join("R", "a", lease=0))  # a is permanent now
    d.events.clear()
    d.ok(d.revoke(7))
    idx = d.index
    assert d.members("R") == [("a", "", 1, 0), ("c", "", 1, 0)]
    assert d.sm.ring("S") is None
    assert d.events == [(idx, RingChange("R", idx)), (idx, RingChange("S", idx))]


def test_snapshot_round_trips_rings(d: RingDriver) -> None:
    d.ok(d.join("R", "a", address="x", weight=2, lease=7))
    d.ok(d.join("K", "z", settings=ring_pb2.RingSettings(hash_mode=KETAMA, vnodes=10)))
    snap = d.sm.snapshot()
    restored = StateMachine.restore(snap)
    assert restored.snapshot() == snap
    r = RingDriver(restored)
    r.ok(r.revoke(7))
    assert restored.ring("R") is None
