"""Txn: comparisons, branches, nesting, atomicity, one revision, and its limits."""

from __future__ import annotations

import grpc
import pytest

from coord.v1 import common_pb2, kv_pb2
from coord_server.state import StateMachine

from .driver import Driver, cmp, del_op, put_op, range_op, txn_op

IA = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def d() -> Driver:
    d = Driver()
    d.put(b"a", b"m")  # 2: a create 2 mod 2 version 1
    d.put(b"b", b"x")  # 3
    d.put(b"b", b"y")  # 4: b create 3 mod 4 version 2
    return d


def holds(d: Driver, *compares: kv_pb2.Compare) -> bool:
    return bool(d.ok(d.txn(compare=list(compares))).succeeded)


@pytest.mark.parametrize(
    "compare, expected",
    [
        (cmp("VERSION", "EQUAL", b"b", version=2), True),
        (cmp("VERSION", "GREATER", b"b", version=1), True),
        (cmp("VERSION", "LESS", b"b", version=2), False),
        (cmp("VERSION", "NOT_EQUAL", b"b", version=2), False),
        (cmp("VERSION", "EQUAL", b"zz", version=0), True),
        (cmp("CREATE_REVISION", "EQUAL", b"b", create_revision=3), True),
        (cmp("CREATE_REVISION", "EQUAL", b"zz", create_revision=0), True),
        (cmp("MOD_REVISION", "EQUAL", b"b", mod_revision=4), True),
        (cmp("MOD_REVISION", "LESS", b"a", mod_revision=3), True),
        (cmp("VALUE", "EQUAL", b"a", value=b"m"), True),
        (cmp("VALUE", "GREATER", b"a", value=b"l"), True),
        (cmp("VALUE", "LESS", b"a", value=b"mm"), True),
        (cmp("VALUE", "NOT_EQUAL", b"a", value=b"m"), False),
        (cmp("VALUE", "NOT_EQUAL", b"zz", value=b"m"), False),
        (cmp("VALUE", "EQUAL", b"zz", value=b""), False),
        (cmp("LEASE", "EQUAL", b"a", lease=0), True),
        (cmp("LEASE", "EQUAL", b"zz", lease=0), True),
        (cmp("LEASE", "GREATER", b"a", lease=0), False),
    ],
    ids=lambda v: str(v).replace("\n", " ") if not isinstance(v, bool) else str(v),
)
def test_compare(d: Driver, compare: kv_pb2.Compare, expected: bool) -> None:
    assert holds(d, compare) is expected


def test_compare_over_a_range(d: Driver) -> None:
    ranged = cmp("VERSION", "GREATER", b"a", version=0)
    ranged.range_end = b"c"
    assert holds(d, ranged)
    ranged.version = 1
    assert not holds(d, ranged), "a has version 1"
    empty = cmp("VERSION", "EQUAL", b"x", version=0)
    empty.range_end = b"y"
    assert holds(d, empty), "an empty range compares as a missing key"
    value = cmp("VALUE", "EQUAL", b"x", value=b"")
    value.range_end = b"y"
    assert not holds(d, value)
    everything = cmp("MOD_REVISION", "LESS", b"\0", mod_revision=5)
    everything.range_end = b"\0"
    assert holds(d, everything)


def test_compare_with_a_lease(d: Driver) -> None:
    lease = d.grant().id
    d.put(b"l", b"", lease=lease)
    assert holds(d, cmp("LEASE", "EQUAL", b"l", lease=lease))


def test_all_compares_must_hold(d: Driver) -> None:
    yes = cmp("VALUE", "EQUAL", b"a", value=b"m")
    no = cmp("VALUE", "EQUAL", b"a", value=b"n")
    assert holds(d, yes, yes) and not holds(d, yes, no) and holds(d)


