"""StateMachine as the node uses it: apply's contract, listeners, watches, snapshots."""

from __future__ import annotations

import grpc
import pytest

from coord.raft.v1 import command_pb2
from coord.v1 import common_pb2, kv_pb2
from coord_server.errors import Code
from coord_server.state import Compacted, InvalidArgument, SnapshotError, StateMachine
from coord_server.state.limits import MAX_COMMAND_BYTES

from .driver import Driver, del_op, put_op

PUT, DELETE = common_pb2.EVENT_TYPE_PUT, common_pb2.EVENT_TYPE_DELETE


def test_empty_entry_is_a_no_op() -> None:
    sm = StateMachine()
    assert sm.apply(1, b"") is None
    assert sm.applied_index == 1 and sm.revision == 1


def test_out_of_order_index_is_a_node_bug() -> None:
    sm = StateMachine()
    sm.apply(5, b"")
    with pytest.raises(ValueError, match="out of order"):
        sm.apply(5, b"")
    with pytest.raises(ValueError):
        sm.apply_member_change(3, 0, 1, b"")
    sm.apply(9, b"")  # gaps are allowed (entries applied elsewhere, e.g. by a snapshot)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff",
        b"\x0a\x05ab",  # truncated client_id
        b"\x10\x01",  # seq only, no op
        b"\x0a\x02\xc3\x28",  # invalid UTF-8 in client_id
        b"\xfa\x01\x00",  # an op field number this version does not know (31)
    ],
    ids=["garbage", "truncated", "no op", "bad utf-8", "unknown op"],
)
def test_malformed_commands_are_invalid_argument(data: bytes) -> None:
    sm = StateMachine()
    result = sm.apply(1, data)
    assert result is not None and result.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert sm.applied_index == 1 and sm.revision == 1


def test_oversized_command() -> None:
    sm = StateMachine()
    big = command_pb2.Command(put=kv_pb2.PutRequest(key=b"k", value=b"v" * MAX_COMMAND_BYTES))
    result = sm.apply(1, big.SerializeToString())
    assert result is not None and result.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    ok = command_pb2.Command(put=kv_pb2.PutRequest(key=b"k", value=b"v" * (3 * 512 * 1024)))
    result = sm.apply(2, ok.SerializeToString())
    assert result is not None and result.WhichOneof("result") == "put"


def test_unexpected_exception_is_rolled_back_and_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    d = Driver()
    d.put(b"a", b"1")

    def boom(self: object, cmp: object) -> bool:
        raise KeyError("bug")

    monkeypatch.setattr(type(d.sm._writes), "compare", boom)
    from .driver import cmp

    res = d.txn(compare=[], success=[put_op(b"b"), kv_pb2.RequestOp(request_txn=kv_pb2.TxnRequest(
        compare=[cmp("VERSION", "EQUAL", b"a", version=1)]))])
    assert d.code(res) == grpc.StatusCode.INTERNAL
    assert "KeyError" in res.error.message
    assert d.sm.revision == 2 and d.get(b"b").count == 0


def test_listener_gets_each_revision_with_prev_kv() -> None:
    d = Driver()
    seen: list[tuple[int, list[tuple[int, bytes, bytes, bytes]]]] = []
    d.sm.add_listener(
        lambda rev, events: seen.append(
            (rev, [(e.type, e.kv.key, e.kv.value, e.prev_kv.value) for e in events])
        )
    )
    d.put(b"a", b"1")
    d.put(b"a", b"2")
    d.delete(b"zz")  # nothing changes: no call
    d.txn(success=[put_op(b"b", b"x"), kv_pb2.RequestOp(
        request_delete_range=kv_pb2.DeleteRangeRequest(key=b"a"))])
    d.txn(success=[put_op(b"c"), put_op(b"x", lease=5)])  # fails: no call
    d.grant()
    assert seen == [
        (2, [(PUT, b"a", b"1", b"")]),
        (3, [(PUT, b"a", b"2", b"1")]),
        (4, [(PUT, b"b", b"x", b""), (DELETE, b"a", b"", b"2")]),
    ]


def test_listener_after_a_failed_command_gets_nothing_stale() -> None:
    d = Driver()
    seen: list[int] = []
    d.sm.add_listener(lambda rev, events: seen.append(len(events)))
    d.txn(success=[put_op(b"c"), put_op(b"x", lease=5)])
    d.put(b"z")
    assert seen == [1]
    d.sm.remove_listener(d.sm._listeners[0])
    d.put(b"z")
    assert seen == [1]


