"""PreVote and CheckQuorum (Raft thesis §9.6 and §6.2) on the controllable network.

PreVote: a node that lost contact first asks whether it *could* win; a node partitioned
away therefore does not bump its term and, when it returns, does not depose a healthy
leader. CheckQuorum: a leader that has not heard from a quorum for an election timeout
steps down, and a follower that heard from a leader within the minimum election timeout
ignores vote requests (the leader lease).
"""

from __future__ import annotations

import random

import pytest

from coord_server.raft import Message, MessageType, Role

from .network import Network

MT = MessageType
ELECTION = 10


@pytest.mark.parametrize("check_quorum", [True, False])
def test_prevote_partitioned_node_does_not_disrupt_on_rejoin(check_quorum: bool) -> None:
    """A node cut off for a long time keeps pre-voting but never bumps its term; when it
    rejoins, the cluster's term and leader are unchanged. thesis §9.6"""
    net = Network(3, random.Random(1), pre_vote=True, check_quorum=check_quorum)
    lead = net.wait_leader()
    term = net.core(lead).term
    loner = next(n for n in (1, 2, 3) if n != lead)
    net.isolate(loner)
    net.tick(count=20 * ELECTION)
    assert net.core(loner).term == term, "pre-voting bumped the term"
    assert net.sent_by[(loner, MT.PRE_VOTE)] > 0 and net.sent_by[(loner, MT.VOTE)] == 0
    if not check_quorum:
        # Without the lease, PreVote alone protects a cluster whose log moved on.
        net.agree(b"progress", expected=2)
    net.recover()
    net.tick(count=5 * ELECTION)
    assert net.leader_among([1, 2, 3]) == lead
    assert {net.core(n).term for n in (1, 2, 3)} == {term}


def test_without_prevote_a_rejoining_node_disrupts() -> None:
    """The contrast that makes the test above meaningful: without PreVote (and without the
    lease) the returning node's inflated term deposes the leader. thesis §9.6"""
    net = Network(3, random.Random(2), pre_vote=False, check_quorum=False)
    lead = net.wait_leader()
    term = net.core(lead).term
    loner = next(n for n in (1, 2, 3) if n != lead)
    net.isolate(loner)
    net.tick(count=10 * ELECTION)
    assert net.core(loner).term > term + 2
    net.recover()
    net.tick(count=5 * ELECTION)
    assert max(net.core(n).term for n in (1, 2, 3)) > term + 2


def test_prevote_asymmetric_partition_leaves_no_trace() -> None:
    """A node that only lost its link to the leader pre-votes; the others still hear the
    leader and refuse, so nobody's term or vote changes and the leader stays. (As in etcd,
    the "heard from a leader recently" refusal of thesis §9.6 comes with CheckQuorum's
    lease, which is on by default; with PreVote alone an equally up-to-date node could
    still win.) thesis §9.6"""
    net = Network(3, random.Random(3))
    lead = net.wait_leader()
    net.agree(b"a")
    others = [n for n in (1, 2, 3) if n != lead]
    before = {n: (net.core(n).term, net.core(n).vote) for n in (1, 2, 3)}
    net.cut(lead, others[0])  # others[0] loses the leader; others[1] still hears it
    net.tick_until(lambda: net.sent_by[(others[0], MT.PRE_VOTE)] > 0, 4 * ELECTION)
    net.tick(count=10 * ELECTION)
    assert net.core(others[0]).role in (Role.FOLLOWER, Role.PRE_CANDIDATE)
    assert {n: (net.core(n).term, net.core(n).vote) for n in (1, 2, 3)} == before
    assert net.leader_among([lead, others[1]]) == lead
    net.recover()
    net.tick(count=2)
    assert net.leader_among([1, 2, 3]) == lead


