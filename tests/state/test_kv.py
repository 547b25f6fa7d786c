"""Put, Range and DeleteRange as kv.proto describes them (etcd v3 semantics)."""

from __future__ import annotations

import grpc
import pytest

from coord.v1 import kv_pb2
from coord_server.errors import Code
from coord_server.state import Compacted, FutureRevision, InvalidArgument, StateMachine

from .driver import Driver

IA = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def d() -> Driver:
    return Driver()


def test_empty_store_has_revision_one(d: Driver) -> None:
    assert d.sm.revision == 1 and d.sm.compact_revision == 0 and d.sm.applied_index == 0
    resp = d.get(b"\0", b"\0")
    assert resp.count == 0 and resp.header.revision == 1


def test_put_versions_and_revisions(d: Driver) -> None:
    assert d.put(b"a", b"1").header.revision == 2
    assert d.put(b"b", b"x").header.revision == 3
    assert d.put(b"a", b"2").header.revision == 4
    (kv,) = d.get(b"a").kvs
    assert (kv.create_revision, kv.mod_revision, kv.version, kv.value) == (2, 4, 2, b"2")
    d.delete(b"a")
    d.put(b"a", b"3")
    (kv,) = d.get(b"a").kvs
    assert (kv.create_revision, kv.mod_revision, kv.version) == (6, 6, 1), "recreation resets"


def test_put_prev_kv(d: Driver) -> None:
    assert not d.put(b"a", b"1", prev_kv=True).HasField("prev_kv")
    resp = d.put(b"a", b"2", prev_kv=True)
    assert resp.prev_kv.value == b"1" and resp.prev_kv.version == 1
    assert not d.put(b"a", b"3").HasField("prev_kv"), "only when asked"


def test_put_empty_value_is_allowed(d: Driver) -> None:
    d.put(b"a", b"")
    assert d.get(b"a").kvs[0].version == 1


@pytest.mark.parametrize(
    "req",
    [
        kv_pb2.PutRequest(key=b""),
        kv_pb2.PutRequest(key=b"k" * 4097),
        kv_pb2.PutRequest(key=b"k", value=b"v", ignore_value=True),
        kv_pb2.PutRequest(key=b"k", lease=5, ignore_lease=True),
    ],
    ids=["empty key", "key over 4 KiB", "ignore_value with value", "ignore_lease with lease"],
)
def test_put_invalid(d: Driver, req: kv_pb2.PutRequest) -> None:
    d.put(b"k", b"v")
    assert d.code(d.cmd(put=req)) == IA
    assert d.sm.revision == 2


def test_key_of_exactly_4_kib_is_allowed(d: Driver) -> None:
    d.put(b"k" * 4096, b"v")


def test_ignore_value_and_ignore_lease_need_an_existing_key(d: Driver) -> None:
    assert d.code(d.cmd(put=kv_pb2.PutRequest(key=b"a", ignore_value=True))) == IA
    assert d.code(d.cmd(put=kv_pb2.PutRequest(key=b"a", value=b"v", ignore_lease=True))) == IA
    lease = d.grant().id
    d.put(b"a", b"1", lease=lease)
    d.put(b"a", ignore_value=True)  # detaches the lease, keeps the value
    (kv,) = d.get(b"a").kvs
    assert (kv.value, kv.lease, kv.version) == (b"1", 0, 2)
    d.put(b"a", ignore_value=True, lease=lease)
    d.put(b"a", b"2", ignore_lease=True)
    (kv,) = d.get(b"a").kvs
    assert (kv.value, kv.lease, kv.version) == (b"2", lease, 4)


def test_delete_range(d: Driver) -> None:
    for k in (b"a", b"ab", b"abc", b"b"):
        d.put(k, k)
    resp = d.delete(b"ab", b"b", prev_kv=True)
    assert resp.deleted == 2 and [kv.key for kv in resp.prev_kvs] == [b"ab", b"abc"]
    assert resp.header.revision == 6
    assert [kv.key for kv in d.get(b"\0", b"\0").kvs] == [b"a", b"b"]


def test_delete_of_nothing_changes_nothing(d: Driver) -> None:
    d.put(b"a")
    resp = d.delete(b"zz")
    assert resp.deleted == 0 and resp.header.revision == 2 and d.sm.revision == 2
    assert not d.delete(b"a").prev_kvs, "prev_kvs only when asked"
    assert d.delete(b"a").deleted == 0, "already deleted"


