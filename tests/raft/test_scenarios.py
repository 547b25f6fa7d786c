"""Named scenarios every serious Raft is tested against, on a network the test controls.

Each test drives whole clusters through ``tests/raft/network.py`` (no clock, no threads,
one seeded ``random.Random``) and says in its docstring which section of the Raft paper
(Ongaro & Ousterhout 2014, "§5.x") or of Ongaro's thesis ("thesis §x") it exercises. The
network checks election safety, state machine safety, leader completeness and monotonic
commit on every step, so each scenario is also a safety test.
"""

from __future__ import annotations

import random

import pytest

from coord_server.raft import (
    Config,
    ConfState,
    MemoryStorage,
    Message,
    MessageType,
    NotLeaderError,
    ProposalDroppedError,
    RaftCore,
    Role,
)

from .network import Network, crafted_storage

MT = MessageType
ELECTION = 10  # the network's default election tick


def terms_of(net: Network, nodes: list[int] | None = None) -> set[int]:
    return {net.core(n).term for n in (nodes or net.alive())}


# ============================================================================ elections


@pytest.mark.parametrize("size", [1, 3, 5])
def test_initial_election(size: int) -> None:
    """A fresh cluster elects exactly one leader, every node agrees on it and its term,
    and with no failures the leader keeps its job. §5.2"""
    net = Network(size, random.Random(size))
    lead = net.wait_leader(max_ticks=3 * ELECTION)
    term = net.core(lead).term
    assert terms_of(net) == {term}
    assert all(net.core(n).lead == lead for n in net.alive())
    net.tick(count=20 * ELECTION)
    assert net.leader_among(net.alive()) == lead
    assert terms_of(net) == {term}, "a healthy cluster held a spurious election"


def test_election_needs_a_majority() -> None:
    """A candidate wins only with votes from a majority: with black holes in place of
    some nodes, it wins exactly when the live ones are a majority (etcd
    TestLeaderElection). §5.2"""
    cases = [
        ([1, 2, 3], [True, True, True], True),
        ([1, 2, 3], [True, True, False], True),
        ([1, 2, 3], [True, False, False], False),
        ([1, 2, 3, 4], [True, False, False, True], False),
        ([1, 2, 3, 4, 5], [True, False, False, True, True], True),
    ]
    for voters, present, wins in cases:
        cores = [
            RaftCore(Config(id=n, pre_vote=False, check_quorum=False),
                     MemoryStorage(ConfState(voters=frozenset(voters))), random.Random(n))
            if here else None
            for n, here in zip(voters, present)
        ]
        net = Network(cores, random.Random(7))
        net.campaign(1)
        assert (net.core(1).role == Role.LEADER) is wins, (voters, present)
        assert net.core(1).term == 1


def test_reelection_after_leader_loss() -> None:
    """When the leader is cut off, the others elect a new one within a few election
    timeouts; the old leader rejoining does not disturb it; with no majority nobody is
    elected, and once a majority is back a leader is. §5.2 (MIT 6.824 TestReElection)"""
    net = Network(3, random.Random(11))
    first = net.wait_leader()
    net.isolate(first)
    rest = [n for n in (1, 2, 3) if n != first]
    second = net.wait_leader(rest, max_ticks=4 * ELECTION)
    assert second != first
    net.recover()
    net.tick(count=2 * ELECTION)
    assert net.leader_among([1, 2, 3]) == second, "the old leader disrupted the new one"

    # No majority: no leader among the two that are cut off from each other and from it.
    net.isolate(second)
    other = next(n for n in rest if n != second)
    net.isolate(other)
    net.tick(count=6 * ELECTION)
    assert net.leader_among([first, other]) is None
    # A majority again: a leader.
    net.recover()
    net.isolate(second)
    net.wait_leader([first, other], max_ticks=6 * ELECTION)


@pytest.mark.parametrize("seed", range(3))
def test_many_elections(seed: int) -> None:
    """Cut random minorities off, again and again: there is never more than one leader
    in a term (checked by the network on every step), and whenever a majority is
    connected it elects a leader. §5.2 (MIT 6.824 TestManyElections)"""
    rng = random.Random(seed)
    net = Network(7, rng)
    net.wait_leader()
    for _ in range(12):
        cut = rng.sample(range(1, 8), 3)
        for node in cut:
            net.isolate(node)
        connected = [n for n in range(1, 8) if n not in cut]
        net.wait_leader(connected, max_ticks=8 * ELECTION)
        net.recover()
    net.wait_leader(max_ticks=8 * ELECTION)


