"""The chaos checkers on hand-made histories, known linearizable or known not (fast, no
processes). A checker that cannot say "no" proves nothing, so every check here has a
failing twin."""

from __future__ import annotations

import itertools
import json
import random
import time

import pytest

from tests.chaos.checker import (
    WatchStream,
    check_linearizable,
    check_locks,
    check_registers,
    check_set,
    check_watches,
    remove_closed,
    shrink,
)
from tests.chaos.history import FAIL, OK, UNKNOWN, Op

_ids = itertools.count(1)


def op(f: str, start: float, end: float | None, value: object = None, output: object = None,
       outcome: str = OK, key: str = "k", process: str | None = None) -> Op:
    n = next(_ids)
    return Op(
        id=f"t/{n}", process=process or f"p{n}", workload="register", f=f, key=key, value=value,
        invoke=start, complete=end, outcome=outcome if end is not None or outcome != OK else UNKNOWN, output=output,
    )


def w(start: float, end: float | None, v: str, **kw: object) -> Op:
    return op("write", start, end, v, **kw)  # type: ignore[arg-type]


def r(start: float, end: float | None, v: str | None, **kw: object) -> Op:
    return op("read", start, end, None, v, **kw)  # type: ignore[arg-type]


def cas(start: float, end: float | None, expected: str, new: str, succeeded: bool | None,
        seen: str | None = None, **kw: object) -> Op:
    output = None if succeeded is None else [succeeded, seen]
    outcome = UNKNOWN if succeeded is None else OK
    return op("cas", start, end, [expected, new], output, outcome=outcome, **kw)  # type: ignore[arg-type]


def lin(*ops: Op) -> bool | None:
    return check_linearizable(list(ops)).ok


# ---------------------------------------------------------------- registers: known good


def test_empty_and_sequential_histories_are_linearizable() -> None:
    assert lin() is True
    assert lin(r(0, 1, None)) is True
    assert lin(w(0, 1, "a"), r(2, 3, "a"), w(4, 5, "b"), r(6, 7, "b")) is True


def test_concurrent_overlapping_writes_may_land_in_either_order() -> None:
    a, b = w(0, 10, "a"), w(1, 9, "b")
    assert lin(a, b, r(11, 12, "a"), r(13, 14, "a")) is True
    assert lin(a, b, r(11, 12, "b"), r(13, 14, "b")) is True
    # A read overlapping both writes may see either, or neither yet.
    assert lin(a, b, r(2, 3, None), r(11, 12, "b")) is True
    assert lin(a, b, r(2, 3, "a"), r(11, 12, "b")) is True


def test_read_concurrent_with_a_write_may_see_old_or_new() -> None:
    assert lin(w(0, 1, "a"), w(2, 10, "b"), r(3, 4, "a"), r(5, 6, "b")) is True
    assert lin(w(0, 1, "a"), w(2, 10, "b"), r(3, 4, "b"), r(11, 12, "b")) is True


def test_reads_of_unknown_writes_are_fine() -> None:
    lost = w(0, None, "x", outcome=UNKNOWN)
    assert lin(lost, r(5, 6, "x")) is True
    assert lin(lost, r(1, 2, None), r(5, 6, "x")) is True
    assert lin(lost, r(100, 101, None)) is True  # it may never have happened


def test_an_unknown_write_never_observed_is_dropped_but_one_observed_is_kept() -> None:
    ops = [w(0, None, f"u{i}", outcome=UNKNOWN) for i in range(200)] + [r(1000, 1001, None)]
    started = time.monotonic()
    assert lin(*ops) is True
    assert time.monotonic() - started < 1.0


def test_cas_semantics() -> None:
    assert lin(w(0, 1, "a"), cas(2, 3, "a", "b", True), r(4, 5, "b")) is True
    assert lin(w(0, 1, "a"), cas(2, 3, "z", "b", False, seen="a"), r(4, 5, "a")) is True
    # A cas on a missing key fails, and sees nothing.
    assert lin(cas(0, 1, "a", "b", False, seen=None)) is True
    # A cas whose outcome is unknown but whose value was read: it succeeded.
    assert lin(w(0, 1, "a"), cas(2, None, "a", "b", None), r(5, 6, "b")) is True


