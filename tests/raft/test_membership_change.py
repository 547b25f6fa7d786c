"""Single-server membership changes and learners (Raft thesis §4.1, §4.2.1) on the
controllable network."""

from __future__ import annotations

import random

import pytest

from coord_server.raft import (
    ConfChange,
    ConfChangeType,
    MembershipError,
    Message,
    MessageType,
    ProposalDroppedError,
    Role,
)

from .network import Network

MT = MessageType
CC = ConfChangeType
ELECTION = 10


def change(net: Network, kind: ConfChangeType, node: int, max_ticks: int = 100) -> int:
    """Propose a membership change on the leader and wait until every live member that
    is still in the cluster applied it; returns its index."""
    lead = net.leader()
    assert lead is not None
    index = net.core(lead).propose_conf_change(ConfChange(kind, node))
    net.process(lead)
    net.tick_until(
        lambda: all(net.nodes[n].sm.applied >= index for n in net.alive() if n != node or kind != CC.REMOVE_NODE),
        max_ticks, f"{kind.name} {node} applied",
    )
    return index


def test_add_learner_catch_up_promote_remove() -> None:
    """The whole life of a member: added as a learner (it receives the log but does not
    count), caught up, promoted to voter (now it counts toward quorums), then removed
    (the cluster goes on without it). thesis §4.1, §4.2.1"""
    net = Network(3, random.Random(1))
    lead = net.wait_leader()
    for i in range(10):
        net.agree(f"v{i}".encode())
    change(net, CC.ADD_LEARNER, 4)
    assert net.core(lead).status().conf_state.learners == {4}
    net.add_node(4)  # a brand-new, empty server
    net.tick_until(lambda: net.nodes[4].sm.applied == net.nodes[lead].sm.applied, 20, "learner caught up")
    assert net.nodes[4].sm.values() == net.nodes[lead].sm.values()
    assert net.core(4).status().conf_state.learners == {4}
    # A learner does not count: with two voters cut off, nothing commits.
    voters = [n for n in (1, 2, 3) if n != lead]
    net.isolate(voters[0])
    net.isolate(voters[1])
    stuck = net.propose(lead, b"needs-a-voter")
    net.tick(count=5)
    assert net.nodes[4].storage.last_index() >= stuck
    assert net.core(lead).log.committed < stuck
    net.recover()
    net.tick(count=2)
    assert net.core(lead).log.committed >= stuck
    # Promote: now a quorum is 3 of 4 and node 4 is one of them.
    change(net, CC.ADD_NODE, 4)
    for n in (1, 2, 3, 4):
        assert net.core(n).status().conf_state.voters == {1, 2, 3, 4}
    net.isolate(voters[0])
    net.isolate(voters[1])
    blocked = net.propose(lead, b"needs-three")
    net.tick(count=3)
    assert net.core(lead).log.committed < blocked  # leader + node 4 are 2 of 4
    net.recover()
    net.isolate(voters[0])
    net.tick(count=3)
    assert net.core(lead).log.committed >= blocked  # leader + voter + node 4 are 3 of 4
    net.recover()
    # Remove a follower: it is gone from every member's configuration and the cluster
    # commits without it.
    removed = voters[0]
    change(net, CC.REMOVE_NODE, removed)
    net.crash(removed)
    for n in net.alive():
        assert removed not in net.core(n).status().conf_state.voters
    net.isolate(voters[1])
    net.agree(b"three-of-three-left", expected=2)


def test_remove_the_leader_itself() -> None:
    """A leader that applies its own removal steps down; the remaining voters elect a
    leader among themselves and carry on without it. thesis §4.2.2"""
    net = Network(3, random.Random(2))
    lead = net.wait_leader()
    net.agree(b"before")
    change(net, CC.REMOVE_NODE, lead)
    assert net.core(lead).role == Role.FOLLOWER
    rest = [n for n in (1, 2, 3) if n != lead]
    new = net.wait_leader(rest, max_ticks=6 * ELECTION)
    assert new != lead
    assert lead not in net.core(new).status().progress
    net.agree(b"after", expected=2)
    # The removed node never campaigns again, however long it waits.
    term = net.core(lead).term
    net.isolate(lead)
    net.tick(count=20 * ELECTION)
    assert net.core(lead).role == Role.FOLLOWER and net.core(lead).term == term


