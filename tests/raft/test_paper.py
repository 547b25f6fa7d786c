"""One test per claim of the Raft paper (Ongaro & Ousterhout, 2014), §5.1 to §5.4.2.

Each test has three parts: *init* builds one core directly (no event loop, no clock, no
network), *test* steps hand-made messages or ticks into it, *check* asserts on the core's
state and on the messages it produced. Each docstring ends with the section it covers.
(The shape of etcd-io/raft's raft_paper_test.go.)
"""

from __future__ import annotations

import random

import pytest

from coord_server.raft import (
    Config,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    NotLeaderError,
    RaftCore,
    Role,
)
from tests.sim.ready import persist

MT = MessageType


def new_core(
    node: int = 1,
    peers: tuple[int, ...] = (1, 2, 3),
    stored: list[Entry] | None = None,
    term: int = 0,
    pre_vote: bool = False,
    check_quorum: bool = False,
    election_tick: int = 10,
    seed: int = 0,
) -> RaftCore:
    storage = MemoryStorage(ConfState(voters=frozenset(peers)))
    if stored:
        storage.append(stored)
    if term:
        storage.set_hard_state(HardState(term=term))
    config = Config(id=node, election_tick=election_tick, heartbeat_tick=1,
                    pre_vote=pre_vote, check_quorum=check_quorum)
    return RaftCore(config, storage, random.Random(seed))


def drain(core: RaftCore) -> list[Message]:
    """Persist and apply the core's Ready as a driver would; return every message sent."""
    if not core.has_ready():
        return []
    rd = core.ready()
    storage: MemoryStorage = core.log.storage  # type: ignore[assignment]
    persist(storage, rd)
    core.advance(rd)
    return rd.messages + rd.persisted_messages


def make_leader(core: RaftCore) -> None:
    """Win an election by hand: campaign, then collect every other voter's vote."""
    core.campaign()
    for peer in sorted(core.voters - {core.id}):
        core.step(Message(type=MT.VOTE_RESP, from_=peer, to=core.id, term=core.term))
    assert core.role == Role.LEADER
    drain(core)


def entries(*terms: int, start: int = 1) -> list[Entry]:
    return [Entry(term=t, index=start + i) for i, t in enumerate(terms)]


# ---------------------------------------------------------------------------- §5.1


@pytest.mark.parametrize("role", ["follower", "candidate", "leader"])
def test_update_term_from_message(role: str) -> None:
    """A server that sees a larger term adopts it and becomes a follower. Raft §5.1"""
    core = new_core()
    if role == "candidate":
        core.campaign()
    elif role == "leader":
        make_leader(core)
    core.step(Message(type=MT.APP, from_=2, to=1, term=5))
    assert core.term == 5
    assert core.role == Role.FOLLOWER


def test_reject_stale_term_message() -> None:
    """A request with a stale term is ignored (and answered with our term). Raft §5.1"""
    core = new_core(term=2)
    drain(core)
    core.step(Message(type=MT.APP, from_=2, to=1, term=1, index=0, entries=tuple(entries(1))))
    assert core.log.last_index() == 0
    sent = drain(core)
    assert [(m.type, m.term) for m in sent] == [(MT.APP_RESP, 2)]


# ---------------------------------------------------------------------------- §5.2


def test_start_as_follower() -> None:
    """When servers start up, they begin as followers. Raft §5.2"""
    core = new_core()
    assert core.role == Role.FOLLOWER
    assert core.term == 0


def test_leader_broadcasts_heartbeats() -> None:
    """The leader sends heartbeats to every follower each heartbeat interval. Raft §5.2"""
    core = new_core()
    make_leader(core)
    drain(core)
    core.tick()
    sent = drain(core)
    assert sorted((m.to, m.type) for m in sent) == [(2, MT.HEARTBEAT), (3, MT.HEARTBEAT)]