@pytest.mark.parametrize("phase", range(0, ELECTION, 3))
def test_checkquorum_leader_steps_down_when_cut_off(phase: int) -> None:
    """A leader cut off from the majority steps down at the end of the first full election
    timeout in which no quorum answered it: the check runs once per election timeout, so
    that is one to two election timeouts after the cut depending on where in the period
    the cut falls (etcd's CheckQuorum); the majority elects a new leader. thesis §6.2"""
    net = Network(5, random.Random(4))
    lead = net.wait_leader()
    net.tick(count=phase)
    net.isolate(lead)
    ticks = net.tick_until(lambda: net.core(lead).role != Role.LEADER, 3 * ELECTION)
    assert ticks <= 2 * ELECTION
    rest = [n for n in range(1, 6) if n != lead]
    net.wait_leader(rest, max_ticks=4 * ELECTION)


def test_checkquorum_leader_with_a_quorum_stays() -> None:
    """A leader that still reaches a quorum (a minority cut off) keeps leading. thesis §6.2"""
    net = Network(5, random.Random(5))
    lead = net.wait_leader()
    term = net.core(lead).term
    for node in [n for n in range(1, 6) if n != lead][:2]:
        net.isolate(node)
    net.tick(count=10 * ELECTION)
    assert net.core(lead).role == Role.LEADER and net.core(lead).term == term


def test_without_checkquorum_a_cut_off_leader_stays_leader() -> None:
    """The contrast: without CheckQuorum a cut-off leader believes in itself forever.
    thesis §6.2"""
    net = Network(3, random.Random(6), check_quorum=False)
    lead = net.wait_leader()
    net.isolate(lead)
    net.tick(nodes=[lead], count=20 * ELECTION)
    assert net.core(lead).role == Role.LEADER


def test_leader_lease_ignores_disruptive_vote_request() -> None:
    """With CheckQuorum, a follower that heard from the leader within the election
    timeout ignores a VOTE with a higher term: a flapping node cannot depose a healthy
    leader. thesis §6.2, §4.2.3"""
    net = Network(3, random.Random(7), pre_vote=False)
    lead = net.wait_leader()
    term = net.core(lead).term
    follower, other = [n for n in (1, 2, 3) if n != lead]
    net.tick(count=2)
    net.step(follower, Message(type=MT.VOTE, from_=other, to=follower, term=term + 5,
                               index=1000, log_term=term + 4))
    assert net.core(follower).term == term and net.core(follower).vote == lead
    assert net.leader_among([1, 2, 3]) == lead


def test_stuck_candidate_is_freed_with_checkquorum() -> None:
    """CheckQuorum without PreVote: a node that campaigned alone has a higher term; the
    lease makes the others ignore its votes, but its answer to the leader's (stale)
    heartbeats carries its term, so the cluster moves to it and elects again instead of
    leaving it stuck forever (etcd TestFreeStuckCandidateWithCheckQuorum). thesis §6.2"""
    net = Network(3, random.Random(8), pre_vote=False)
    lead = net.wait_leader()
    loner = next(n for n in (1, 2, 3) if n != lead)
    net.isolate(loner)
    net.tick(count=6 * ELECTION)
    high = net.core(loner).term
    assert high > net.core(lead).term
    net.recover()
    net.wait_leader(max_ticks=10 * ELECTION)
    assert min(net.core(n).term for n in (1, 2, 3)) >= high


@pytest.mark.parametrize("seed", range(3))
def test_prevote_checkquorum_partitions_keep_a_leader(seed: int) -> None:
    """Random partitions and heals with PreVote and CheckQuorum on: whenever a majority is
    connected, it has a leader within a few election timeouts, and a stable cluster's
    term stops growing. thesis §9.6, §6.2"""
    rng = random.Random(seed)
    net = Network(5, rng)
    for _ in range(10):
        cut = rng.sample(range(1, 6), rng.randrange(0, 3))
        for node in cut:
            net.isolate(node)
        connected = [n for n in range(1, 6) if n not in cut]
        net.wait_leader(connected, max_ticks=8 * ELECTION)
        net.tick(count=rng.randrange(1, 3 * ELECTION))
        net.recover()
    lead = net.wait_leader(max_ticks=8 * ELECTION)
    term = net.core(lead).term
    net.tick(count=20 * ELECTION)
    assert net.leader_among(list(range(1, 6))) == lead and net.core(lead).term == term