# ============================================================================ agreement


def test_basic_agreement() -> None:
    """A proposal on the leader is replicated, committed and applied on every node, at
    consecutive indexes, in order. §5.3"""
    net = Network(3, random.Random(1))
    lead = net.wait_leader()
    start = net.core(lead).log.last_index()
    for i in range(1, 6):
        index = net.agree(f"cmd{i}".encode())
        assert index == start + i
    for node in (1, 2, 3):
        assert net.nodes[node].sm.values() == [f"cmd{i}".encode() for i in range(1, 6)]
    net.check_log_matching()


def test_agreement_despite_failed_follower() -> None:
    """A majority keeps committing while a follower is unreachable, and the follower
    catches up once it is back. §5.3 (MIT 6.824 TestFailAgree)"""
    net = Network(3, random.Random(2))
    lead = net.wait_leader()
    net.agree(b"101")
    down = next(n for n in (1, 2, 3) if n != lead)
    net.isolate(down)
    for value in (b"102", b"103", b"104"):
        net.agree(value, expected=2)
    assert b"102" not in net.nodes[down].sm.values()
    net.recover()
    net.agree(b"105")
    assert net.nodes[down].sm.values() == [b"101", b"102", b"103", b"104", b"105"]


def test_no_agreement_without_quorum() -> None:
    """With a majority of followers unreachable, a proposal is appended but never
    committed; when they return, agreement resumes. §5.3 (MIT 6.824 TestFailNoAgree)"""
    net = Network(5, random.Random(3))
    lead = net.wait_leader()
    net.agree(b"10")
    followers = [n for n in range(1, 6) if n != lead]
    for node in followers[:3]:
        net.isolate(node)
    index = net.propose(lead, b"20")
    net.tick(count=2 * ELECTION)
    assert all(net.nodes[n].sm.applied < index for n in range(1, 6))
    assert net.core(lead).log.committed < index
    net.recover()
    after = net.agree(b"30", max_ticks=10 * ELECTION)
    assert after >= index
    # Whoever leads now, the logs agree and each value was applied at most once.
    values = net.nodes[lead].sm.values()
    assert values.count(b"20") <= 1 and values[-1] == b"30"
    net.check_log_matching()


def test_concurrent_proposals() -> None:
    """Proposals made on the leader before any of them is replicated get distinct,
    consecutive indexes and all commit in the order proposed. §5.3 (6.824 TestConcurrentStarts)"""
    net = Network(3, random.Random(4))
    lead = net.wait_leader()
    core = net.core(lead)
    net.hold(lead)  # as if the leader's disk were busy: proposals pile up (group commit)
    indexes = [core.propose(f"c{i}".encode()) for i in range(10)]
    assert indexes == list(range(indexes[0], indexes[0] + 10))
    net.release(lead)
    for node in (1, 2, 3):
        assert net.nodes[node].sm.values() == [f"c{i}".encode() for i in range(10)]


def test_rejoin_of_partitioned_leader() -> None:
    """A leader cut off from the majority keeps appending entries nobody acknowledges;
    a new leader commits others at those indexes; when the old leader rejoins, its
    uncommitted entries are replaced by the new leader's. §5.3, §5.4 (6.824 TestRejoin)"""
    net = Network(3, random.Random(5), check_quorum=False)
    leader1 = net.wait_leader()
    net.agree(b"101")
    net.isolate(leader1)
    orphan = [net.propose(leader1, v) for v in (b"102", b"103", b"104")]
    orphan_term = net.core(leader1).term
    rest = [n for n in (1, 2, 3) if n != leader1]
    leader2 = net.wait_leader(rest)
    net.agree(b"103", expected=2)
    net.recover()  # the old leader is back...
    net.isolate(leader2)  # ...and the new one is cut off
    net.agree(b"104", expected=2, max_ticks=10 * ELECTION)
    net.recover()
    net.agree(b"105")
    for node in (1, 2, 3):
        assert net.nodes[node].sm.values() == [b"101", b"103", b"104", b"105"]
    # The old leader's log no longer holds any of its orphaned entries.
    old = net.core(leader1).log
    assert all(old.term(i) != orphan_term for i in orphan)
    net.check_log_matching()