def test_learner_never_votes_nor_campaigns() -> None:
    """A learner's vote never counts toward a quorum, and it never starts an election,
    not even after thousands of ticks without a leader. thesis §4.2.1"""
    net = Network(3, random.Random(3), pre_vote=False, check_quorum=False)
    lead = net.wait_leader()
    change(net, CC.ADD_LEARNER, 4)
    net.add_node(4)
    net.tick(count=3)
    term = net.core(4).term
    net.isolate(4)
    net.trace = []
    net.tick(nodes=[4], count=5000)
    assert net.core(4).role == Role.FOLLOWER
    assert net.core(4).term == term
    assert net.sent_by[(4, MT.VOTE)] == net.sent_by[(4, MT.PRE_VOTE)] == 0
    net.core(4).campaign()  # even an explicit request does nothing
    net.process(4)
    assert net.core(4).role == Role.FOLLOWER and net.core(4).term == term
    # A grant from the learner does not give a candidate its majority.
    net.recover()
    a, b = [n for n in (1, 2, 3) if n != lead]
    net.isolate(a)
    net.isolate(lead)
    net.cut(a, 4)
    net.recover()
    net.isolate(lead)
    net.cut(a, b)
    net.campaign(a)
    assert net.core(a).role == Role.CANDIDATE
    net.step(a, Message(type=MT.VOTE_RESP, from_=4, to=a, term=net.core(a).term))
    assert net.core(a).role == Role.CANDIDATE, "a learner's vote counted"
    net.step(a, Message(type=MT.VOTE_RESP, from_=b, to=a, term=net.core(a).term))
    assert net.core(a).role == Role.LEADER


def test_one_change_at_a_time() -> None:
    """A second membership change is refused while the first is not yet applied, and a
    change that would leave no voter is refused outright. thesis §4.1"""
    net = Network(3, random.Random(4))
    lead = net.wait_leader()
    other = next(n for n in (1, 2, 3) if n != lead)
    net.isolate(other)
    net.isolate(next(n for n in (1, 2, 3) if n not in (lead, other)))
    net.core(lead).propose_conf_change(ConfChange(CC.ADD_LEARNER, 4))
    with pytest.raises(ProposalDroppedError):
        net.core(lead).propose_conf_change(ConfChange(CC.ADD_LEARNER, 5))
    net.recover()
    net.process(lead)
    net.tick(count=2)
    assert net.core(lead).status().conf_state.learners == {4}
    single = Network(1, random.Random(5))
    single.wait_leader()
    single.agree(b"no-op applied")
    with pytest.raises(MembershipError) as info:
        single.core(1).propose_conf_change(ConfChange(CC.REMOVE_NODE, 1))
    assert "no voters" in str(info.value)


@pytest.mark.parametrize("seed", range(4))
def test_membership_changes_under_churn(seed: int) -> None:
    """Members are added as learners, promoted and removed again and again while nodes
    crash and messages are lost: at most one leader per term and state machine safety
    hold throughout (checked by the network), and the final members agree. thesis §4"""
    rng = random.Random(seed)
    net = Network(3, rng)
    net.set_unreliable(drop=0.05, duplicate=0.02, delay=0.05, reorder=True)
    net.wait_leader(max_ticks=20 * ELECTION)
    next_id = 4
    for round_ in range(6):
        lead = net.wait_leader(net.alive(), max_ticks=40 * ELECTION)
        conf = net.core(lead).status().conf_state
        if len(conf.voters) < 5 and rng.random() < 0.6:
            kind, node = CC.ADD_LEARNER, next_id
            next_id += 1
        elif conf.learners:
            kind, node = CC.ADD_NODE, min(conf.learners)
        else:
            kind, node = CC.REMOVE_NODE, rng.choice(sorted(conf.voters))
        try:
            index = net.core(lead).propose_conf_change(ConfChange(kind, node))
        except ProposalDroppedError:
            net.tick(count=5)
            continue
        net.process(lead)
        if kind == CC.ADD_LEARNER:
            net.add_node(node)
        net.tick_until(lambda: any(net.nodes[n].sm.applied >= index for n in net.alive()), 60 * ELECTION)
        if kind == CC.REMOVE_NODE:
            net.tick_until(lambda: all(
                net.nodes[n].sm.applied >= index for n in net.alive() if n != node), 60 * ELECTION)
            net.crash(node)
        for i in range(3):
            current = net.leader()
            if current is not None:
                try:
                    net.propose(current, f"r{round_}.{i}".encode())
                except ProposalDroppedError:
                    pass
            net.tick(count=rng.randrange(1, 6))
    net.set_reliable()
    net.agree(b"end", max_ticks=40 * ELECTION)
    confs = {net.core(n).status().conf_state for n in net.alive()}
    assert len(confs) == 1
    net.check_log_matching()
