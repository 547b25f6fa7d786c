"""Leadership transfer (Raft thesis §3.10) on the controllable network.

The leader stops accepting proposals, brings the transferee's log up to date, then sends
it TIMEOUT_NOW; the transferee campaigns at once (no pre-vote, past the leader lease). A
transfer that does not finish within an election timeout is abandoned.
"""

from __future__ import annotations

import random

import pytest

from coord_server.raft import Message, MessageType, ProposalDroppedError, Role

from .network import Network

MT = MessageType
ELECTION = 10


def _transfer(net: Network, leader: int, transferee: int) -> None:
    net.step(leader, Message(type=MT.TRANSFER_LEADER, from_=transferee))


@pytest.mark.parametrize("pre_vote,check_quorum", [(True, True), (False, False)])
def test_transfer_to_up_to_date_follower(pre_vote: bool, check_quorum: bool) -> None:
    """To a follower whose log matches: TIMEOUT_NOW goes out at once and the follower
    wins the next term without waiting for any timeout, even inside the leader lease.
    thesis §3.10"""
    net = Network(3, random.Random(1), pre_vote=pre_vote, check_quorum=check_quorum)
    lead = net.wait_leader()
    net.agree(b"x")
    term = net.core(lead).term
    target = next(n for n in (1, 2, 3) if n != lead)
    net.trace = []
    net.core(lead).transfer_leadership(target)
    net.process(lead)
    assert net.leader_among([1, 2, 3]) == target
    assert net.core(target).term == term + 1
    assert MT.TIMEOUT_NOW in [m.type for m in net.trace]
    assert MT.PRE_VOTE not in [m.type for m in net.trace]
    net.agree(b"y")


def test_transfer_to_lagging_follower_catches_it_up_first() -> None:
    """To a follower that is behind: the leader first replicates what it lacks and sends
    TIMEOUT_NOW only once it has everything, so the transferee can win. thesis §3.10"""
    net = Network(3, random.Random(2))
    lead = net.wait_leader()
    target = next(n for n in (1, 2, 3) if n != lead)
    net.isolate(target)
    for i in range(20):
        net.agree(f"v{i}".encode(), expected=2)
    net.recover()
    assert net.core(target).log.last_index() < net.core(lead).log.last_index()
    net.trace = []
    _transfer(net, lead, target)
    assert net.leader_among([1, 2, 3]) == target
    kinds = [(m.type, m.to) for m in net.trace]
    timeout_at = kinds.index((MT.TIMEOUT_NOW, target))
    caught_up = [i for i, m in enumerate(net.trace)
                 if m.type == MT.APP_RESP and m.from_ == target and not m.reject]
    assert caught_up and caught_up[0] < timeout_at, "TIMEOUT_NOW went out before the catch-up"
    assert net.nodes[target].sm.values()[:20] == [f"v{i}".encode() for i in range(20)]


def test_transfer_also_works_from_a_follower() -> None:
    """A transfer request made on a follower is forwarded to the leader. thesis §3.10"""
    net = Network(3, random.Random(3))
    lead = net.wait_leader()
    target = next(n for n in (1, 2, 3) if n != lead)
    asker = next(n for n in (1, 2, 3) if n not in (lead, target))
    net.core(asker).transfer_leadership(target)
    net.process(asker)
    assert net.leader_among([1, 2, 3]) == target


def test_transfer_to_dead_target_is_abandoned_and_proposals_refused_meanwhile() -> None:
    """While a transfer is under way the leader refuses proposals (they might be lost
    when leadership moves); if the target never answers, the transfer is abandoned
    after an election timeout, the leader keeps its job and accepts proposals again.
    thesis §3.10"""
    net = Network(3, random.Random(4))
    lead = net.wait_leader()
    net.agree(b"before")
    target = next(n for n in (1, 2, 3) if n != lead)
    net.crash(target)
    net.propose(lead, b"makes-target-lag")
    _transfer(net, lead, target)
    assert net.core(lead).status().lead_transferee == target
    with pytest.raises(ProposalDroppedError) as info:
        net.propose(lead, b"refused")
    assert str(target) in str(info.value)
    ticks = net.tick_until(lambda: net.core(lead).status().lead_transferee == 0, 2 * ELECTION)
    assert ticks <= ELECTION
    assert net.core(lead).role == Role.LEADER
    index = net.propose(lead, b"accepted")
    assert len(net.committed_on(index)) == 2
    assert b"refused" not in net.nodes[lead].sm.values()


@pytest.mark.parametrize("who", ["self", "stranger", "learner"])
def test_transfer_to_ineligible_target_is_ignored(who: str) -> None:
    """A transfer to the leader itself, to a non-member or to a learner does nothing:
    proposals keep flowing. thesis §3.10, §4.2.1"""
    from coord_server.raft import ConfChange, ConfChangeType

    net = Network(3, random.Random(5))
    lead = net.wait_leader()
    if who == "learner":
        net.core(lead).propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
        net.process(lead)
        net.add_node(4)
        net.tick(count=2)
        target = 4
    else:
        target = lead if who == "self" else 42
    _transfer(net, lead, target)
    assert net.core(lead).status().lead_transferee == 0
    net.agree(b"still-leader")
    assert net.leader() == lead