def _count_rejects(net: Network, node: int) -> int:
    return sum(1 for m in net.trace or () if m.type == MT.APP_RESP and m.from_ == node and m.reject)


@pytest.mark.parametrize("shape", ["divergent", "lagging"])
def test_fast_backoff(shape: str) -> None:
    """A follower that is 60 entries off is brought in line in a few round trips, not one
    per entry: its rejection names the index and term where the logs can match and the
    leader skips the whole conflicting run. §5.3 (the optimisation at the end of the
    section; MIT 6.824 TestBackup)"""
    net = Network(5, random.Random(6), check_quorum=False)
    lead = net.wait_leader()
    net.agree(b"base")
    straggler = next(n for n in range(1, 6) if n != lead)
    if shape == "divergent":
        # The old leader and one follower take 60 entries that nobody else sees.
        others = [n for n in range(1, 6) if n not in (lead, straggler)]
        net.partition([lead, straggler], others)
        for i in range(60):
            net.propose(lead, f"lost{i}".encode())
        watched = lead
    else:
        others = [n for n in range(1, 6) if n != straggler]
        net.isolate(straggler)
        watched = straggler
    for i in range(60):
        net.agree(f"new{i}".encode(), expected=len(others), max_ticks=10 * ELECTION)
    # A further leader change among the majority, so that the leader the straggler meets
    # starts probing at its own (long) last index, far past the point of divergence.
    first_new = net.leader_among(others)
    assert first_new is not None
    target = next(n for n in others if n != first_new)
    net.step(first_new, Message(type=MT.TRANSFER_LEADER, from_=target))
    new_leader = net.wait_leader(others, max_ticks=6 * ELECTION)
    assert new_leader == target
    net.agree(b"after-change", expected=len(others))
    net.recover()
    net.trace = []
    net.tick(count=3)
    assert net.log_of(watched) == net.log_of(new_leader)
    rejects = _count_rejects(net, watched)
    assert 1 <= rejects <= 2, f"{rejects} rejected round trips to bring node {watched} in line"
    net.agree(b"done")
    net.check_log_matching()


@pytest.mark.parametrize(
    "leader_terms,follower_terms,max_rejects",
    [
        # Follower holds three older terms of entries the leader never had.
        ([1] * 3 + [5] * 60, [1] * 3 + [2] * 20 + [3] * 20 + [4] * 20, 1),
        # Interleaved histories: each side's terms alternate with the other's.
        ([1] * 3 + [2] * 20 + [4] * 20 + [6] * 20, [1] * 3 + [3] * 20 + [5] * 20 + [7] * 5, 3),
        # Follower far behind, leader's tail in many terms.
        ([1] * 3 + [t for t in range(2, 14) for _ in range(5)], [1] * 3, 1),
    ],
)
def test_fast_backoff_crafted_logs(
    leader_terms: list[int], follower_terms: list[int], max_rejects: int
) -> None:
    """Fast back-off on hand-built logs (etcd TestLeaderSyncFollowerLog): the number of
    rejected round trips grows with the number of conflicting *terms*, never with the
    number of conflicting entries. §5.3"""
    voters = [1, 2, 3]
    term = max(leader_terms + follower_terms)
    cores = [
        RaftCore(Config(id=1, pre_vote=False, check_quorum=False),
                 crafted_storage(voters, leader_terms, term=term), random.Random(1)),
        RaftCore(Config(id=2, pre_vote=False, check_quorum=False),
                 crafted_storage(voters, leader_terms, term=term), random.Random(2)),
        RaftCore(Config(id=3, pre_vote=False, check_quorum=False),
                 crafted_storage(voters, follower_terms, term=term), random.Random(3)),
    ]
    net = Network(cores, random.Random(0))
    net.trace = []
    net.campaign(1)
    assert net.core(1).role == Role.LEADER
    assert net.log_of(3) == net.log_of(1)
    rejects = _count_rejects(net, 3)
    assert rejects <= max_rejects, f"{rejects} rejected round trips"