@pytest.mark.parametrize("start_as_candidate", [False, True])
def test_non_leader_starts_election(start_as_candidate: bool) -> None:
    """With no word from a leader for an election timeout, a server increments its term,
    votes for itself and asks every other server for its vote. Raft §5.2"""
    core = new_core(election_tick=10)
    if start_as_candidate:
        core.campaign()
        drain(core)
    term_before = core.term
    for _ in range(2 * 10):
        core.tick()
    assert core.role == Role.CANDIDATE
    assert core.term == term_before + 1
    assert core.vote == 1
    sent = [m for m in drain(core) if m.type == MT.VOTE]
    assert sorted(m.to for m in sent) == [2, 3]
    assert all(m.term == core.term for m in sent)


@pytest.mark.parametrize(
    "size,votes,expected",
    [
        (1, {}, Role.LEADER),
        (3, {2: True, 3: True}, Role.LEADER),
        (3, {2: True}, Role.LEADER),
        (5, {2: True, 3: True, 4: True, 5: True}, Role.LEADER),
        (5, {2: True, 3: True}, Role.LEADER),
        (3, {}, Role.CANDIDATE),
        (5, {2: True}, Role.CANDIDATE),
        (5, {2: False, 3: False}, Role.CANDIDATE),
        (3, {2: False, 3: False}, Role.FOLLOWER),
        (5, {2: False, 3: False, 4: False}, Role.FOLLOWER),
    ],
)
def test_election_in_one_round(size: int, votes: dict[int, bool], expected: Role) -> None:
    """A candidate wins with a majority of votes, loses with a majority of refusals, and
    otherwise keeps waiting. Raft §5.2"""
    core = new_core(peers=tuple(range(1, size + 1)))
    core.campaign()
    for peer, granted in votes.items():
        core.step(Message(type=MT.VOTE_RESP, from_=peer, to=1, term=core.term, reject=not granted))
    assert core.role == expected
    assert core.term == 1


@pytest.mark.parametrize(
    "vote,candidate,granted",
    [(0, 2, True), (0, 3, True), (2, 2, True), (3, 3, True), (2, 3, False), (3, 2, False)],
)
def test_follower_votes_once_per_term(vote: int, candidate: int, granted: bool) -> None:
    """Each server votes for at most one candidate in a term, first come first served. Raft §5.2"""
    storage = MemoryStorage(ConfState(voters=frozenset({1, 2, 3})))
    storage.set_hard_state(HardState(term=1, vote=vote))
    core = RaftCore(Config(id=1, pre_vote=False, check_quorum=False), storage, random.Random(0))
    core.step(Message(type=MT.VOTE, from_=candidate, to=1, term=1))
    sent = drain(core)
    assert [(m.to, m.type, m.reject) for m in sent] == [(candidate, MT.VOTE_RESP, not granted)]


@pytest.mark.parametrize("term_offset", [0, 1])
def test_candidate_falls_back_on_leader_append(term_offset: int) -> None:
    """A candidate that hears from a leader of its term or later becomes a follower. Raft §5.2"""
    core = new_core()
    core.campaign()
    core.step(Message(type=MT.APP, from_=2, to=1, term=core.term + term_offset))
    assert core.role == Role.FOLLOWER
    assert core.lead == 2


def test_election_timeouts_are_randomized() -> None:
    """Election timeouts are chosen at random from [T, 2T), so split votes are rare. Raft §5.2"""
    timeouts = set()
    for seed in range(50):
        core = new_core(seed=seed, election_tick=10)
        ticks = 0
        while core.role == Role.FOLLOWER:
            core.tick()
            ticks += 1
        timeouts.add(ticks)
    assert min(timeouts) >= 10 and max(timeouts) < 20
    assert len(timeouts) > 5


def test_proposal_on_follower_names_the_leader() -> None:
    """Clients talk to the leader; a follower refuses at once and names it. Raft §5.1, §8"""
    core = new_core()
    core.step(Message(type=MT.HEARTBEAT, from_=3, to=1, term=1))
    with pytest.raises(NotLeaderError) as err:
        core.propose(b"x")
    assert err.value.leader == 3
    assert core.log.last_index() == 0