def test_branches_and_one_revision(d: Driver) -> None:
    guard = cmp("VALUE", "EQUAL", b"a", value=b"m")
    res = d.ok(d.txn([guard], success=[put_op(b"c", b"1"), put_op(b"d", b"2"), del_op(b"b")],
                     failure=[put_op(b"e", b"3")]))
    assert res.succeeded and res.header.revision == 5 and d.sm.revision == 5
    assert [r.WhichOneof("response") for r in res.responses] == [
        "response_put", "response_put", "response_delete_range"]
    assert all(getattr(r, r.WhichOneof("response")).header.revision == 5 for r in res.responses)
    for k in (b"c", b"d"):
        assert d.get(k).kvs[0].mod_revision == 5
    events = d.sm.events_since(5, b"\0", b"\0")
    PUT, DELETE = common_pb2.EVENT_TYPE_PUT, common_pb2.EVENT_TYPE_DELETE
    assert [(e.type, e.kv.key) for e in events] == [(PUT, b"c"), (PUT, b"d"), (DELETE, b"b")], (
        "events of one revision come in operation order")
    res = d.ok(d.txn([guard], success=[put_op(b"c", b"1")], failure=[put_op(b"e", b"3")]))
    assert res.succeeded
    res = d.ok(d.txn([cmp("VALUE", "EQUAL", b"a", value=b"zz")], success=[put_op(b"c")],
                     failure=[put_op(b"e", b"3")]))
    assert not res.succeeded and d.value(b"e") == b"3" and d.value(b"c") == b"1"


def test_read_only_txn_keeps_the_revision(d: Driver) -> None:
    res = d.ok(d.txn(success=[range_op(b"a")]))
    assert res.header.revision == 4 and d.sm.revision == 4
    assert res.responses[0].response_range.kvs[0].value == b"m"
    assert res.responses[0].response_range.header.revision == 4
    res = d.ok(d.txn(success=[del_op(b"zz")]))
    assert res.header.revision == 4, "deleting nothing writes nothing"


def test_ranges_see_earlier_writes_of_the_txn(d: Driver) -> None:
    res = d.ok(d.txn(success=[range_op(b"a", b"z"), put_op(b"c", b"1"), del_op(b"a"),
                              range_op(b"a", b"z"), range_op(b"a", b"z", revision=4)]))
    before, after, past = (res.responses[i].response_range for i in (0, 3, 4))
    assert [kv.key for kv in before.kvs] == [b"a", b"b"]
    assert [kv.key for kv in after.kvs] == [b"b", b"c"]
    assert [kv.key for kv in past.kvs] == [b"a", b"b"], "a past revision ignores the txn's writes"


def test_nested_txn_sees_the_branch_so_far(d: Driver) -> None:
    inner = txn_op([cmp("VALUE", "EQUAL", b"c", value=b"new")], success=[put_op(b"d", b"yes")],
                   failure=[put_op(b"d", b"no")])
    res = d.ok(d.txn(success=[put_op(b"c", b"new"), inner]))
    assert d.value(b"d") == b"yes"
    nested = res.responses[1].response_txn
    assert nested.succeeded and nested.header.revision == 5
    assert nested.responses[0].response_put.header.revision == 5


def test_failed_operation_rolls_back_the_whole_txn(d: Driver) -> None:
    before = d.sm.snapshot()
    res = d.txn(success=[put_op(b"new", b"1"), put_op(b"a", b"2"), put_op(b"x", lease=99)])
    assert d.code(res) == grpc.StatusCode.NOT_FOUND
    res = d.txn(success=[put_op(b"new", b"1"), del_op(b"a"), range_op(b"a", revision=99)])
    assert d.code(res) == grpc.StatusCode.OUT_OF_RANGE
    res = d.txn(success=[put_op(b"new", b"1"), put_op(b"zz", ignore_value=True)])
    assert d.code(res) == IA
    nested_bad = txn_op(success=[put_op(b"y", lease=7)])
    assert d.code(d.txn(success=[put_op(b"new"), nested_bad])) == grpc.StatusCode.NOT_FOUND
    after = d.sm.snapshot()
    # Only applied_index differs; compare everything else through the public reads.
    assert d.sm.revision == 4
    assert [kv.key for kv in d.get(b"\0", b"\0").kvs] == [b"a", b"b"]
    assert d.sm.events_since(5, b"\0", b"\0") == []
    assert before != after  # applied_index moved on
    fresh = Driver()
    fresh.put(b"a", b"m"); fresh.put(b"b", b"x"); fresh.put(b"b", b"y")
    for _ in range(4):
        fresh.sm.apply(fresh.index + 1, b"")
    assert fresh.sm.snapshot() == after