def test_delete_invalid(d: Driver) -> None:
    assert d.code(d.cmd(delete_range=kv_pb2.DeleteRangeRequest(key=b""))) == IA
    assert d.code(d.cmd(delete_range=kv_pb2.DeleteRangeRequest(key=b"a", range_end=b"z" * 4097))) == IA


@pytest.fixture
def abc(d: Driver) -> Driver:
    for k in (b"a", b"ab", b"abc", b"ac", b"b", b"\x00x", b"\xff"):
        d.put(k, k)
    return d


def keys_of(resp: kv_pb2.RangeResponse) -> list[bytes]:
    return [kv.key for kv in resp.kvs]


def test_range_end_rules(abc: Driver) -> None:
    d = abc
    assert keys_of(d.get(b"ab")) == [b"ab"]
    assert keys_of(d.get(b"zz")) == []
    assert keys_of(d.get(b"ab", b"ac")) == [b"ab", b"abc"], "prefix ab"
    assert keys_of(d.get(b"ab", b"\0")) == [b"ab", b"abc", b"ac", b"b", b"\xff"], "from ab on"
    assert keys_of(d.get(b"\0", b"\0")) == [b"\x00x", b"a", b"ab", b"abc", b"ac", b"b", b"\xff"]
    assert keys_of(d.get(b"b", b"a")) == [], "range_end below key"
    assert keys_of(d.get(b"b", b"b")) == [], "empty interval"


def test_range_limit_count_more(abc: Driver) -> None:
    resp = abc.get(b"a", b"b", limit=2)
    assert keys_of(resp) == [b"a", b"ab"] and resp.count == 4 and resp.more
    resp = abc.get(b"a", b"b", limit=4)
    assert resp.count == 4 and not resp.more
    resp = abc.get(b"a", b"b", count_only=True)
    assert resp.count == 4 and not resp.kvs
    resp = abc.get(b"a", b"b", keys_only=True)
    assert keys_of(resp) == [b"a", b"ab", b"abc", b"ac"] and all(kv.value == b"" for kv in resp.kvs)
    assert all(kv.version == 1 for kv in resp.kvs)


def test_range_sort(d: Driver) -> None:
    d.put(b"a", b"3")
    d.put(b"b", b"1")
    d.put(b"c", b"2")
    d.put(b"b", b"4")
    def sorted_keys(order: int, target: int, **kw: int) -> list[bytes]:
        return keys_of(d.get(b"\0", b"\0", sort_order=order, sort_target=target, **kw))
    A, D, U = kv_pb2.SORT_ORDER_ASCEND, kv_pb2.SORT_ORDER_DESCEND, kv_pb2.SORT_ORDER_UNSPECIFIED
    assert sorted_keys(D, kv_pb2.SORT_TARGET_KEY) == [b"c", b"b", b"a"]
    assert sorted_keys(A, kv_pb2.SORT_TARGET_UNSPECIFIED) == [b"a", b"b", b"c"]
    assert sorted_keys(D, kv_pb2.SORT_TARGET_UNSPECIFIED) == [b"c", b"b", b"a"]
    assert sorted_keys(A, kv_pb2.SORT_TARGET_VALUE) == [b"c", b"a", b"b"]
    assert sorted_keys(D, kv_pb2.SORT_TARGET_VALUE) == [b"b", b"a", b"c"]
    assert sorted_keys(A, kv_pb2.SORT_TARGET_MOD_REVISION) == [b"a", b"c", b"b"]
    assert sorted_keys(D, kv_pb2.SORT_TARGET_CREATE_REVISION) == [b"c", b"b", b"a"]
    assert sorted_keys(D, kv_pb2.SORT_TARGET_VERSION) == [b"b", b"a", b"c"], "ties keep key order"
    assert sorted_keys(A, kv_pb2.SORT_TARGET_VERSION) == [b"a", b"c", b"b"]
    assert sorted_keys(U, kv_pb2.SORT_TARGET_VALUE) == [b"a", b"b", b"c"], "no order: by key"
    assert sorted_keys(D, kv_pb2.SORT_TARGET_VALUE, limit=1) == [b"b"], "limit after sorting"


def test_range_revision_filters(d: Driver) -> None:
    d.put(b"a")  # 2
    d.put(b"b")  # 3
    d.put(b"c")  # 4
    d.put(b"a")  # 5: a mod 5, create 2
    assert keys_of(d.get(b"\0", b"\0", min_mod_revision=4)) == [b"a", b"c"]
    assert keys_of(d.get(b"\0", b"\0", max_mod_revision=3)) == [b"b"]
    assert keys_of(d.get(b"\0", b"\0", min_create_revision=3)) == [b"b", b"c"]
    assert keys_of(d.get(b"\0", b"\0", max_create_revision=2)) == [b"a"]
    resp = d.get(b"\0", b"\0", min_mod_revision=3, limit=1)
    assert resp.count == 3 and resp.more and keys_of(resp) == [b"a"], "count after filters"