# ---------------------------------------------------------------------------- §5.3


def test_leader_starts_replication() -> None:
    """The leader appends a proposal to its log and sends it to every follower. Raft §5.3"""
    core = new_core()
    make_leader(core)
    for m in drain(core):
        pass
    # Followers acknowledged the no-op; replication state is "replicate".
    for peer in (2, 3):
        core.step(Message(type=MT.APP_RESP, from_=peer, to=1, term=core.term, index=1))
    drain(core)
    index = core.propose(b"some data")
    assert index == 2
    sent = [m for m in drain(core) if m.type == MT.APP]
    assert sorted(m.to for m in sent) == [2, 3]
    for m in sent:
        assert (m.index, m.log_term, m.commit) == (1, 1, 1)
        assert m.entries == (Entry(term=1, index=2, data=b"some data"),)


def test_leader_commits_once_a_majority_stored_it() -> None:
    """An entry is committed once the leader has replicated it on a majority; the leader
    then tells followers through the commit index of later APPs. Raft §5.3"""
    core = new_core()
    make_leader(core)
    drain(core)
    assert core.log.committed == 0  # the no-op is only on the leader
    core.step(Message(type=MT.APP_RESP, from_=2, to=1, term=core.term, index=1))
    assert core.log.committed == 1
    sent = [m for m in drain(core) if m.type in (MT.APP, MT.COMMIT)]
    assert sent and all(m.commit == 1 for m in sent)
    # 2 answered for index 1 and replicates steadily: a COMMIT, which it will not answer
    # (3, still probing with its first APP unanswered, is paused).
    assert [(m.to, m.type) for m in sent] == [(2, MT.COMMIT)]


@pytest.mark.parametrize("size,acks,committed", [(1, 0, True), (3, 1, True), (3, 0, False),
                                                  (5, 2, True), (5, 1, False)])
def test_leader_acknowledges_commit(size: int, acks: int, committed: bool) -> None:
    """Commit needs a majority counting the leader itself. Raft §5.3"""
    core = new_core(peers=tuple(range(1, size + 1)))
    make_leader(core)
    drain(core)
    for peer in range(2, 2 + acks):
        core.step(Message(type=MT.APP_RESP, from_=peer, to=1, term=core.term, index=1))
    assert (core.log.committed == 1) == committed


def test_leader_counts_itself_only_once_persisted() -> None:
    """The leader may send entries before its own write completes, but counts itself
    toward a commit only once the write is durable. Raft thesis §10.2.1"""
    core = new_core()
    make_leader(core)
    drain(core)
    for peer in (2, 3):
        core.step(Message(type=MT.APP_RESP, from_=peer, to=1, term=core.term, index=1))
    drain(core)
    core.propose(b"x")
    rd = core.ready()
    assert any(m.type == MT.APP for m in rd.messages)  # may go out before the fsync
    core.step(Message(type=MT.APP_RESP, from_=2, to=1, term=core.term, index=2))
    # Leader (unpersisted) + follower 2 = 2 of 3, but the leader does not count yet...
    # ...except a majority of *others* may commit without it: here only one other acked.
    assert core.log.committed == 1
    core.log.storage.append(rd.entries)  # type: ignore[attr-defined]
    core.advance(rd)
    assert core.log.committed == 2


def test_leader_commits_preceding_entries() -> None:
    """Committing an entry commits every preceding one, including older terms'. Raft §5.3"""
    core = new_core(stored=entries(1, 2), term=2)
    make_leader(core)  # term 3, no-op at index 3
    drain(core)
    core.step(Message(type=MT.APP_RESP, from_=2, to=1, term=core.term, index=3))
    assert core.log.committed == 3