@pytest.mark.parametrize("size", [3, 5])
def test_bounded_messages_per_agreement(size: int) -> None:
    """In a healthy cluster one proposal costs a fixed number of messages, whatever the
    log length: an APP and its answer to each follower, and a COMMIT carrying the new
    commit index, which is not answered. §5.3 (6.824 TestCount)"""
    net = Network(size, random.Random(8))
    lead = net.wait_leader()
    net.agree(b"warm-up")
    bound = 3 * (size - 1)
    for round_ in range(3):
        for i in range(50 * round_):
            net.agree(f"filler{i}".encode())
        net.sent.clear()
        index = net.propose(lead, b"counted")
        assert len(net.committed_on(index)) == size, "not committed without a tick"
        total = sum(net.sent.values())
        assert total <= bound, f"{total} messages for one proposal ({dict(net.sent)})"
        assert set(net.sent) <= {MT.APP, MT.APP_RESP, MT.COMMIT}
    # A batch of proposals (what the server's group commit hands the core) costs no more.
    net.sent.clear()
    net.propose_batch(lead, [f"batch{i}".encode() for i in range(20)])
    assert net.nodes[lead].sm.values()[-1] == b"batch19"
    assert sum(net.sent.values()) <= bound


# ========================================================================== persistence


def test_persistence_all_nodes_restart() -> None:
    """Term, vote and log are persisted: after every node crashes and restarts, all
    committed entries are still there and the cluster goes on. §5, Figure 2
    (6.824 TestPersist1)"""
    net = Network(3, random.Random(9))
    net.wait_leader()
    net.agree(b"11")
    before = {n: (net.core(n).term, net.core(n).vote) for n in (1, 2, 3)}
    for node in (1, 2, 3):
        net.crash(node)
    for node in (1, 2, 3):
        net.restart(node)
        assert (net.core(node).term, net.core(node).vote) == before[node]
    net.wait_leader(max_ticks=6 * ELECTION)
    net.agree(b"12")
    for node in (1, 2, 3):
        assert net.nodes[node].sm.values() == [b"11", b"12"]


def test_persistence_leader_restarts() -> None:
    """A crashed leader restarts as a follower with its log intact and rejoins. §5,
    Figure 2 (6.824 TestPersist1)"""
    net = Network(3, random.Random(10))
    lead = net.wait_leader()
    net.agree(b"1")
    net.crash(lead)
    rest = [n for n in (1, 2, 3) if n != lead]
    net.wait_leader(rest, max_ticks=6 * ELECTION)
    net.agree(b"2", expected=2)
    net.restart(lead)
    assert net.core(lead).role == Role.FOLLOWER
    net.agree(b"3")
    assert net.nodes[lead].sm.values() == [b"1", b"2", b"3"]


def test_persistence_follower_restarts_after_missing_entries() -> None:
    """A follower that was down while entries committed restarts from its own storage
    and is caught up by the leader. §5, Figure 2 (6.824 TestPersist2)"""
    net = Network(5, random.Random(11))
    lead = net.wait_leader()
    net.agree(b"a")
    down = [n for n in range(1, 6) if n != lead][:2]
    for node in down:
        net.crash(node)
    for value in (b"b", b"c", b"d"):
        net.agree(value, expected=3)
    for node in down:
        net.restart(node)
        assert net.nodes[node].sm.values() == [b"a"]
    net.agree(b"e")
    for node in down:
        assert net.nodes[node].sm.values() == [b"a", b"b", b"c", b"d", b"e"]


def test_crash_before_persisting_follower_append() -> None:
    """A follower that crashes between receiving entries and persisting them never
    acknowledged them, so the leader never counted it; the entries commit with the
    others and the follower gets them again after restarting. §5.3, thesis §10.2.1"""
    net = Network(3, random.Random(12))
    lead = net.wait_leader()
    net.agree(b"x")
    slow, other = [n for n in (1, 2, 3) if n != lead]
    net.hold(slow)
    net.cut(lead, other)  # only the slow follower could make a majority
    index = net.propose(lead, b"y")
    assert net.core(slow).log.last_index() == index  # appended, not yet persisted
    rd = net.crash_holding(slow)
    assert rd is not None and [m.type for m in rd.persisted_messages] == [MT.APP_RESP]
    assert net.core(lead).log.committed < index, "the leader counted an unpersisted ack"
    net.restart(slow)
    assert net.nodes[slow].storage.last_index() < index
    net.recover()
    net.agree(b"z")
    for node in (1, 2, 3):
        assert net.nodes[node].sm.values() == [b"x", b"y", b"z"]