def test_range_at_past_revisions(d: Driver) -> None:
    d.put(b"a", b"1")  # 2
    d.put(b"a", b"2")  # 3
    d.delete(b"a")  # 4
    d.put(b"a", b"3")  # 5
    assert [d.value(b"a", r) for r in (1, 2, 3, 4, 5)] == [None, b"1", b"2", None, b"3"]
    resp = d.get(b"a", revision=3)
    assert resp.header.revision == 5, "the header tells the current revision, as etcd"
    assert resp.kvs[0].mod_revision == 3


def test_range_errors(d: Driver) -> None:
    d.put(b"a")
    with pytest.raises(FutureRevision) as info:
        d.get(b"a", revision=3)
    assert info.value.code == Code.OUT_OF_RANGE
    for req in (
        kv_pb2.RangeRequest(key=b""),
        kv_pb2.RangeRequest(key=b"k" * 4097),
        kv_pb2.RangeRequest(key=b"a", limit=-1),
        kv_pb2.RangeRequest(key=b"a", sort_order=7),  # type: ignore[arg-type]
        kv_pb2.RangeRequest(key=b"a", sort_target=9),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidArgument):
            d.sm.range(req)


def test_range_negative_revision_means_current(d: Driver) -> None:
    d.put(b"a", b"1")
    assert d.value(b"a", -5) == b"1"


def test_compact(d: Driver) -> None:
    d.put(b"a", b"1")  # 2
    d.put(b"b", b"1")  # 3
    d.put(b"a", b"2")  # 4
    d.delete(b"b")  # 5
    d.put(b"c", b"1")  # 6
    resp = d.ok(d.compact(4))
    assert resp.header.revision == 6 and d.sm.compact_revision == 4 and d.sm.revision == 6
    with pytest.raises(Compacted) as info:
        d.get(b"a", revision=3)
    assert info.value.compact_revision == 4 and info.value.code == Code.OUT_OF_RANGE
    assert d.value(b"a", 4) == b"2", "the compact revision itself stays readable"
    assert d.value(b"b", 4) == b"1" and d.value(b"b", 5) is None
    assert keys_of(d.get(b"\0", b"\0")) == [b"a", b"c"], "current values are kept"
    d.ok(d.compact(6))
    assert keys_of(d.get(b"\0", b"\0", revision=6)) == [b"a", b"c"]
    assert d.sm._store.history_of(b"b") == [], "a deleted key's history is gone"
    assert len(d.sm._store.history_of(b"a")) == 1


def test_compact_out_of_range(d: Driver) -> None:
    d.put(b"a")
    d.put(b"a")
    OOR = grpc.StatusCode.OUT_OF_RANGE
    assert d.code(d.compact(4)) == OOR, "future"
    assert d.code(d.compact(0)) == OOR
    assert d.code(d.compact(-1)) == OOR
    d.ok(d.compact(2))
    assert d.code(d.compact(2)) == OOR, "at the last compaction"
    assert d.code(d.compact(1)) == OOR, "below it"
    d.ok(d.compact(3))


def test_compact_current_revision_then_write(d: Driver) -> None:
    d.put(b"a", b"1")
    d.put(b"a", b"2")
    d.ok(d.compact(3))
    d.put(b"a", b"3")
    assert [d.value(b"a", r) for r in (3, 4)] == [b"2", b"3"]
    events = d.sm.events_since(4, b"a", b"")
    assert [e.prev_kv.value for e in events] == [b"2"]


def test_many_keys_ranges_stay_sorted(d: Driver) -> None:
    import random

    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4))) for _ in range(300)]
    model: dict[bytes, bytes] = {}
    for i, k in enumerate(keys):
        d.put(k, b"%d" % i)
        model[k] = b"%d" % i
        if i % 37 == 0:
            assert keys_of(d.get(b"\0", b"\0")) == sorted(model)
    assert keys_of(d.get(b"\0", b"\0")) == sorted(model)


def test_state_machine_read_does_not_need_validation_elsewhere() -> None:
    sm = StateMachine()
    with pytest.raises(InvalidArgument):
        sm.range(kv_pb2.RangeRequest())
