"""A follower told its connection from the leader broke (RaftCore.leader_lost: the
leader's process died) campaigns after a short timeout instead of a whole randomised
election timeout, and one follower told so alone cannot unseat a live leader."""

from __future__ import annotations

import random

from coord_server.raft import Role

from .network import Network

ELECTION = 10
SHORT = 3


def test_a_dead_leader_is_replaced_within_the_short_timeout() -> None:
    for seed in range(5):
        net = Network(3, random.Random(seed))
        lead = net.wait_leader()
        term = net.core(lead).term
        net.crash(lead)
        others = [n for n in (1, 2, 3) if n != lead]
        for n in others:
            net.core(n).leader_lost(lead, SHORT)
        took = net.tick_until(lambda: net.leader_among(others) is not None, 4 * ELECTION)
        # Without leader_lost no election starts before ELECTION ticks (the lease, then
        # the randomised timeout of ELECTION..2*ELECTION); with it, within 2 * SHORT plus
        # the pre-vote and vote rounds.
        assert took <= 2 * SHORT + 2, (seed, took)
        assert net.core(net.leader_among(others)).term == term + 1


def test_without_it_the_election_waits_for_the_whole_timeout() -> None:
    net = Network(3, random.Random(0))
    lead = net.wait_leader()
    net.crash(lead)
    others = [n for n in (1, 2, 3) if n != lead]
    took = net.tick_until(lambda: net.leader_among(others) is not None, 4 * ELECTION)
    assert took >= ELECTION


def test_one_follower_losing_its_link_does_not_unseat_a_live_leader() -> None:
    net = Network(3, random.Random(7))
    lead = net.wait_leader()
    net.agree(b"a")
    term = net.core(lead).term
    loner = next(n for n in (1, 2, 3) if n != lead)
    net.cut(lead, loner)
    net.core(loner).leader_lost(lead, SHORT)
    net.tick(count=6 * ELECTION)
    assert net.leader_among([1, 2, 3]) == lead or net.core(lead).role == Role.LEADER
    assert {net.core(n).term for n in (1, 2, 3) if n != loner} == {term}
    net.recover()
    net.tick(count=2 * ELECTION)
    assert net.leader_among([1, 2, 3]) == lead and net.core(loner).term == term


def test_hearing_the_leader_again_restores_the_usual_timeout() -> None:
    net = Network(3, random.Random(11))
    lead = net.wait_leader()
    follower = next(n for n in (1, 2, 3) if n != lead)
    net.core(follower).leader_lost(lead, SHORT)
    assert net.core(follower).randomized_election_timeout <= net.core(follower).election_elapsed + 2 * SHORT
    net.tick(count=1)  # the leader's heartbeat arrives within a tick here
    net.tick_until(lambda: net.core(follower).election_elapsed == 0, ELECTION)
    assert net.core(follower).randomized_election_timeout >= ELECTION
    assert net.leader_among([1, 2, 3]) == lead