def test_failed_txn_on_a_new_key_then_ranges_still_work(d: Driver) -> None:
    d.txn(success=[put_op(b"aa"), range_op(b"a", b"z"), put_op(b"zz", lease=5)])
    assert [kv.key for kv in d.get(b"\0", b"\0").kvs] == [b"a", b"b"]
    d.put(b"aa")
    assert [kv.key for kv in d.get(b"\0", b"\0").kvs] == [b"a", b"aa", b"b"]


@pytest.mark.parametrize(
    "success",
    [
        [put_op(b"k"), put_op(b"k")],
        [del_op(b"a", b"z"), put_op(b"k")],
        [put_op(b"k"), del_op(b"k")],
        [put_op(b"k"), txn_op(success=[put_op(b"k")])],
        [txn_op(success=[put_op(b"k")]), put_op(b"k")],
        [txn_op(success=[del_op(b"k")]), put_op(b"k")],
        [del_op(b"a", b"\0"), txn_op(failure=[put_op(b"k")])],
        [txn_op(success=[put_op(b"k")]), txn_op(failure=[put_op(b"k")])],
    ],
    ids=["put twice", "put in deleted range", "delete after put", "nested put after put",
         "put after nested put", "put after nested delete", "nested put in deleted range",
         "two nested txns"],
)
def test_same_key_written_twice_is_invalid(d: Driver, success: list[kv_pb2.RequestOp]) -> None:
    assert d.code(d.txn(success=success)) == IA
    assert d.sm.revision == 4


@pytest.mark.parametrize(
    "success",
    [
        [txn_op(success=[put_op(b"k")], failure=[put_op(b"k")])],
        [del_op(b"a", b"z"), del_op(b"k")],
        [put_op(b"k"), put_op(b"k\0")],
    ],
    ids=["both branches of one txn", "overlapping deletes", "neighbour keys"],
)
def test_writes_that_are_not_duplicates(d: Driver, success: list[kv_pb2.RequestOp]) -> None:
    d.ok(d.txn(success=success))


def test_the_two_branches_may_write_the_same_key(d: Driver) -> None:
    d.ok(d.txn(success=[put_op(b"k")], failure=[put_op(b"k")]))


def test_operation_limit(d: Driver) -> None:
    d.ok(d.txn(success=[put_op(b"k%d" % i) for i in range(128)]))
    assert d.code(d.txn(success=[put_op(b"k%d" % i) for i in range(129)])) == IA
    nested = [txn_op(success=[range_op(b"a")] * 63)] * 2  # 2 + 126 = 128
    d.ok(d.txn(success=nested))
    assert d.code(d.txn(success=nested, failure=[range_op(b"a")])) == IA, "both branches count"
    d.ok(d.txn(compare=[cmp("VERSION", "EQUAL", b"a", version=1)] * 128))
    assert d.code(d.txn(compare=[cmp("VERSION", "EQUAL", b"a", version=1)] * 129)) == IA


