"""The named parts of the Node (proposals.py, leaderless.py, read_waits.py, forwards.py,
commit_notices.py), each on its own, on a fake clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coord.raft.v1 import command_pb2, raft_pb2
from coord_server.commit_notices import CommitNotices
from coord_server.errors import CoordError, Unavailable
from coord_server.forwards import Forwarder
from coord_server.leaderless import Leaderless
from coord_server.proposals import ProposalQueue
from coord_server.raft import Message, MessageType as MT, ReadState
from coord_server.read_waits import ReadWaits

from .fake_clock import FakeClock


def future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def datas(batches: list[list[tuple[bytes, Any]]]) -> list[list[bytes]]:
    return [[d for d, _ in b] for b in batches]


# -- proposals ---------------------------------------------------------------------------


async def test_eager_proposals_leave_in_arrival_order_at_most_max_batch_at_a_time():
    queue = ProposalQueue(FakeClock(), Wakes(), max_batch=2)
    for d in (b"a", b"b", b"c"):
        queue.add(d, future())
    assert datas(list(queue.batches(is_leader=True))) == [[b"a", b"b"], [b"c"]]
    assert queue.queued == 0


async def test_a_lazy_proposal_waits_for_an_eager_one_and_goes_first():
    clock, wake = FakeClock(), Wakes()
    queue = ProposalQueue(clock, wake, lazy_delay=0.002)
    queue.add_lazy(b"lazy", future())
    assert list(queue.batches(is_leader=True)) == []
    clock.advance(0.001)
    queue.add(b"eager", future())
    assert datas(list(queue.batches(is_leader=True))) == [[b"lazy", b"eager"]]
    assert clock.pending == 0, "the lazy timer outlived its proposals"
    clock.advance(1)
    assert wake.count == 0


async def test_a_lazy_proposal_alone_goes_when_its_delay_passes():
    clock, wake = FakeClock(), Wakes()
    queue = ProposalQueue(clock, wake, lazy_delay=0.002)
    queue.add_lazy(b"lazy", future())
    clock.advance(0.0019)
    assert wake.count == 0
    clock.advance(0.0001)
    assert wake.count == 1
    assert datas(list(queue.batches(is_leader=True))) == [[b"lazy"]]


async def test_a_lazy_proposal_goes_at_once_when_this_member_stops_leading():
    queue = ProposalQueue(FakeClock(), Wakes())
    queue.add_lazy(b"lazy", future())
    assert datas(list(queue.batches(is_leader=False))) == [[b"lazy"]]


async def test_an_applied_entry_answers_its_proposal_only_in_the_same_term():
    queue = ProposalQueue(FakeClock(), Wakes())
    ours, replaced = future(), future()
    queue.proposed([5, 6], 3, [(b"x", ours), (b"y", replaced)])
    assert queue.in_flight == 2
    assert queue.applied(5, 3, "result", conf_change=False) is False
    assert queue.applied(6, 4, "theirs", conf_change=False) is True
    assert ours.result() == "result"
    with pytest.raises(Unavailable):
        replaced.result()
    assert queue.applied(7, 3, None, conf_change=False) is False  # nobody waits there


async def test_a_membership_change_answers_after_advance():
    queue = ProposalQueue(FakeClock(), Wakes())
    fut = future()
    queue.wait_for(9, 2, fut)
    queue.applied(9, 2, None, conf_change=True)
    assert not fut.done()
    queue.advanced()
    assert fut.done() and fut.result() is None


async def test_a_snapshot_fails_the_proposals_it_covers():
    queue = ProposalQueue(FakeClock(), Wakes())
    covered, later = future(), future()
    queue.proposed([4, 8], 2, [(b"a", covered), (b"b", later)])
    assert queue.overtaken_up_to(5) == 1
    assert isinstance(covered.exception(), Unavailable) and not later.done()


async def test_stopping_fails_everything_but_applied_membership_changes():
    clock = FakeClock()
    queue = ProposalQueue(clock, Wakes())
    eager, lazy, waiting, change = future(), future(), future(), future()
    queue.add(b"e", eager)
    queue.add_lazy(b"l", lazy)
    queue.proposed([3], 1, [(b"w", waiting)])
    queue.wait_for(4, 1, change)
    queue.applied(4, 1, None, conf_change=True)
    queue.fail_all(Unavailable("stopping"))
    assert change.result() is None
    for fut in (eager, lazy, waiting):
        assert isinstance(fut.exception(), Unavailable)
    assert clock.pending == 0 and queue.queued == 0 and queue.in_flight == 0


# -- leaderless --------------------------------------------------------------------------


async def test_parked_requests_retry_when_a_leader_is_known_or_expire():
    clock = FakeClock()
    parked = Leaderless(clock, hold=1.0)
    retried: list[str] = []
    early, late = future(), future()
    parked.park(early, lambda: retried.append("early"))
    clock.advance(0.5)
    parked.park(late, lambda: retried.append("late"))
    clock.advance(0.5)
    parked.expire()
    assert isinstance(early.exception(), Unavailable) and not late.done()
    assert len(parked) == 1
    parked.retry_all()
    assert retried == ["late"] and not parked


async def test_parked_requests_fail_with_the_stop_error():
    parked = Leaderless(FakeClock(), hold=1.0)
    fut = future()
    parked.park(fut, lambda: None)
    parked.fail_all(Unavailable("stopping"))
    assert str(fut.exception()) == "stopping"


# -- reads -------------------------------------------------------------------------------


class Refused(Exception):
    pass


async def test_reads_share_one_round_and_wait_for_their_read_point():
    reads = ReadWaits(member_id=7)
    contexts: list[bytes] = []
    a, b = future(), future()
    reads.add(a)
    reads.add(b)
    reads.start_round(contexts.append, lambda e: Unavailable(str(e)), Refused)
    reads.start_round(contexts.append, lambda e: Unavailable(str(e)), Refused)  # nothing new
    assert contexts == [b"7:1"]
    reads.release([ReadState(index=10, context=b"7:1")], applied=9)
    assert not a.done() and not b.done()
    reads.wake(applied=10)
    assert a.result() is None and b.result() is None


async def test_a_renewal_read_is_released_by_its_round_and_floor_not_the_read_point():
    """read_waits.py Rule 5 (lease renewals): the quorum's answer and the leader's first
    entry of its term applied are enough; the backlog behind the read point is not waited for."""
    reads = ReadWaits(member_id=7)
    read, renewal = future(), future()
    reads.add(read)
    reads.add(renewal, apply_floor=3)
    reads.start_round(lambda c: None, lambda e: Unavailable(str(e)), Refused)
    assert not renewal.done()
    reads.release([ReadState(index=10, context=b"7:1")], applied=3)  # a backlog to apply
    assert renewal.result() is None and not read.done()
    reads.wake(applied=10)
    assert read.result() is None


async def test_a_new_leaders_renewals_wait_for_its_first_entry_applied():
    """A new leader's clocks lack what its predecessor applied and answered until the
    entries before its own first one are applied: a renewal must not be judged before."""
    reads = ReadWaits(member_id=7)
    renewal = future()
    reads.add(renewal, apply_floor=8)
    reads.start_round(lambda c: None, lambda e: Unavailable(str(e)), Refused)
    reads.release([ReadState(index=10, context=b"7:1")], applied=5)
    assert not renewal.done()
    reads.wake(applied=7)
    assert not renewal.done()
    reads.wake(applied=8)
    assert renewal.result() is None


async def test_a_refused_round_fails_its_reads_at_once():
    reads = ReadWaits(member_id=1)
    fut = future()
    reads.add(fut)

    def refuse(context: bytes) -> None:
        raise Refused("no leader")

    reads.start_round(refuse, lambda e: Unavailable(f"refused: {e}"), Refused)
    assert str(fut.exception()) == "refused: no leader"


async def test_a_lost_leadership_fails_its_rounds_not_its_parked_reads():
    reads = ReadWaits(member_id=1)
    in_round, parked = future(), future()
    reads.add(parked)
    reads.start_round(lambda c: None, lambda e: Unavailable(str(e)), Refused)
    reads.release([ReadState(index=5, context=b"1:1")], applied=1)
    reads.add(in_round)
    reads.start_round(lambda c: None, lambda e: Unavailable(str(e)), Refused)
    reads.fail_rounds(Unavailable("leadership changed"))
    assert isinstance(in_round.exception(), Unavailable) and not parked.done()
    reads.wake(5)
    assert parked.result() is None


async def test_applied_waiters_release_in_index_order_and_fail_on_stop():
    reads = ReadWaits(member_id=1)
    assert reads.applied_future(3, applied=3).done()
    low, high = reads.applied_future(4, applied=3), reads.applied_future(6, applied=3)
    reads.wake(5)
    assert low.done() and not high.done()
    reads.fail_all(Unavailable("stopping"))
    assert isinstance(high.exception(), Unavailable)


# -- forwards ----------------------------------------------------------------------------


class FakeLeader:
    def __init__(self, answer_count: int | None = None) -> None:
        self.calls: list[tuple[int, list[bytes], float | None]] = []
        self.answer_count = answer_count

    async def __call__(self, to: int, kind: int, payload: bytes, timeout: float | None) -> bytes:
        items = list(raft_pb2.ForwardBatch.FromString(payload).items)
        self.calls.append((to, items, timeout))
        n = len(items) if self.answer_count is None else self.answer_count
        results = [command_pb2.CommandResult(error=command_pb2.CommandError(message=str(i + 1))).SerializeToString() for i in range(n)]
        return raft_pb2.ForwardBatch(items=results).SerializeToString()


async def test_writes_of_one_loop_iteration_travel_in_one_call_to_the_leader():
    clock, leader = FakeClock(), FakeLeader()
    forwarder = Forwarder(clock, lambda: 3, leader)
    a, b = future(), future()
    forwarder.add(b"a", a, timeout=2.0)
    forwarder.add(b"b", b, timeout=5.0)
    results = await asyncio.wait_for(asyncio.gather(a, b), 5)
    assert [r.error.message for r in results] == ["1", "2"]
    assert leader.calls == [(3, [b"a", b"b"], 5.0)], "one call, the longest deadline"


async def test_a_short_answer_fails_every_write_of_the_batch():
    forwarder = Forwarder(FakeClock(), lambda: 3, FakeLeader(answer_count=1))
    a, b = future(), future()
    forwarder.add(b"a", a, None)
    forwarder.add(b"b", b, None)
    done = await asyncio.wait_for(asyncio.gather(a, b, return_exceptions=True), 5)
    assert all(isinstance(r, Unavailable) for r in done)


async def test_no_leader_when_the_batch_leaves_fails_it_unavailable():
    leader = FakeLeader()
    forwarder = Forwarder(FakeClock(), lambda: 0, leader)
    fut = future()
    forwarder.add(b"a", fut, None)
    with pytest.raises(Unavailable):
        await asyncio.wait_for(fut, 5)
    assert leader.calls == []


# -- commit notices ----------------------------------------------------------------------


def commit(to: int, index: int) -> Message:
    return Message(type=MT.COMMIT, to=to, from_=1, term=3, index=index, log_term=3, commit=index)


def test_a_held_commit_goes_when_the_fake_clock_passes_its_delay():
    clock, sent = FakeClock(), []
    notices = CommitNotices(sent.extend, delay=0.002, clock=clock)
    assert notices.filter([commit(2, 5)]) == []
    clock.advance(0.0015)
    assert sent == []
    clock.advance(0.0005)
    assert sent == [commit(2, 5)] and notices.held == 0


def test_stop_errors_are_coord_errors():
    assert issubclass(Unavailable, CoordError)