def test_failed_write_and_failed_read_are_ignored_when_unobserved() -> None:
    assert lin(w(0, 1, "a"), w(2, 3, "b", outcome=FAIL), r(4, 5, "a")) is True
    assert lin(w(0, 1, "a"), r(2, 3, "zzz", outcome=FAIL)) is True


# ---------------------------------------------------------------- registers: known bad


def test_stale_read_after_a_write_completed() -> None:
    assert lin(w(0, 1, "a"), w(2, 3, "b"), r(4, 5, "a")) is False
    assert lin(w(0, 1, "a"), r(2, 3, None)) is False


def test_two_reads_after_two_concurrent_writes_must_agree() -> None:
    a, b = w(0, 10, "a"), w(1, 9, "b")
    assert lin(a, b, r(11, 12, "a"), r(13, 14, "b")) is False
    assert lin(a, b, r(11, 12, "b"), r(13, 14, "a")) is False


def test_new_then_old_read_during_a_write_is_not_linearizable() -> None:
    assert lin(w(0, 1, "a"), w(2, 10, "b"), r(3, 4, "b"), r(5, 6, "a")) is False


def test_unknown_write_once_seen_cannot_be_unseen() -> None:
    lost = w(0, None, "x", outcome=UNKNOWN)
    assert lin(lost, r(5, 6, "x"), r(7, 8, None)) is False


def test_reading_a_value_never_written_or_certainly_failed() -> None:
    assert lin(r(0, 1, "ghost")) is False
    assert lin(w(0, 1, "a", outcome=FAIL), r(2, 3, "a")) is False


def test_two_successful_cas_from_the_same_value() -> None:
    assert lin(w(0, 1, "a"), cas(2, 5, "a", "b", True), cas(2, 5, "a", "c", True)) is False
    assert lin(w(0, 1, "a"), cas(2, 3, "z", "b", False, seen=None)) is False  # it saw a missing key
    assert lin(w(0, 1, "a"), cas(2, 3, "a", "b", False, seen="a")) is False  # a failed cas saw its expected value
    # An unknown cas whose value was observed had to succeed, but it could not.
    assert lin(w(0, 1, "z"), cas(2, None, "a", "b", None), r(5, 6, "b")) is False


def test_keys_are_independent() -> None:
    ops = [w(0, 1, "a", key="x"), w(0, 1, "b", key="y"), r(2, 3, "a", key="x"), r(2, 3, "b", key="y")]
    assert check_registers(ops).valid is True
    ops.append(r(4, 5, "a", key="y"))
    res = check_registers(ops)
    assert res.valid is False and "key y" in res.errors[0]


# ---------------------------------------------------------------- generated histories


def _simulate(rng: random.Random, n_ops: int, processes: int, unknown_rate: float = 0.05) -> list[Op]:
    """A history of a real atomic register: each operation takes effect at a random point
    inside its interval."""
    state: str | None = None
    pending: list[tuple[float, Op, float]] = []
    ops: list[Op] = []
    clock = 0.0
    free_at = [0.0] * processes
    counter = 0
    effects = []
    for _ in range(n_ops):
        p = min(range(processes), key=lambda i: free_at[i])
        start = free_at[p] + rng.random()
        end = start + rng.random() * 3
        at = rng.uniform(start, end)
        counter += 1
        kind = rng.random()
        if kind < 0.4:
            o = r(start, end, None, process=f"p{p}")
        elif kind < 0.8:
            o = w(start, end, f"v{counter}", process=f"p{p}")
        else:
            o = cas(start, end, "", f"v{counter}", True, process=f"p{p}")
        effects.append((at, o))
        free_at[p] = end
        ops.append(o)
        clock = max(clock, end)
    for at, o in sorted(effects, key=lambda e: e[0]):
        if o.f == "read":
            o.output = state
        elif o.f == "write":
            state = o.value
        else:
            # Expect the current value half the time (succeeds) or a stale one (fails).
            if state is not None and rng.random() < 0.5:
                o.value = [state, o.value[1]]
                o.output = [True, None]
                state = o.value[1]
            else:
                o.value = ["nope", o.value[1]]
                o.output = [False, state]
    for o in ops:
        if o.f != "read" and rng.random() < unknown_rate:
            o.outcome, o.complete, o.output = UNKNOWN, None, None
    del pending
    return ops