@pytest.mark.parametrize(
    "compare",
    [
        kv_pb2.Compare(key=b"a", target=kv_pb2.COMPARE_TARGET_VERSION, version=1),
        kv_pb2.Compare(key=b"a", result=kv_pb2.COMPARE_RESULT_EQUAL, version=1),
        kv_pb2.Compare(key=b"a", result=9, target=kv_pb2.COMPARE_TARGET_VERSION, version=1),  # type: ignore[arg-type]
        kv_pb2.Compare(key=b"a", result=kv_pb2.COMPARE_RESULT_EQUAL, target=9, version=1),  # type: ignore[arg-type]
        kv_pb2.Compare(key=b"a", result=kv_pb2.COMPARE_RESULT_EQUAL, target=kv_pb2.COMPARE_TARGET_VERSION),
        kv_pb2.Compare(key=b"a", result=kv_pb2.COMPARE_RESULT_EQUAL, target=kv_pb2.COMPARE_TARGET_VALUE, version=1),
        kv_pb2.Compare(key=b"", result=kv_pb2.COMPARE_RESULT_EQUAL, target=kv_pb2.COMPARE_TARGET_VERSION, version=1),
        kv_pb2.Compare(key=b"a", result=kv_pb2.COMPARE_RESULT_EQUAL, target=kv_pb2.COMPARE_TARGET_LOCK_TOKEN, lock_name="l", lock_token=1),
        kv_pb2.Compare(result=kv_pb2.COMPARE_RESULT_EQUAL, target=kv_pb2.COMPARE_TARGET_LOCK_TOKEN, lock_token=1),
        kv_pb2.Compare(key=b"a", lock_name="l", result=kv_pb2.COMPARE_RESULT_EQUAL, target=kv_pb2.COMPARE_TARGET_VERSION, version=1),
    ],
    ids=["no result", "no target", "unknown result", "unknown target", "no value",
         "wrong union member", "empty key", "lock with key", "lock without name",
         "lock name on a key target"],
)
def test_invalid_compare(d: Driver, compare: kv_pb2.Compare) -> None:
    assert d.code(d.txn(compare=[compare])) == IA


def test_invalid_ops(d: Driver) -> None:
    assert d.code(d.txn(success=[kv_pb2.RequestOp()])) == IA
    assert d.code(d.txn(success=[put_op(b"")])) == IA
    assert d.code(d.txn(failure=[range_op(b"a", limit=-1)])) == IA, "both branches are checked"
    assert d.code(d.txn(success=[txn_op(success=[del_op(b"")])])) == IA


def lock_cmp(result: str, token: int) -> kv_pb2.Compare:
    return kv_pb2.Compare(target=kv_pb2.COMPARE_TARGET_LOCK_TOKEN,
                          result=getattr(kv_pb2, "COMPARE_RESULT_" + result),
                          lock_name="mylock", lock_token=token)


def test_lock_token_compare_with_no_locks(d: Driver) -> None:
    assert not holds(d, lock_cmp("EQUAL", 5)), "no lock is held yet"
    assert holds(d, lock_cmp("NOT_EQUAL", 5))
    assert holds(d, lock_cmp("LESS", 1)), "a free lock compares as token 0"
    assert not holds(d, lock_cmp("GREATER", 0))


def test_lock_token_compare_reads_the_hook() -> None:
    class WithLocks(StateMachine):
        def lock_tokens(self, name: str) -> set[int]:
            return {7, 9} if name == "mylock" else set()

    d = Driver(WithLocks())
    assert holds(d, lock_cmp("EQUAL", 7)) and holds(d, lock_cmp("EQUAL", 9))
    assert not holds(d, lock_cmp("EQUAL", 8)) and holds(d, lock_cmp("NOT_EQUAL", 8))
    assert holds(d, lock_cmp("GREATER", 8)) and not holds(d, lock_cmp("GREATER", 9))
    assert holds(d, lock_cmp("LESS", 10))
    res = d.ok(d.txn([lock_cmp("EQUAL", 7)], success=[put_op(b"fenced", b"ok")]))
    assert res.succeeded and d.value(b"fenced") == b"ok"


def test_count_only_sees_the_txns_own_writes() -> None:
    """The key index counts committed writes only: a count inside a Txn that wrote must
    not use it (it missed a key put again after its deletion, and a key just deleted;
    found by the differential tests against etcd)."""
    d = Driver()
    d.put(b"c", b"1")
    d.put(b"e", b"1")
    d.delete(b"e")
    count = range_op(b"c", b"\x00", count_only=True)
    r = d.ok(d.txn(success=[put_op(b"e", b"2"), count, del_op(b"c"), count])).responses
    assert (r[1].response_range.count, r[3].response_range.count) == (2, 1)
    assert d.get(b"c", b"\x00", count_only=True).count == 1
