"""Elections in the state machine: campaign, queue, proclaim, resign, lease ends, events,
snapshots."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from coord.raft.v1 import command_pb2
from coord.v1 import election_pb2
from coord_server.state import StateMachine
from coord_server.state.elections import CandidateGone, LeaderChange

from .driver import Driver

IA, NF, FP = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
              grpc.StatusCode.FAILED_PRECONDITION)


class ElectionDriver(Driver):
    def __init__(self, sm: StateMachine | None = None) -> None:
        super().__init__(sm)
        self.events: list[object] = []
        self.sm.add_coordination_listener(lambda index, evs: self.events.extend(evs))

    def campaign(self, name: str, lease: int, value: bytes = b"") -> command_pb2.CommandResult:
        return self.cmd(election_campaign=election_pb2.ElectionCampaignRequest(name=name, lease=lease, value=value))

    def won(self, name: str, lease: int, value: bytes = b"") -> command_pb2.ElectionCampaignResult:
        result: command_pb2.ElectionCampaignResult = self.ok(self.campaign(name, lease, value))
        return result

    def proclaim(self, key: election_pb2.LeaderKey, value: bytes) -> command_pb2.CommandResult:
        return self.cmd(election_proclaim=election_pb2.ElectionProclaimRequest(leader=key, value=value))

    def resign(self, key: election_pb2.LeaderKey) -> command_pb2.CommandResult:
        return self.cmd(election_resign=election_pb2.ElectionResignRequest(leader=key))

    def leader(self, name: str) -> tuple[int, bytes]:
        s = self.sm.election_leader(name)
        return s.lease, s.value


@pytest.fixture
def d() -> ElectionDriver:
    drv = ElectionDriver()
    for lease in (1, 2, 3):
        drv.grant(ttl=10, lease_id=lease)  # indexes 1-3
    return drv


def test_first_candidate_leads_with_the_index_as_token(d: ElectionDriver) -> None:
    r = d.won("E", 1, b"a")
    assert r.queued_at == 0 and r.response.leader == election_pb2.LeaderKey(name="E", lease=1, token=4, revision=1)
    assert d.leader("E") == (1, b"a")
    assert d.events == [LeaderChange("E", 1, 4, 1, b"a")]
    again = d.won("E", 1, b"other")
    assert again.response.leader.token == 4 and d.leader("E") == (1, b"a")


def test_queue_resign_and_proclaim(d: ElectionDriver) -> None:
    key1 = d.won("E", 1, b"a").response.leader
    q2 = d.won("E", 2, b"b")
    assert not q2.response.HasField("leader") and q2.queued_at == 5
    assert d.won("E", 2).queued_at == 5, "a waiting candidate keeps its place"
    d.ok(d.proclaim(key1, b"a2"))
    assert d.leader("E") == (1, b"a2")
    d.ok(d.resign(key1))
    idx = d.index
    state = d.sm.election_leader("E")
    assert (state.lease, state.token, state.value) == (2, idx, b"b")
    assert d.events[-2:] == [LeaderChange("E", 1, 4, 1, b"a2"), LeaderChange("E", 2, idx, 1, b"b")]
    assert d.code(d.proclaim(key1, b"x")) == FP, "an old leadership cannot proclaim"
    assert d.code(d.resign(key1)) == FP
    d.ok(d.resign(state.leader_key()))
    assert d.leader("E") == (0, b"") and d.events[-1] == LeaderChange("E", 0, 0, 0, b"")
    assert d.won("E", 3).response.leader.token == d.index > idx, "tokens grow across a re-created election"


def test_lease_end_hands_over_and_waiters_with_ended_leases_never_lead(d: ElectionDriver) -> None:
    d.won("E", 1)
    q2 = d.won("E", 2).queued_at
    d.won("E", 3, b"c")
    d.events.clear()
    d.ok(d.expire(1, 2))
    idx = d.index
    assert d.events == [CandidateGone("E", 2, q2), LeaderChange("E", 3, idx, 1, b"c")]
    d.ok(d.revoke(3))
    assert d.events[-1] == LeaderChange("E", 0, 0, 0, b"")


def test_cancel_removes_only_a_waiting_candidate(d: ElectionDriver) -> None:
    d.won("E", 1)
    q2 = d.won("E", 2).queued_at
    cancel = lambda lease, q: d.ok(d.cmd(election_cancel=command_pb2.WaitCancel(name="E", lease=lease, queued_at=q))).removed  # noqa: E731
    assert not cancel(1, 0), "the leader is not cancelled"
    assert not cancel(2, q2 + 1)
    assert cancel(2, q2)
    assert d.sm.election_candidate("E", 2) is None and d.events[-1] == CandidateGone("E", 2, q2)


@pytest.mark.parametrize(
    "op, code",
    [
        ({"election_campaign": election_pb2.ElectionCampaignRequest(name="", lease=1)}, IA),
        ({"election_campaign": election_pb2.ElectionCampaignRequest(name="E", lease=0)}, IA),
        ({"election_campaign": election_pb2.ElectionCampaignRequest(name="E", lease=9)}, NF),
        ({"election_campaign": election_pb2.ElectionCampaignRequest(name="E", lease=1, value=b"v" * ((1 << 20) + 1))}, IA),
        ({"election_proclaim": election_pb2.ElectionProclaimRequest()}, IA),
        ({"election_resign": election_pb2.ElectionResignRequest(leader=election_pb2.LeaderKey(name="E", lease=1))}, IA),
        ({"election_resign": election_pb2.ElectionResignRequest(leader=election_pb2.LeaderKey(name="E", lease=1, token=3))}, FP),
    ],
)
def test_errors(d: ElectionDriver, op: dict[str, Any], code: grpc.StatusCode) -> None:
    assert d.code(d.cmd(**op)) == code
    assert d.leader("E") == (0, b"")


def test_snapshot_round_trips_elections(d: ElectionDriver) -> None:
    d.won("E", 1, b"a")
    d.won("E", 2, b"b")
    d.won("F", 3, b"c")
    snap = d.sm.snapshot()
    restored = StateMachine.restore(snap)
    assert restored.snapshot() == snap
    assert restored.election_leader("E") == d.sm.election_leader("E")
    r = ElectionDriver(restored)
    r.ok(r.revoke(1))
    assert r.leader("E") == (2, b"b")
