"""The leader's lease clocks (coord_server/lease_timer.py) on a fake clock: renewals,
expiry through the deadline heap, bounded chunks, re-reporting, revoked and re-granted
leases."""

from __future__ import annotations

import time

import pytest

from coord_server.lease_timer import EXPIRE_CHUNK, LeaseTimers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _timers(
    leases: list[tuple[int, int]], extension: float = 1.0, max_postpone: float | None = None
) -> tuple[LeaseTimers, Clock]:
    clock = Clock()
    timers = LeaseTimers(clock, retry_after=1.0)
    timers.start(leases, extension=extension, max_postpone=max_postpone)
    return timers, clock


def test_a_renewed_lease_does_not_expire_and_an_unrenewed_one_does() -> None:
    timers, clock = _timers([(1, 10), (2, 10)])
    clock.now += 9
    assert timers.keepalive(1) == 10
    clock.now += 2.5  # past 2's deadline (10 + 1 extension), not 1's
    assert timers.expired() == [2]
    assert timers.keepalive(2) is None  # expired: not renewed any more
    timers.revoked(2)  # its LeaseExpire applied
    assert timers.remaining(1) == 7.5
    clock.now += 7.5
    assert timers.expired() == [1]


def test_an_expiry_storm_comes_in_chunks_and_unrevoked_leases_are_reported_again() -> None:
    count = 3 * EXPIRE_CHUNK + 7
    timers, clock = _timers([(i, 5) for i in range(1, count + 1)], extension=0)
    clock.now += 5
    chunks = []
    while chunk := timers.expired():
        assert len(chunk) <= EXPIRE_CHUNK and chunk == sorted(chunk)
        chunks.append(chunk)
        for lease_id in chunk[: len(chunk) // 2]:
            timers.revoked(lease_id)  # the other half's revocations are "lost"
    assert sum(len(c) for c in chunks) == count and len(chunks) == 4
    assert timers.expired() == []  # not again within retry_after
    clock.now += 1.0
    again = []
    while chunk := timers.expired():
        again.extend(chunk)
    assert sorted(again) == sorted(i for c in chunks for i in c[len(c) // 2 :])


def test_revoked_then_granted_anew_counts_only_the_new_grant() -> None:
    timers, clock = _timers([(7, 3)], extension=0)
    clock.now += 3
    assert timers.expired() == [7]
    timers.revoked(7)
    timers.granted(7, 10)  # the same ID, granted again
    clock.now += 1.5  # the old report would be due again now
    assert timers.expired() == []
    assert timers.keepalive(7) == 10
    clock.now += 9.9
    assert timers.expired() == []
    clock.now += 0.2
    assert timers.expired() == [7]
    assert len(timers) == 1


def test_many_renewals_leave_one_heap_entry_per_lease() -> None:
    timers, clock = _timers([(i, 10) for i in range(1000)], extension=0)
    for _ in range(30):
        clock.now += 3
        for i in range(1000):
            assert timers.keepalive(i) == 10
        assert timers.expired() == []
    assert len(timers._heap) == 1000  # noqa: SLF001 - the structure is the point (Rule 4)


def test_stop_forgets_everything() -> None:
    timers, clock = _timers([(1, 1)], extension=0)
    timers.stop()
    clock.now += 5
    assert timers.expired() == [] and timers.remaining(1) is None and not timers.active
    timers.granted(2, 1)  # not the keeper: ignored
    assert len(timers) == 0


def test_a_renewal_that_arrived_in_time_counts_though_confirmed_late() -> None:
    timers, clock = _timers([(1, 10), (2, 10), (3, 10)], extension=0)
    arrived = clock.now + 9.5  # before the deadlines (110)
    clock.now += 10.5  # its batch is confirmed after them
    assert timers.keepalive(1, arrived) == 10  # waited in the queue: still renewed
    assert timers.remaining(1) == 10
    assert timers.keepalive(2, clock.now) is None  # arrived late: expired
    assert timers.expired() == [2, 3]  # 1 was renewed; 3's expiry is now reported
    assert timers.keepalive(3, arrived) is None  # reported: its revocation may be in the log


def test_a_pause_of_the_leader_does_not_count_against_leases() -> None:
    """Rule 7: the leader's loop was held up for 4 s; renewals sent meanwhile are read only
    now, so no lease expires for the pause, and a lease renewed since is kept after it."""
    timers, clock = _timers([(1, 10), (2, 10), (3, 10)], max_postpone=5)
    clock.now += 8
    assert timers.keepalive(3) == 10  # 3 due at 118
    clock.now += 4  # 112: past 1's and 2's deadlines (111), the loop did not run
    timers.postpone(4)
    assert timers.expired() == []
    assert timers.keepalive(1, arrived_at=clock.now) == 10
    clock.now += 3.5  # 115.5: past 2's moved deadline (115)
    assert timers.expired() == [2]
    timers.revoked(2)  # its LeaseExpire applied
    clock.now += 6  # 121.5: 3's deadline moved to 122
    assert timers.expired() == []
    clock.now += 1
    assert timers.expired() == [1, 3]  # 1 was renewed at 112: due at 122 too


def test_a_reported_lease_is_refused_even_when_a_pause_follows_the_report() -> None:
    """Rule 8: its LeaseExpire may be in the log and will be applied anyway, so a renewal
    must not be told it has a TTL, whatever a later pause did to the clock."""
    timers, clock = _timers([(7, 10)], extension=0)
    clock.now += 10.5
    assert timers.expired() == [7]  # the node proposes LeaseExpire([7])
    timers.postpone(2)  # then the ticker sees a stall
    assert timers.keepalive(7, arrived_at=clock.now + 0.05) is None
    assert timers.keepalive(7) is None
    assert timers.remaining(7) == 0.0
    timers.revoked(7)  # its LeaseExpire applied
    assert timers.remaining(7) is None
    timers.granted(7, 10)  # granted anew: renewable again
    assert timers.keepalive(7) == 10


def test_pauses_count_only_up_to_the_cap_per_leadership() -> None:
    """Rule 7: a lease lives at most TTL + extension + cap after its last renewal, however
    often the leader stalls."""
    timers, clock = _timers([(1, 10)], extension=1, max_postpone=2)
    for _ in range(10):  # ten stalls of 1 s: only the first two count
        clock.now += 1
        timers.postpone(1)
    assert timers.postponed == 2
    clock.now = 100 + 10 + 1 + 2 - 0.01
    assert timers.expired() == []
    clock.now += 0.02
    assert timers.expired() == [1]
    timers.start([(1, 10)], extension=1, max_postpone=2)  # a new leadership: a new cap
    assert timers.postponed == 0
    timers.postpone(5)
    assert timers.postponed == 2


def test_a_pause_costs_the_same_however_many_leases_there_are() -> None:
    """Rule 7: ``postpone`` is O(1); the ticker may call it often under load."""
    timers, clock = _timers([(i, 60) for i in range(1, 100_001)], max_postpone=1e9)
    started = time.perf_counter()
    for _ in range(100):
        timers.postpone(0.1)
    assert time.perf_counter() - started < 1.0
    assert timers.remaining(1) == pytest.approx(61 + 10)