def test_crash_before_persisting_a_vote() -> None:
    """A vote is sent only once persisted: a voter that crashes before persisting its vote
    never sent it and comes back without it, so whatever it votes afterwards cannot make
    two leaders in one term (the network checks election safety). §5.2, Figure 2
    (votedFor is persistent state)"""
    net = Network(3, random.Random(13), pre_vote=False, check_quorum=False)
    lead = net.wait_leader()
    candidate, voter = [n for n in (1, 2, 3) if n != lead]
    net.cut(candidate, lead)
    net.hold(voter)
    net.campaign(candidate)  # the voter grants in memory; the grant waits for the disk
    term = net.core(candidate).term
    assert net.core(voter).term == term and net.core(voter).vote == candidate
    rd = net.crash_holding(voter)
    assert rd is not None and [m.type for m in rd.persisted_messages] == [MT.VOTE_RESP]
    assert net.core(candidate).role == Role.CANDIDATE, "an unpersisted vote was counted"
    net.restart(voter)
    assert net.core(voter).term < term and net.core(voter).vote != candidate
    # The old leader may now win the same term with the restarted voter's vote.
    net.cut(candidate, voter)
    net.core(lead).become_follower(term - 1, 0)
    net.campaign(lead)
    assert net.core(lead).role == Role.LEADER and net.core(lead).term == term
    net.recover()
    net.agree(b"one-leader-per-term", max_ticks=6 * ELECTION)


@pytest.mark.parametrize("sent_early", [True, False])
def test_crash_of_leader_before_persisting_its_entries(sent_early: bool) -> None:
    """The leader may send APPs before its own write (thesis §10.2.1). If it crashes
    before persisting: when the APPs went out, the entry is on a majority and survives;
    when they did not, only unacknowledged state is lost, and nothing applied anywhere
    is contradicted (the network checks state machine safety). thesis §10.2.1, §5.4"""
    net = Network(3, random.Random(14))
    lead = net.wait_leader()
    net.agree(b"before")
    net.hold(lead)
    index = net.core(lead).propose(b"maybe")
    net.crash_holding(lead, send_early=sent_early)
    assert net.nodes[lead].storage.last_index() < index
    rest = [n for n in (1, 2, 3) if n != lead]
    net.wait_leader(rest, max_ticks=6 * ELECTION)
    net.restart(lead)
    net.agree(b"after")
    expected = [b"before", b"maybe", b"after"] if sent_early else [b"before", b"after"]
    for node in (1, 2, 3):
        assert net.nodes[node].sm.values() == expected


# ============================================================================= Figure 8


def _figure8_until_c(net: Network) -> int:
    """Figure 8 (a)-(c) with the network's bootstrap entries 1-5 and S1's no-op at 6;
    returns the index the figure calls 2."""
    net.campaign(1)
    assert net.core(1).role == Role.LEADER and net.core(1).term == 2
    # (a) S1 leads term 2 and replicates its entry at index 7 to S2 only.
    net.partition([1, 2], [3, 4, 5])
    index = net.propose(1, b"term2")
    assert net.core(2).log.term(index) == 2
    # (b) S1 crashes; S5 is elected for term 3 by S3, S4 and itself and appends its own
    # entry at that index, which it never gets to replicate.
    net.crash(1)
    net.recover()
    net.msg_hook = lambda m: not (m.from_ == 5 and m.type == MT.APP)
    net.campaign(5)
    assert net.core(5).role == Role.LEADER and net.core(5).term == 3
    assert net.core(5).log.term(index) == 3
    # (c) S5 crashes; S1 restarts, is elected for term 4 and replicates its term-2 entry
    # to S3 (now on S1, S2, S3: a majority), but not its own term-4 entry.
    net.crash(5)
    net.restart(1)
    net.cut(1, 4)
    # Every APP that would make a follower store S1's term-4 entry is lost (probes that
    # the follower rejects anyway pass, so the leader can find where the logs match).
    net.msg_hook = lambda m: not (
        m.type == MT.APP and m.from_ == 1 and any(e.index > index for e in m.entries)
        and net.core(m.to).log.match_term(m.index, m.log_term)
    )
    net.campaign(1)
    if net.core(1).role != Role.LEADER:
        net.campaign(1)
    assert net.core(1).role == Role.LEADER and net.core(1).term == 4
    for node in (1, 2, 3):
        assert net.core(node).log.term(index) == 2
    return index


