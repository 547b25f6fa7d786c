"""Leases in the state machine: grant, revoke, expire, attachments, reads."""

from __future__ import annotations

import grpc
import pytest

from coord.raft.v1 import command_pb2
from coord.v1 import common_pb2, kv_pb2, lease_pb2
from coord_server.errors import Code
from coord_server.state import NotFound, min_lease_ttl

from .driver import Driver, put_op

IA, NF, FP = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
              grpc.StatusCode.FAILED_PRECONDITION)


@pytest.fixture
def d() -> Driver:
    return Driver()


def test_grant_assigns_the_log_index_as_id(d: Driver) -> None:
    d.put(b"a")  # index 1
    resp = d.grant(ttl=30)  # index 2
    assert (resp.id, resp.ttl, resp.header.revision) == (2, 30, 2)
    assert d.sm.revision == 2, "a grant does not change the revision"


def test_assigned_id_skips_ids_in_use(d: Driver) -> None:
    assert d.grant(lease_id=2).id == 2  # index 1
    assert d.grant(lease_id=3).id == 3  # index 2
    assert d.grant().id == 4  # index 3: 3 is taken
    assert d.grant().id == 5  # index 4: 4 is taken
    assert d.grant().id == 6  # index 5: free


def test_grant_with_an_id_in_use_fails(d: Driver) -> None:
    d.grant(lease_id=42)
    assert d.code(d.cmd(lease_grant=lease_pb2.LeaseGrantRequest(ttl=5, id=42))) == FP


@pytest.mark.parametrize(
    "req",
    [
        lease_pb2.LeaseGrantRequest(ttl=0),
        lease_pb2.LeaseGrantRequest(ttl=-3),
        lease_pb2.LeaseGrantRequest(ttl=9_000_000_001),
        lease_pb2.LeaseGrantRequest(ttl=5, id=-1),
    ],
    ids=["ttl 0", "negative ttl", "ttl too long", "negative id"],
)
def test_grant_invalid(d: Driver, req: lease_pb2.LeaseGrantRequest) -> None:
    assert d.code(d.cmd(lease_grant=req)) == IA
    assert d.sm.lease_ids() == []


def test_ttl_bounds_are_inclusive(d: Driver) -> None:
    assert d.grant(ttl=1).ttl == 1
    assert d.grant(ttl=9_000_000_000).ttl == 9_000_000_000


def test_min_lease_ttl() -> None:
    assert min_lease_ttl(1.0) == 2  # 1.5 s rounds up
    assert min_lease_ttl(2.0) == 3
    assert min_lease_ttl(0.1) == 1
    assert min_lease_ttl(0.5) == 1


def test_attach_to_unknown_lease(d: Driver) -> None:
    assert d.code(d.cmd(put=kv_pb2.PutRequest(key=b"a", lease=9))) == NF
    assert d.code(d.txn(success=[put_op(b"a", lease=9)])) == NF
    assert d.sm.revision == 1


def test_revoke_deletes_attached_keys_in_one_revision(d: Driver) -> None:
    lease = d.grant().id
    other = d.grant().id
    for k in (b"c", b"a", b"b"):
        d.put(k, k, lease=lease)
    d.put(b"o", lease=other)
    d.put(b"free")
    seen: list[tuple[int, list[common_pb2.Event]]] = []
    d.sm.add_listener(lambda rev, events: seen.append((rev, events)))
    resp = d.ok(d.revoke(lease))
    assert resp.header.revision == 7 and d.sm.revision == 7
    assert [kv.key for kv in d.get(b"\0", b"\0").kvs] == [b"free", b"o"]
    ((rev, events),) = seen
    assert rev == 7 and [(e.type, e.kv.key) for e in events] == [
        (common_pb2.EVENT_TYPE_DELETE, k) for k in (b"a", b"b", b"c")]
    assert all(e.prev_kv.lease == lease for e in events)
    assert [i for i, _ in d.sm.lease_ids()] == [other]
    assert d.code(d.revoke(lease)) == NF, "gone"


def test_revoke_without_keys_keeps_the_revision(d: Driver) -> None:
    lease = d.grant().id
    assert d.ok(d.revoke(lease)).header.revision == 1


@pytest.mark.parametrize("lease_id", [0, -1, 12345])
def test_revoke_unknown(d: Driver, lease_id: int) -> None:
    assert d.code(d.revoke(lease_id)) == NF


def test_expire_revokes_those_still_alive_in_one_revision(d: Driver) -> None:
    l1, l2, l3 = d.grant().id, d.grant().id, d.grant().id
    d.put(b"x", lease=l1)
    d.put(b"y", lease=l3)
    d.ok(d.revoke(l2))
    res = d.ok(d.expire(l3, l2, l1, 999, l1))
    assert list(res.revoked) == [l1, l3]
    assert d.sm.revision == 4 and d.sm.lease_ids() == [], "x and y go in one revision"
    assert d.get(b"\0", b"\0").count == 0
    assert list(d.ok(d.expire(l1)).revoked) == [], "expiring a dead lease is a no-op"
    assert d.sm.revision == 4


def test_keys_move_between_leases(d: Driver) -> None:
    l1, l2 = d.grant(ttl=7).id, d.grant(ttl=8).id
    d.put(b"k", lease=l1)
    assert d.sm.lease_info(l1) == (7, [b"k"])
    d.put(b"k", lease=l2)
    assert d.sm.lease_info(l1).keys == [] and d.sm.lease_info(l2).keys == [b"k"]
    d.put(b"k")
    assert d.sm.lease_info(l2).keys == []
    d.put(b"k", lease=l1)
    d.delete(b"k")
    assert d.sm.lease_info(l1).keys == []
    d.ok(d.revoke(l1))
    assert d.sm.revision == 6, "deleted key is not deleted again"


def test_lease_reads(d: Driver) -> None:
    d.grant(ttl=5, lease_id=20)
    d.grant(ttl=6, lease_id=10)
    d.put(b"b", lease=20)
    d.put(b"a", lease=20)
    assert d.sm.lease_ids() == [(10, 6), (20, 5)]
    assert [(s.id, s.granted_ttl) for s in d.sm.lease_list()] == [(10, 6), (20, 5)]
    info = d.sm.lease_info(20)
    assert info.granted_ttl == 5 and info.keys == [b"a", b"b"]
    with pytest.raises(NotFound) as err:
        d.sm.lease_info(30)
    assert err.value.code == Code.NOT_FOUND


def test_lease_state_survives_snapshots(d: Driver) -> None:
    lease = d.grant(ttl=9).id
    d.put(b"k", lease=lease)
    restored = Driver(type(d.sm).restore(d.sm.snapshot()))
    assert restored.sm.lease_info(lease) == (9, [b"k"])
    restored.ok(restored.revoke(lease))
    assert restored.get(b"k").count == 0


def test_expire_command_round_trip(d: Driver) -> None:
    result = d.apply(command_pb2.Command(lease_expire=command_pb2.LeaseExpire()))
    assert result.WhichOneof("result") == "lease_expire"
