"""A leader address the client cannot reach is skipped for longer each time it fails in a
row (coord_client/_transport.py Rule 5), so a client behind NAT or facing a wrong
``--advertise`` does not pay a failed attempt every second; a success there resets it.
No member is contacted: the transport's choices are checked on a driven clock."""

from __future__ import annotations

import pytest

from coord_client import _transport
from coord_client._transport import LEADER_RETRY_CAP, Transport

FOLLOWER = "127.0.0.1:7001"
LEADER = "127.0.0.1:7003"


def test_an_unreachable_leader_is_skipped_longer_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(_transport.time, "monotonic", lambda: clock[0])
    transport = Transport([FOLLOWER])
    skipped_for = []
    for _ in range(8):
        transport._learn_leader(LEADER)  # a follower's answer names it again
        assert transport.pick(to_leader=True) == LEADER
        transport.failed(LEADER)  # unreachable: no hint
        start = clock[0]
        transport._learn_leader(LEADER)
        while transport.pick(to_leader=True) != LEADER:
            assert transport.pick(to_leader=True) == FOLLOWER
            clock[0] += 0.25
        skipped_for.append(clock[0] - start)
    assert skipped_for == [1.0, 2.0, 4.0, 8.0, 16.0, LEADER_RETRY_CAP, LEADER_RETRY_CAP, LEADER_RETRY_CAP]

    transport.succeeded(LEADER)  # an attempt there worked: back to one second
    transport._learn_leader(LEADER)
    transport.failed(LEADER)
    assert transport._down_until[LEADER] == clock[0] + 1.0


def test_a_leader_that_answers_with_a_hint_is_not_escalated(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(_transport.time, "monotonic", lambda: clock[0])
    transport = Transport([FOLLOWER])
    for _ in range(3):
        transport._learn_leader(LEADER)
        assert transport.failed(LEADER, hint=FOLLOWER), "a fresh hint: retry at once"
    assert LEADER not in transport._down_until, "it answered: reachable, just no longer the leader"
    transport._learn_leader(LEADER)
    assert transport.pick(to_leader=True) == LEADER