@pytest.mark.parametrize("seed", range(20))
def test_simulated_atomic_register_histories_are_linearizable(seed: int) -> None:
    ops = _simulate(random.Random(seed), 300, 6)
    assert check_linearizable(ops).ok is True


@pytest.mark.parametrize("seed", range(10))
def test_a_stale_read_planted_in_a_simulated_history_is_found_and_shrunk(seed: int) -> None:
    rng = random.Random(1000 + seed)
    ops = _simulate(rng, 200, 5, unknown_rate=0.0)
    writes = [o for o in ops if o.f == "write"]
    # Plant a read, long after everything, of a value overwritten long ago.
    first = writes[0]
    last_end = max(o.end for o in ops)
    ops.append(r(last_end + 10, last_end + 11, first.value))
    res = check_registers(ops, shrink_time=20)
    assert res.valid is False
    assert 2 <= len(res.witness) <= 5, "\n".join(o.describe() for o in res.witness)
    assert check_linearizable(res.witness).ok is False


def test_checker_speed_on_a_long_history() -> None:
    ops = _simulate(random.Random(7), 5000, 10)
    started = time.monotonic()
    assert check_linearizable(ops).ok is True
    assert time.monotonic() - started < 20


# ---------------------------------------------------------------- shrinking


def test_remove_closed_drops_readers_of_removed_writes() -> None:
    a, b = w(0, 1, "a"), w(2, 3, "b")
    ra, rb = r(4, 5, "a"), r(4, 5, "b")
    c = cas(6, 7, "b", "c", True)
    rc = r(8, 9, "c")
    kept = remove_closed([a, b, ra, rb, c, rc], {b.id})
    assert [o.id for o in kept] == [a.id, ra.id]


def test_shrink_finds_the_core_of_a_violation() -> None:
    noise = [w(i * 10, i * 10 + 1, f"n{i}") for i in range(30)] + [r(i * 10 + 2, i * 10 + 3, f"n{i}") for i in range(30)]
    core = [w(1000, 1001, "a"), w(1002, 1003, "b"), r(1004, 1005, "a")]
    small = shrink(noise + core, lambda h: check_linearizable(h).ok is False)
    assert sorted(o.id for o in small) == sorted(o.id for o in core)


# ---------------------------------------------------------------- set


def _set_op(f: str, start: float, end: float | None, value: object = None, output: object = None, outcome: str = OK) -> Op:
    o = op(f, start, end, value, output, outcome=outcome, key="")
    o.workload = "set"
    return o


def test_set_checker() -> None:
    adds = [_set_op("add", 0, 1, "a"), _set_op("add", 0, 1, "b"), _set_op("add", 0, None, "c", outcome=UNKNOWN)]
    reads = [_set_op("read", 2, 3, output=["a", "b"]), _set_op("read", 4, 5, output=["a", "b", "c"])]
    assert check_set(adds + reads, {"a", "b", "c"}).valid is True
    assert check_set(adds + reads, {"a", "b"}).valid is True  # the unknown add may be lost... but it was read:
    # ...a read saw "c", a later final read does not: the final read is checked against acked adds
    # only, the reads among themselves; both are fine here because "c" was never acknowledged.
    lost = check_set(adds + reads, {"a"})
    assert lost.valid is False and "misses 1 acknowledged" in lost.errors[0]
    shrinking = adds + [_set_op("read", 2, 3, output=["a", "b", "c"]), _set_op("read", 4, 5, output=["a", "b"])]
    res = check_set(shrinking, {"a", "b", "c"})
    assert res.valid is False and "lost 1 elements an earlier read saw" in res.errors[0]
    stale = adds + [_set_op("read", 2, 3, output=["a"])]
    assert check_set(stale, {"a", "b"}).valid is False
    ghost = check_set(adds, {"a", "b", "zzz"})
    assert ghost.valid is False and "never added" in ghost.errors[0]
    failed = [_set_op("add", 0, 1, "d", outcome=FAIL)]
    assert check_set(adds + failed, {"a", "b", "d"}).valid is False


# ---------------------------------------------------------------- locks


def _lock_op(f: str, start: float, end: float | None, value: object, output: object, outcome: str = OK) -> Op:
    o = op(f, start, end, value, output, outcome=outcome, key="lock")
    o.workload = "lock"
    return o