def test_events_since() -> None:
    d = Driver()
    d.put(b"a", b"1")  # 2
    d.put(b"b", b"1")  # 3
    d.put(b"a", b"2")  # 4
    d.delete(b"a")  # 5
    d.put(b"ab", b"1")  # 6
    def ev(start: int, key: bytes, end: bytes = b"") -> list[tuple[int, bytes, int]]:
        return [(e.type, e.kv.key, e.kv.mod_revision) for e in d.sm.events_since(start, key, end)]
    assert ev(1, b"a") == [(PUT, b"a", 2), (PUT, b"a", 4), (DELETE, b"a", 5)]
    assert ev(4, b"a") == [(PUT, b"a", 4), (DELETE, b"a", 5)]
    assert ev(1, b"a", b"b") == [(PUT, b"a", 2), (PUT, b"a", 4), (DELETE, b"a", 5), (PUT, b"ab", 6)]
    assert ev(3, b"\0", b"\0") == [(PUT, b"b", 3), (PUT, b"a", 4), (DELETE, b"a", 5), (PUT, b"ab", 6)]
    assert ev(7, b"\0", b"\0") == [] and ev(100, b"a") == []
    (delete,) = d.sm.events_since(5, b"a", b"")
    assert delete.prev_kv.value == b"2" and delete.kv.value == b"" and delete.kv.version == 0
    d.ok(d.compact(4))
    with pytest.raises(Compacted) as info:
        d.sm.events_since(4, b"a", b"")
    assert info.value.compact_revision == 4 and info.value.code == Code.OUT_OF_RANGE
    assert ev(5, b"a", b"\0") == [(DELETE, b"a", 5), (PUT, b"ab", 6)]
    with pytest.raises(InvalidArgument):
        d.sm.events_since(5, b"", b"")


def test_snapshot_round_trip_keeps_everything() -> None:
    d = Driver()
    lease = d.grant().id
    d.put(b"a", b"1", lease=lease)
    d.put(b"a", b"2", lease=lease)
    d.put(b"b", b"1")
    d.delete(b"b")
    d.txn(success=[put_op(b"c"), put_op(b"d")])
    d.ok(d.compact(3))
    d.cmd("client", 4, put=kv_pb2.PutRequest(key=b"e"))
    data = d.sm.snapshot()
    r = StateMachine.restore(data)
    assert r.snapshot() == data
    assert (r.applied_index, r.revision, r.compact_revision) == (
        d.sm.applied_index, d.sm.revision, d.sm.compact_revision)
    for rev in range(3, d.sm.revision + 1):
        req = kv_pb2.RangeRequest(key=b"\0", range_end=b"\0", revision=rev)
        assert r.range(req) == d.sm.range(req)
    assert r.events_since(4, b"\0", b"\0") == d.sm.events_since(4, b"\0", b"\0")
    assert r.lease_info(lease) == d.sm.lease_info(lease)


def test_restore_rejects_bad_snapshots() -> None:
    with pytest.raises(SnapshotError):
        StateMachine.restore(b"\xff\xff")
    with pytest.raises(SnapshotError, match="format"):
        StateMachine.restore(command_pb2.StateSnapshot(format=2).SerializeToString())
    bad = command_pb2.StateSnapshot(format=1, revision=1)
    bad.history.keys.append(b"a")
    bad.history.counts.append(1)
    with pytest.raises(SnapshotError, match="columns"):
        StateMachine.restore(bad.SerializeToString())
    with pytest.raises(SnapshotError, match="inconsistent"):
        StateMachine.restore(command_pb2.StateSnapshot(format=1, revision=0).SerializeToString())
    d = Driver()
    lease = d.grant().id
    d.put(b"k", lease=lease)
    snap = command_pb2.StateSnapshot.FromString(d.sm.snapshot())
    del snap.leases[:]
    with pytest.raises(SnapshotError, match="lease"):
        StateMachine.restore(snap.SerializeToString())


def test_fresh_snapshot_is_stable() -> None:
    assert StateMachine().snapshot() == StateMachine.restore(StateMachine().snapshot()).snapshot()


def test_puts_at_compact_revision() -> None:
    """What etcd replays to a watch from exactly its compact revision: that revision's
    puts still kept, in apply order, without prev_kv; not its deletes."""
    d = Driver()
    d.put(b"a", b"1")  # 2
    d.put(b"b", b"1")  # 3
    d.ok(d.txn(success=[put_op(b"c", b"1"), put_op(b"b", b"2"), del_op(b"a")]))  # 4
    d.put(b"c", b"2")  # 5
    assert d.sm.puts_at_compact_revision(b"\0", b"\0") == []
    d.ok(d.compact(4))
    events = d.sm.puts_at_compact_revision(b"\0", b"\0")
    assert [(e.kv.key, e.kv.value, e.kv.mod_revision, e.HasField("prev_kv")) for e in events] == [
        (b"c", b"1", 4, False), (b"b", b"2", 4, False),
    ]
    assert [e.kv.key for e in d.sm.puts_at_compact_revision(b"b", b"")] == [b"b"]
    assert d.sm.puts_at_compact_revision(b"a", b"") == []