def test_figure8_old_term_entry_not_committed_by_counting() -> None:
    """Figure 8 built step by step: an entry of an older term stored on a majority is not
    committed by counting replicas, because a server holding a newer-term entry at that
    index (S5) can still be elected and overwrite it, which it then does. §5.4.2"""
    net = Network(5, random.Random(15), pre_vote=False, check_quorum=False, max_entries_per_msg=1)
    index = _figure8_until_c(net)
    net.tick(count=3)  # heartbeats: still nothing of term 4 on anyone else
    assert net.core(1).log.committed < index, "§5.4.2: an old-term entry was committed by counting"
    # (d) S1 crashes; S5 restarts and wins with S2, S3, S4: its term-3 entry replaces the
    # term-2 one everywhere. Had S1 committed it, the network would flag the overwrite.
    net.crash(1)
    net.msg_hook = None
    net.recover()
    net.restart(5)
    net.campaign(5)
    if net.core(5).role != Role.LEADER:
        net.campaign(5)
    assert net.core(5).role == Role.LEADER
    net.tick(count=2)
    for node in (2, 3, 4, 5):
        assert net.core(node).log.term(index) == 3
        assert net.core(node).log.committed >= index


def test_figure8_current_term_entry_commits_both() -> None:
    """Figure 8 (e): once S1's term-4 entry is on a majority, it commits, and with it the
    term-2 entry before it; S5 can no longer be elected. §5.4.2"""
    net = Network(5, random.Random(16), pre_vote=False, check_quorum=False, max_entries_per_msg=1)
    index = _figure8_until_c(net)
    net.msg_hook = None
    net.tick(count=3)
    assert net.core(1).log.committed == index + 1
    net.crash(1)
    net.recover()
    net.restart(5)
    for _ in range(3):
        net.campaign(5)
        assert net.core(5).role != Role.LEADER
    for node in (2, 3):
        assert net.nodes[node].sm.values()[-1:] == [b"term2"]


def _figure8_random(seed: int, unreliable: bool, iterations: int) -> None:
    rng = random.Random(seed)
    net = Network(5, rng)
    if unreliable:
        net.set_unreliable(drop=0.1, duplicate=0.05, delay=0.2, reorder=True)
    net.agree(b"first", expected=1, max_ticks=20 * ELECTION)
    down: set[int] = set()
    for it in range(iterations):
        lead = None
        for node in net.alive():
            if node not in down and net.core(node).role == Role.LEADER:
                net.propose(node, f"v{it}.{node}".encode())
                lead = node
        if rng.random() < 0.1:
            net.tick(count=rng.randrange(ELECTION, 3 * ELECTION))
        else:
            net.tick(count=rng.randrange(1, 4))
        if lead is not None and rng.random() < 0.5:
            if unreliable:
                net.isolate(lead)
            else:
                net.crash(lead)
            down.add(lead)
        if len(down) > 2:
            back = rng.choice(sorted(down))
            down.discard(back)
            if unreliable:
                net.recover()
                for node in down:
                    net.isolate(node)
            else:
                net.restart(back)
    net.set_reliable()
    net.recover()
    for node in sorted(down):
        if not net.nodes[node].alive:
            net.restart(node)
    net.agree(b"last", max_ticks=30 * ELECTION)
    net.check_log_matching()
    # Every entry applied anywhere, at any time, is applied on every node now.
    top = max(net.applied)
    for node in range(1, 6):
        sm = net.nodes[node].sm
        assert sm.applied == top
        assert sm.data == [(i, e.data) for i, e in sorted(net.applied.items()) if e.data and e.type == 0]