def test_follower_commits_what_the_leader_committed() -> None:
    """A follower applies entries once it learns they are committed. Raft §5.3"""
    core = new_core()
    core.step(Message(type=MT.APP, from_=2, to=1, term=1, index=0, log_term=0,
                      entries=tuple(entries(1, 1)), commit=1))
    rd = core.ready()
    assert rd.committed_entries == []  # not yet persisted here
    core.log.storage.append(rd.entries)  # type: ignore[attr-defined]
    core.advance(rd)
    rd = core.ready()
    assert [e.index for e in rd.committed_entries] == [1]


@pytest.mark.parametrize(
    "index,log_term,reject,hint",
    [(0, 0, False, 0), (2, 2, False, 0), (2, 1, True, 1), (3, 3, True, 2)],
)
def test_follower_checks_append_consistency(index: int, log_term: int, reject: bool, hint: int) -> None:
    """A follower refuses entries whose predecessor it does not hold (the consistency
    check), and hints where its log could match. Raft §5.3"""
    core = new_core(stored=entries(1, 2), term=2)
    core.step(Message(type=MT.APP, from_=2, to=1, term=2, index=index, log_term=log_term))
    [resp] = drain(core)
    assert resp.type == MT.APP_RESP and resp.reject == reject
    if reject:
        assert resp.reject_hint == hint


@pytest.mark.parametrize(
    "index,log_term,new,expected_terms",
    [
        (2, 2, entries(3, start=3), [1, 2, 3]),
        (1, 1, entries(3, 4, start=2), [1, 3, 4]),
        (0, 0, entries(1, start=1), [1, 2]),
        (0, 0, entries(3, start=1), [3]),
    ],
)
def test_follower_appends_and_replaces_conflicts(
    index: int, log_term: int, new: list[Entry], expected_terms: list[int]
) -> None:
    """A follower deletes a conflicting entry and all that follow it, then appends the
    leader's new entries; entries it already holds stay. Raft §5.3"""
    core = new_core(stored=entries(1, 2), term=2)
    core.step(Message(type=MT.APP, from_=2, to=1, term=4, index=index, log_term=log_term,
                      entries=tuple(new)))
    assert [e.term for e in core.log.all_entries()] == expected_terms


# -------------------------------------------------------------------------- §5.4.1


@pytest.mark.parametrize(
    "their_last_term,their_last_index,granted",
    [(1, 1, False), (1, 2, False), (2, 1, False), (2, 2, True), (2, 3, True), (3, 1, True)],
)
def test_voter_grants_only_to_up_to_date_logs(their_last_term: int, their_last_index: int, granted: bool) -> None:
    """A vote is denied if the voter's log is more up to date than the candidate's:
    compare last terms, then lengths. Raft §5.4.1"""
    core = new_core(stored=entries(1, 2), term=2)
    core.step(Message(type=MT.VOTE, from_=2, to=1, term=3, index=their_last_index, log_term=their_last_term))
    [resp] = drain(core)
    assert resp.type == MT.VOTE_RESP and resp.reject == (not granted)


def test_vote_request_carries_last_log_position() -> None:
    """RequestVote carries the candidate's last log index and term. Raft §5.4.1"""
    core = new_core(stored=entries(1, 1, 2), term=2)
    core.campaign()
    votes = [m for m in drain(core) if m.type == MT.VOTE]
    assert {(m.index, m.log_term, m.term) for m in votes} == {(3, 2, 3)}


# -------------------------------------------------------------------------- §5.4.2


def test_leader_only_commits_current_term_entries_by_counting() -> None:
    """An entry from a previous term is never committed by counting replicas; it commits
    only once an entry of the current term does. Raft §5.4.2 (Figure 8)"""
    core = new_core(stored=entries(1, 2), term=2)
    make_leader(core)  # term 3; no-op at index 3
    drain(core)
    # A follower acknowledges index 2 (an old-term entry): a majority holds it, yet no commit.
    core.step(Message(type=MT.APP_RESP, from_=2, to=1, term=core.term, index=2))
    assert core.log.committed == 0
    core.step(Message(type=MT.APP_RESP, from_=2, to=1, term=core.term, index=3))
    assert core.log.committed == 3