def _fenced(start: float, end: float | None, token: int, n: int, opid: str, output: object, outcome: str = OK) -> Op:
    return _lock_op("fenced", start, end, {"t": token, "op": opid, "n": n}, output, outcome)


def _entry(token: int, n: int, opid: str) -> str:
    return json.dumps({"t": token, "op": opid, "n": n})


def test_lock_checker_accepts_a_clean_history() -> None:
    ops = [
        _lock_op("acquire", 0, 1, 100, 10), _fenced(1, 2, 10, 1, "f1", [True, 5]), _lock_op("release", 2, 3, 10, None),
        _lock_op("acquire", 0, 4, 200, 20), _fenced(4, 5, 20, 2, "f2", [True, 6]),
        _fenced(3, 6, 10, 2, "f3", [False, 0]),  # stale holder, rejected
    ]
    log = [(5, _entry(10, 1, "f1")), (6, _entry(20, 2, "f2"))]
    res = check_locks(ops, log)
    assert res.valid is True, res.errors


def test_lock_checker_catches_each_violation() -> None:
    base = [_lock_op("acquire", 0, 1, 100, 10), _lock_op("acquire", 0, 4, 200, 20)]
    # Two leases with one token.
    assert check_locks([_lock_op("acquire", 0, 1, 1, 7), _lock_op("acquire", 2, 3, 2, 7)], []).valid is False
    # A later grant with a lower token.
    assert check_locks([_lock_op("acquire", 0, 1, 1, 9), _lock_op("acquire", 2, 3, 2, 8)], []).valid is False
    # Interleaved holders: token goes back in the log.
    ops = base + [_fenced(1, 2, 10, 1, "a", [True, 5]), _fenced(4, 5, 20, 2, "b", [True, 6]), _fenced(5, 7, 10, 3, "c", [True, 7])]
    log = [(5, _entry(10, 1, "a")), (6, _entry(20, 2, "b")), (7, _entry(10, 3, "c"))]
    res = check_locks(ops, log)
    assert res.valid is False and any("after a write with token 20" in e for e in res.errors)
    # Lost update: the counter does not go up by one.
    ops = base + [_fenced(1, 2, 10, 1, "a", [True, 5]), _fenced(4, 5, 20, 1, "b", [True, 6])]
    res = check_locks(ops, [(5, _entry(10, 1, "a")), (6, _entry(20, 1, "b"))])
    assert res.valid is False and any("interleaved" in e for e in res.errors)
    # A stale write that took effect after the newer grant was acknowledged.
    ops = base + [_fenced(5, 6, 10, 1, "a", [True, 5])]
    res = check_locks(ops, [(5, _entry(10, 1, "a"))])
    assert res.valid is False and any("granted" in e for e in res.errors)
    # An acknowledged write missing from the log; a rejected one in it.
    ops = base + [_fenced(1, 2, 10, 1, "a", [True, 5]), _fenced(1, 2, 10, 2, "b", [False, 0])]
    res = check_locks(ops, [(6, _entry(10, 2, "b"))])
    assert res.valid is False and any("lost" in e for e in res.errors) and any("rejected but took effect" in e for e in res.errors)


# ---------------------------------------------------------------- watches


def test_watch_checker() -> None:
    replay = [(5, "PUT", "a", "1"), (6, "PUT", "b", "1"), (6, "PUT", "c", "1"), (7, "DELETE", "a", "")]
    good = WatchStream("w1", 5, [[replay[0]], [replay[1], replay[2]], [replay[3]]])
    partial = WatchStream("w2", 6, [[replay[1], replay[2]]])
    assert check_watches([good, partial], replay, [(5, "a", "1")]).valid is True
    dup = WatchStream("w3", 5, [[replay[0]], [replay[0]], [replay[1], replay[2]]])
    assert check_watches([dup], replay).valid is False
    gap = WatchStream("w4", 5, [[replay[0]], [replay[3]]])
    assert check_watches([gap], replay).valid is False
    reordered = WatchStream("w5", 5, [[replay[1], replay[2]], [replay[0]]])
    assert check_watches([reordered], replay).valid is False
    split = WatchStream("w6", 5, [[replay[0]], [replay[1]], [replay[2]]])
    assert check_watches([split], replay).valid is False
    assert check_watches([good], replay, [(5, "a", "2")]).valid is False  # the replay lost an acked write