@pytest.mark.parametrize("seed", range(20))
def test_figure8_randomized(seed: int) -> None:
    """MIT 6.824's Figure 8 test: leaders crash right after proposing, at random, for a
    hundred rounds; a majority is always up; no applied entry is ever contradicted and
    at the end everything committed is on every node. §5.4.2"""
    _figure8_random(seed, unreliable=False, iterations=100)


@pytest.mark.parametrize("seed", range(15))
def test_figure8_unreliable(seed: int) -> None:
    """Figure 8 under an unreliable network (drops, duplicates, reordering, delays across
    ticks) with leaders partitioned away at random. §5.4.2, §5.5"""
    _figure8_random(seed, unreliable=True, iterations=100)


# ====================================================================== unreliable, churn


@pytest.mark.parametrize("seed", range(3))
def test_unreliable_agreement(seed: int) -> None:
    """Agreement under drops, duplicates, reordering and delays: every value is applied
    in the same order on every node. §5.3, §5.5 (retries are idempotent)"""
    net = Network(5, random.Random(seed))
    net.set_unreliable(drop=0.1, duplicate=0.1, delay=0.2, reorder=True)
    for i in range(30):
        net.agree(f"u{i}".encode(), expected=1, max_ticks=30 * ELECTION)
    net.set_reliable()
    net.agree(b"end", max_ticks=10 * ELECTION)
    reference = net.nodes[1].sm.data
    assert all(net.nodes[n].sm.data == reference for n in range(1, 6))
    values = [d for _, d in reference]
    assert all(f"u{i}".encode() in values for i in range(30))


@pytest.mark.parametrize(
    "seed,unreliable,overlapped_writes",
    [(0, False, False), (1, False, False), (2, True, False), (3, True, False),
     (4, False, True), (5, True, True)],
)
def test_churn(seed: int, unreliable: bool, overlapped_writes: bool) -> None:
    """Nodes crash and restart at random while proposals keep coming; whatever was
    committed survives and every node ends with the same state. With overlapped writes,
    nodes keep stepping messages while their disk writes are outstanding and some crash
    in the middle of one, losing it. §5, §5.4, thesis §10.2.1 (6.824 TestReliableChurn /
    TestUnreliableChurn)"""
    rng = random.Random(seed)
    net = Network(5, rng)
    if unreliable:
        net.set_unreliable(drop=0.05, duplicate=0.05, delay=0.1, reorder=True)
    if overlapped_writes:
        net.async_persist = 0.5
        net.crash_in_write = 0.005
    for step in range(150):
        lead = net.leader()
        if lead is not None:
            try:
                net.propose(lead, f"c{step}".encode())
            except ProposalDroppedError:
                pass
        roll = rng.random()
        alive = net.alive()
        if roll < 0.08 and len(alive) > 1:
            net.crash(rng.choice(alive))
        elif roll < 0.2:
            dead = [n for n in range(1, 6) if n not in alive]
            if dead:
                net.restart(rng.choice(dead))
        net.tick(count=rng.randrange(1, 5))
    net.set_reliable()
    net.crash_in_write = 0.0
    for node in range(1, 6):
        if not net.nodes[node].alive:
            net.restart(node)
    net.agree(b"final", max_ticks=30 * ELECTION)
    top = max(net.applied)
    committed = [(i, e.data) for i, e in sorted(net.applied.items()) if e.data and e.type == 0]
    for node in range(1, 6):
        assert net.nodes[node].sm.applied == top
        assert net.nodes[node].sm.data == committed
    net.check_log_matching()


def test_proposal_on_follower_names_the_leader() -> None:
    """A follower refuses a proposal at once with NotLeaderError carrying the leader's id
    (the client retries there); a candidate refuses with no leader known. §5.1, §8"""
    net = Network(3, random.Random(17))
    lead = net.wait_leader()
    follower = next(n for n in (1, 2, 3) if n != lead)
    with pytest.raises(NotLeaderError) as info:
        net.propose(follower, b"x")
    assert info.value.leader == lead
    assert str(lead) in str(info.value)
    assert net.core(follower).log.last_index() == net.core(lead).log.last_index()
    net.isolate(follower)
    net.tick_until(lambda: net.core(follower).role != Role.FOLLOWER, 4 * ELECTION)
    with pytest.raises(ProposalDroppedError) as dropped:
        net.propose(follower, b"y")
    assert dropped.value.leader == 0
