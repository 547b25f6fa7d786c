"""Locks and semaphores in the state machine: grants, the FIFO queue, tokens, releases,
lease ends, cancels, the Txn LOCK_TOKEN compare, snapshots, and a model check."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coord.raft.v1 import command_pb2
from coord.v1 import lock_pb2
from coord_server.state import StateMachine
from coord_server.state.elections import LeaderChange
from coord_server.state.locks import LockGrant, LockWaitEnd

from .driver import Driver, cmp, put_op

IA, NF, FP = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
              grpc.StatusCode.FAILED_PRECONDITION)


class LockDriver(Driver):
    def __init__(self, sm: StateMachine | None = None) -> None:
        super().__init__(sm)
        self.events: list[tuple[int, object]] = []
        self.sm.add_coordination_listener(lambda index, evs: self.events.extend((index, e) for e in evs))

    def acquire(self, name: str, lease: int, **kw: Any) -> command_pb2.CommandResult:
        return self.cmd(lock_acquire=lock_pb2.LockAcquireRequest(name=name, lease=lease, **kw))

    def got(self, name: str, lease: int, **kw: Any) -> command_pb2.LockAcquireResult:
        result: command_pb2.LockAcquireResult = self.ok(self.acquire(name, lease, **kw))
        return result

    def release(self, name: str, token: int) -> command_pb2.CommandResult:
        return self.cmd(lock_release=lock_pb2.LockReleaseRequest(name=name, token=token))

    def cancel(self, name: str, lease: int, queued_at: int = 0) -> bool:
        r = self.ok(self.cmd(lock_cancel=command_pb2.WaitCancel(name=name, lease=lease, queued_at=queued_at)))
        return bool(r.removed)

    def holders(self, name: str) -> list[tuple[int, int]]:
        return [(h.lease, h.token) for h in self.sm.lock_inspect(name).holders]

    def waiters(self, name: str) -> list[int]:
        return [w.lease for w in self.sm.lock_inspect(name).waiters]


@pytest.fixture
def d() -> LockDriver:
    drv = LockDriver()
    for lease in (1, 2, 3, 4):
        drv.grant(ttl=10, lease_id=lease)  # indexes 1-4
    return drv


def test_free_lock_is_granted_at_once_with_the_log_index_as_token(d: LockDriver) -> None:
    r = d.got("L", 1, owner="me")
    assert r.response.acquired and r.response.token == 5 == d.index and r.queued_at == 0
    assert r.response.header.revision == d.sm.revision == 1, "a lock does not change the revision"
    info = d.sm.lock_inspect("L")
    assert info.permits == 1 and [(h.token, h.lease, h.owner) for h in info.holders] == [(5, 1, "me")]
    assert d.events == [(5, LockGrant("L", 1, 5))]


def test_queue_is_fifo_and_release_grants_the_next_in_the_same_entry(d: LockDriver) -> None:
    t1 = d.got("L", 1).response.token
    q2 = d.got("L", 2)
    q3 = d.got("L", 3)
    assert not q2.response.acquired and q2.queued_at == 6 and q3.queued_at == 7
    assert d.waiters("L") == [2, 3]
    d.events.clear()
    d.ok(d.release("L", t1))  # index 8
    assert d.holders("L") == [(2, 8)] and d.waiters("L") == [3]
    assert d.events == [(8, LockGrant("L", 2, 8))], "only the next waiter is told"
    d.ok(d.release("L", 8))
    assert d.holders("L") == [(3, 9)]
    d.ok(d.release("L", 9))
    assert d.sm.lock_inspect("L") == lock_pb2.LockInspectResponse(header=d.sm.lock_inspect("L").header)


def test_reacquire_returns_the_existing_grant_and_keeps_the_place(d: LockDriver) -> None:
    t = d.got("L", 1).response.token
    again = d.got("L", 1)
    assert again.response.acquired and again.response.token == t
    q = d.got("L", 2).queued_at
    assert d.got("L", 2).queued_at == q
    assert d.waiters("L") == [2]
    nw = d.got("L", 2, no_wait=True)
    assert not nw.response.acquired and nw.queued_at == 0 and d.waiters("L") == [2]


def test_no_wait_answers_at_once_and_queues_nothing(d: LockDriver) -> None:
    d.got("L", 1)
    r = d.got("L", 2, no_wait=True)
    assert not r.response.acquired and r.response.token == 0 and r.queued_at == 0
    assert d.waiters("L") == []
    assert d.got("M", 2, no_wait=True).response.acquired


def test_release_with_a_wrong_token_changes_nothing(d: LockDriver) -> None:
    t = d.got("L", 1).response.token
    d.got("L", 2)
    before = d.sm.snapshot()
    for name, token in (("L", t + 100), ("L", t - 1), ("nope", t)):
        assert d.code(d.release(name, token)) == FP
    after = d.sm.snapshot()
    assert StateMachine.restore(before).lock_inspect("L") == StateMachine.restore(after).lock_inspect("L")
    d.ok(d.release("L", t))
    assert d.code(d.release("L", t)) == FP, "a token released once is stale"


@pytest.mark.parametrize(
    "req, code",
    [
        (lock_pb2.LockAcquireRequest(name="", lease=1), IA),
        (lock_pb2.LockAcquireRequest(name="x" * 4097, lease=1), IA),
        (lock_pb2.LockAcquireRequest(name="L", lease=0), IA),
        (lock_pb2.LockAcquireRequest(name="L", lease=1, owner="o" * 257), IA),
        (lock_pb2.LockAcquireRequest(name="L", lease=99), NF),
        (lock_pb2.LockAcquireRequest(name="L", lease=-1), NF),
    ],
)
def test_acquire_errors(d: LockDriver, req: lock_pb2.LockAcquireRequest, code: grpc.StatusCode) -> None:
    assert d.code(d.cmd(lock_acquire=req)) == code
    assert d.sm.lock_inspect(req.name or "L").permits == 0


def test_release_errors(d: LockDriver) -> None:
    assert d.code(d.release("", 5)) == IA
    assert d.code(d.release("L", 0)) == IA


def test_semaphore_grants_up_to_permits(d: LockDriver) -> None:
    a = d.got("S", 1, permits=2).response
    b = d.got("S", 2, permits=2).response
    c = d.got("S", 3, permits=2)
    assert a.acquired and b.acquired and not c.response.acquired
    assert d.code(d.acquire("S", 4, permits=3)) == FP, "permits are fixed while the lock exists"
    assert d.code(d.acquire("S", 4)) == FP
    assert d.sm.lock_tokens("S") == {a.token, b.token}
    d.ok(d.release("S", a.token))
    assert [lease for lease, _ in d.holders("S")] == [2, 3]


def test_lease_end_releases_and_grants_in_one_entry(d: LockDriver) -> None:
    d.got("L", 1)
    d.got("L", 2)
    d.got("M", 1)
    d.events.clear()
    d.ok(d.revoke(1))
    idx = d.index
    assert d.holders("L") == [(2, idx)]
    assert d.sm.lock_inspect("M").permits == 0, "a lock without holders or waiters is gone"
    assert d.events == [(idx, LockGrant("L", 2, idx))]


def test_waiter_whose_lease_ends_leaves_the_queue_and_is_never_granted(d: LockDriver) -> None:
    d.got("L", 1)
    q2 = d.got("L", 2).queued_at
    d.got("L", 3)
    d.events.clear()
    d.ok(d.expire(1, 2))  # the holder and the first waiter end in the same entry
    idx = d.index
    assert d.holders("L") == [(3, idx)]
    assert d.events == [(idx, LockWaitEnd("L", 2, q2)), (idx, LockGrant("L", 3, idx))]


def test_several_grants_in_one_entry_get_increasing_tokens(d: LockDriver) -> None:
    for lease in (1, 2, 3):
        d.got("S", lease, permits=3)
    d.grant(ttl=10, lease_id=5)
    d.grant(ttl=10, lease_id=6)
    d.grant(ttl=10, lease_id=7)
    for lease in (4, 5, 6):
        d.got("S", lease, permits=3)
    d.ok(d.expire(1, 2, 3))
    idx = d.index
    assert d.holders("S") == [(4, idx), (5, idx + 1), (6, idx + 2)]
    # Empty the lock at once (the floor keeps its last token), then create it again.
    d.ok(d.expire(4, 5, 6))
    assert d.sm.lock_inspect("S").permits == 0
    t = d.got("S", 7).response.token
    assert t == idx + 3 > idx + 2, "a lock created again never repeats a token"
    d.ok(d.release("S", t))
    assert d.got("S", 7).response.token == d.index, "back to the log index once it has passed"


def test_cancel_takes_only_the_named_wait(d: LockDriver) -> None:
    t1 = d.got("L", 1).response.token
    q2 = d.got("L", 2).queued_at
    assert not d.cancel("L", 2, q2 + 1), "another wait of the same lease is left alone"
    assert not d.cancel("L", 1), "a holder is not a waiter"
    assert d.cancel("L", 2, q2)
    assert d.waiters("L") == [] and d.events[-1][1] == LockWaitEnd("L", 2, q2)
    assert not d.cancel("L", 2, q2)
    d.ok(d.release("L", t1))
    assert d.sm.lock_inspect("L").permits == 0
    assert not d.cancel("nope", 3)


def test_txn_lock_token_compare_fences_writes(d: LockDriver) -> None:
    t = d.got("L", 1).response.token
    guard = [cmp("LOCK_TOKEN", "EQUAL", lock_name="L", lock_token=t)]
    assert d.ok(d.txn(guard, [put_op(b"k", b"1")])).succeeded
    d.got("L", 2)
    d.ok(d.expire(1))  # the holder's lease ends; lease 2 is granted
    assert not d.ok(d.txn(guard, [put_op(b"k", b"stale")])).succeeded
    assert d.value(b"k") == b"1"
    newer = d.sm.lock_holder_token("L", 2)
    assert newer is not None and newer > t
    assert d.ok(d.txn([cmp("LOCK_TOKEN", "GREATER", lock_name="L", lock_token=t)], [])).succeeded
    assert d.ok(d.txn([cmp("LOCK_TOKEN", "EQUAL", lock_name="L", lock_token=newer)], [put_op(b"k", b"2")])).succeeded
    assert d.ok(d.txn([cmp("LOCK_TOKEN", "LESS", lock_name="free", lock_token=1)], [])).succeeded


def test_snapshot_round_trips_locks_and_floors(d: LockDriver) -> None:
    d.got("A", 1, owner="x")
    d.got("A", 2, owner="y")
    d.got("S", 3, permits=3)
    snap = d.sm.snapshot()
    restored = StateMachine.restore(snap)
    assert restored.snapshot() == snap
    assert restored.lock_inspect("A") == d.sm.lock_inspect("A")
    r = Driver(restored)
    r.ok(r.revoke(1))
    assert restored.lock_holder_token("A", 2) == restored.applied_index


def test_exactly_once_acquire_is_not_applied_twice(d: LockDriver) -> None:
    first = d.cmd(client_id="c", seq=1, lock_acquire=lock_pb2.LockAcquireRequest(name="L", lease=1))
    d.ok(d.release("L", first.lock_acquire.response.token))
    again = d.cmd(client_id="c", seq=1, lock_acquire=lock_pb2.LockAcquireRequest(name="L", lease=1))
    assert again == first
    assert d.sm.lock_inspect("L").permits == 0, "the retry did not grant the lock again"


# -- model check ---------------------------------------------------------------------------

NAMES = ["a", "b"]
LEASES = [1, 2, 3, 4]


@st.composite
def lock_ops(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(["acq", "acq", "acq", "rel", "rel", "cancel", "revoke", "expire", "grant"]))
    name = draw(st.sampled_from(NAMES))
    if kind == "acq":
        return ("acq", name, draw(st.sampled_from(LEASES)), draw(st.booleans()), draw(st.sampled_from([0, 1, 2])))
    if kind == "rel":
        return ("rel", name, draw(st.integers(0, 5)))
    if kind == "cancel":
        return ("cancel", name, draw(st.sampled_from(LEASES)))
    if kind in ("revoke", "grant"):
        return (kind, draw(st.sampled_from(LEASES)))
    return ("expire", draw(st.lists(st.sampled_from(LEASES), max_size=3)))


class Model:
    """The lock rules in their plainest form."""

    def __init__(self) -> None:
        self.leases = set(LEASES)
        self.locks: dict[str, dict[str, Any]] = {}
        self.last: dict[str, int] = {}

    def _token(self, name: str, index: int) -> int:
        t = max(index, self.last.get(name, 0) + 1)
        self.last[name] = t
        return t

    def _fill(self, name: str, index: int) -> None:
        lk = self.locks[name]
        while lk["waiters"] and len(lk["holders"]) < lk["permits"]:
            lease = lk["waiters"].pop(0)
            lk["holders"].append((lease, self._token(name, index)))
        if not lk["holders"] and not lk["waiters"]:
            del self.locks[name]

    def apply(self, op: tuple[Any, ...], index: int) -> None:
        kind = op[0]
        if kind == "acq":
            _, name, lease, no_wait, permits = op
            permits = permits or 1
            if lease not in self.leases:
                return
            lk = self.locks.get(name)
            if lk is not None and lk["permits"] != permits:
                return
            if lk is None:
                lk = self.locks[name] = {"permits": permits, "holders": [], "waiters": []}
            if any(h == lease for h, _ in lk["holders"]) or lease in lk["waiters"]:
                return
            if len(lk["holders"]) < permits:
                lk["holders"].append((lease, self._token(name, index)))
            elif not no_wait:
                lk["waiters"].append(lease)
        elif kind == "rel":
            _, name, k = op
            lk = self.locks.get(name)
            if lk is None or k >= len(lk["holders"]):
                return
            lk["holders"].pop(k)
            self._fill(name, index)
        elif kind == "cancel":
            _, name, lease = op
            lk = self.locks.get(name)
            if lk is not None and lease in lk["waiters"]:
                lk["waiters"].remove(lease)
                self._fill(name, index)
        elif kind in ("revoke", "expire"):
            ids = [op[1]] if kind == "revoke" else sorted(set(op[1]))
            ids = [i for i in ids if i in self.leases]
            self.leases -= set(ids)
            for name in sorted(self.locks):
                lk = self.locks[name]
                lk["holders"] = [(h, t) for h, t in lk["holders"] if h not in ids]
                lk["waiters"] = [w for w in lk["waiters"] if w not in ids]
            for name in sorted(self.locks):
                self._fill(name, index)
        elif kind == "grant":
            self.leases.add(op[1])


def to_command(op: tuple[Any, ...], sm: StateMachine) -> command_pb2.Command:
    kind = op[0]
    if kind == "acq":
        _, name, lease, no_wait, permits = op
        return command_pb2.Command(lock_acquire=lock_pb2.LockAcquireRequest(
            name=name, lease=lease, no_wait=no_wait, permits=permits))
    if kind == "rel":
        holders = sm.lock_inspect(op[1]).holders
        token = holders[op[2]].token if op[2] < len(holders) else 10_000 + op[2]
        return command_pb2.Command(lock_release=lock_pb2.LockReleaseRequest(name=op[1], token=token))
    if kind == "cancel":
        return command_pb2.Command(lock_cancel=command_pb2.WaitCancel(name=op[1], lease=op[2]))
    if kind == "revoke":
        from coord.v1 import lease_pb2

        return command_pb2.Command(lease_revoke=lease_pb2.LeaseRevokeRequest(id=op[1]))
    if kind == "grant":
        from coord.v1 import lease_pb2

        return command_pb2.Command(lease_grant=lease_pb2.LeaseGrantRequest(id=op[1], ttl=5))
    return command_pb2.Command(lease_expire=command_pb2.LeaseExpire(ids=op[1]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lock_ops(), max_size=50))
def test_locks_follow_the_model(ops: list[tuple[Any, ...]]) -> None:
    d = LockDriver()
    for lease in LEASES:
        d.grant(ttl=5, lease_id=lease)
    model = Model()
    seen_tokens: dict[str, int] = {}
    granted: dict[str, list[int]] = {}
    for op in ops:
        index = d.index + 1
        d.apply(to_command(op, d.sm))
        model.apply(op, index)
        for name in NAMES:
            info = d.sm.lock_inspect(name)
            want = model.locks.get(name)
            got = None if info.permits == 0 else {
                "permits": info.permits,
                "holders": [(h.lease, h.token) for h in info.holders],
                "waiters": [w.lease for w in info.waiters],
            }
            assert got == want, (op, name)
            if got is not None:
                assert len(got["holders"]) <= got["permits"]
                assert not got["waiters"] or len(got["holders"]) == got["permits"]
    for index, event in d.events:
        if isinstance(event, LockGrant):
            assert event.token >= index
            assert event.token > seen_tokens.get(event.name, 0), "tokens strictly increase per name"
            seen_tokens[event.name] = event.token
            granted.setdefault(event.name, []).append(event.lease)
        assert not isinstance(event, LeaderChange)
    # Determinism: a snapshot restores to the same bytes.
    assert StateMachine.restore(d.sm.snapshot()).snapshot() == d.sm.snapshot()
