"""Linearizable reads by ReadIndex (Raft thesis §6.4) on the controllable network.

The leader records its commit index as the read point, confirms with a heartbeat round
that a quorum still follows it, and only then releases the read; a follower forwards its
request to the leader. A read point is correct when it is at least the index of every
write that was committed anywhere before the read was asked for.
"""

from __future__ import annotations

import random

import pytest

from coord_server.raft import Message, MessageType, ProposalDroppedError, Role

from .network import Network

MT = MessageType
ELECTION = 10


def committed_anywhere(net: Network) -> int:
    """The highest index committed on any live node or applied anywhere so far."""
    live = [net.core(n).log.committed for n in net.alive()]
    return max(live + list(net.applied))


def test_leader_read_index_needs_a_quorum_round() -> None:
    """The leader answers with its commit index only after a heartbeat round carrying the
    request's context is acknowledged by a quorum. thesis §6.4"""
    net = Network(3, random.Random(1))
    lead = net.wait_leader()
    net.agree(b"w1")
    commit = net.core(lead).log.committed
    net.trace = []
    net.core(lead).read_index(b"r1")
    net.process(lead)
    beats = [m for m in net.trace if m.type == MT.HEARTBEAT and m.context == b"r1"]
    assert sorted(m.to for m in beats) == sorted(n for n in (1, 2, 3) if n != lead)
    [state] = net.nodes[lead].read_states
    assert (state.index, state.context) == (commit, b"r1")


def test_read_index_waits_while_no_quorum_answers() -> None:
    """Cut off from its followers, the leader cannot confirm its leadership and serves
    nothing; once they are back, the pending read is released. thesis §6.4"""
    net = Network(3, random.Random(2), check_quorum=False)
    lead = net.wait_leader()
    net.isolate(lead)
    net.core(lead).read_index(b"r")
    net.process(lead)
    net.tick(count=3 * ELECTION)
    assert net.nodes[lead].read_states == []
    net.recover()
    net.tick_until(lambda: bool(net.nodes[lead].read_states) or net.core(lead).role != Role.LEADER,
                   3 * ELECTION)


def test_deposed_leader_cannot_serve_read_index() -> None:
    """A leader cut off from the majority, which does not know it has been replaced, must
    not serve a ReadIndex read: the new leader committed writes it has never seen. Its
    heartbeats reach nobody that still follows it, so no read point is ever released;
    when it hears from the cluster it steps down. thesis §6.4"""
    net = Network(5, random.Random(3), check_quorum=False)
    old = net.wait_leader()
    net.agree(b"w1")
    net.isolate(old)
    rest = [n for n in range(1, 6) if n != old]
    new = net.wait_leader(rest, max_ticks=6 * ELECTION)
    net.agree(b"w2", expected=4)
    assert net.core(old).role == Role.LEADER  # it does not know
    net.core(old).read_index(b"stale?")
    net.process(old)
    net.tick(count=3 * ELECTION)
    assert net.nodes[old].read_states == []
    # Let it reach two nodes only (a minority with itself, and they follow the new term).
    net.recover()
    for a in range(1, 6):
        for b in range(1, 6):
            if a != b and {a, b} & {old} and not {a, b} & set(rest[:2]):
                net.cut(a, b)
    net.tick(count=2)
    assert net.core(old).role == Role.FOLLOWER
    assert net.nodes[old].read_states == []
    assert net.core(old).term == net.core(new).term


def test_follower_read_index_is_forwarded() -> None:
    """A follower's ReadIndex request goes to the leader, which confirms with a quorum and
    returns the read point; the follower serves the read once it applied that far.
    thesis §6.4"""
    net = Network(3, random.Random(4))
    lead = net.wait_leader()
    net.agree(b"w1")
    follower = next(n for n in (1, 2, 3) if n != lead)
    net.trace = []
    net.core(follower).read_index(b"f1")
    net.process(follower)
    kinds = [(m.type, m.from_, m.to) for m in net.trace]
    assert (MT.READ_INDEX, follower, lead) in kinds
    assert (MT.READ_INDEX_RESP, lead, follower) in kinds
    [state] = net.nodes[follower].read_states
    assert state.context == b"f1" and state.index == net.core(lead).log.committed
    assert net.nodes[follower].sm.applied >= state.index


def test_new_leader_defers_reads_until_its_term_commits() -> None:
    """A new leader does not know the latest commit index until an entry of its own term
    commits, so it holds ReadIndex requests until then. thesis §6.4 step 1"""
    net = Network(3, random.Random(5))
    net.wait_leader()
    net.agree(b"w1")
    net.msg_hook = lambda m: m.type != MT.APP_RESP
    lead = net.leader()
    assert lead is not None
    target = next(n for n in (1, 2, 3) if n != lead)
    net.step(lead, Message(type=MT.TRANSFER_LEADER, from_=target))
    assert net.core(target).role == Role.LEADER
    noop = net.core(target).log.last_index()
    assert net.core(target).log.committed < noop
    net.core(target).read_index(b"early")
    net.process(target)
    net.tick(count=2)
    assert net.nodes[target].read_states == []
    net.msg_hook = None
    net.tick(count=2)
    [state] = net.nodes[target].read_states
    assert state.index >= noop


def test_read_index_without_leader_fails_fast() -> None:
    """With no leader known, a ReadIndex request fails at once (retry later) instead of
    hanging. thesis §6.4"""
    net = Network(3, random.Random(6))
    with pytest.raises(ProposalDroppedError):
        net.core(1).read_index(b"nobody")


@pytest.mark.parametrize("seed", range(4))
def test_read_index_linearizable_under_faults(seed: int) -> None:
    """Reads asked on random nodes while leaders change, messages are lost, duplicated and
    reordered, and nodes are partitioned: every read point released is at least the
    highest index committed anywhere when the read was asked. thesis §6.4"""
    rng = random.Random(seed)
    net = Network(5, rng, check_quorum=bool(seed % 2))
    net.set_unreliable(drop=0.1, duplicate=0.05, delay=0.1, reorder=True)
    required: dict[bytes, int] = {}
    served = 0
    for step in range(250):
        lead = net.leader()
        if lead is not None:
            try:
                net.propose(lead, f"w{step}".encode())
            except ProposalDroppedError:
                pass
        node = rng.choice(net.alive())
        ctx = f"r{step}".encode()
        required[ctx] = committed_anywhere(net)
        try:
            net.core(node).read_index(ctx)
            net.process(node)
        except ProposalDroppedError:
            pass
        roll = rng.random()
        if roll < 0.05:
            net.isolate(rng.randrange(1, 6))
        elif roll < 0.15:
            net.recover()
        net.tick(count=rng.randrange(1, 4))
        for n in net.alive():
            for state in net.nodes[n].read_states:
                assert state.index >= required[state.context], (
                    f"node {n} served read {state.context!r} at {state.index}, but "
                    f"{required[state.context]} was committed before it was asked"
                )
                served += 1
            net.nodes[n].read_states.clear()
    assert served > 50
