"""Checks of the checker: deliberately broken cores must be caught.

Each test breaks one rule of Raft in a copy of the core (a subclass, or a method patched
for the test only) and asserts that the simulator reports the violation the break leads
to: within a bounded number of random seeds, or in a scripted scenario (the paper's
Figure 8, a vote forgotten in a crash) that the correct core passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from coord_server.raft import NONE, MessageType, RaftCore, Role
from coord_server.raft.log import RaftLog

from .invariants import InvariantViolation
from .profiles import CHURN, MIXED, SCRIPTED, Profile
from .simulator import Simulator

MT = MessageType


def first_violation(seeds: int, profile: Profile, **options: Any) -> InvariantViolation:
    """Run seeds 0, 1, ... until one reports a violation; fail if none of ``seeds`` does."""
    for seed in range(seeds):
        try:
            Simulator(seed, profile=profile, **options).run()
        except InvariantViolation as exc:
            return exc
    pytest.fail(f"no violation found in {seeds} seeds of profile {profile.name}")


# ---------------------------------------------------------------- broken cores


class VotesTwice(RaftCore):
    """Breaks §5.2 "each server will vote for at most one candidate in a given term"."""

    def _handle_vote_request(self, m):  # type: ignore[no-untyped-def]
        super()._handle_vote_request(m)
        if m.type == MT.VOTE and self.vote != self.id:
            self.vote = NONE  # forget whom we voted for: the next candidate gets a vote too


class ForgetsVote(RaftCore):
    """Breaks Figure 2 "persistent state: votedFor": the vote never reaches the disk."""

    def ready(self):  # type: ignore[no-untyped-def]
        rd = super().ready()
        if rd.hard_state is not None:
            rd.hard_state = replace(rd.hard_state, vote=NONE)
        return rd


class ReadsWithoutQuorum(RaftCore):
    """Breaks §6.4 step 3: serves ReadIndex without confirming leadership with a quorum."""

    def _leader_read_index(self, m):  # type: ignore[no-untyped-def]
        self._release_read(m, self.log.committed)


class SkipsAnEntry(RaftCore):
    """Hands the application committed entries with a gap (drops the 2nd of a batch)."""

    def ready(self):  # type: ignore[no-untyped-def]
        rd = super().ready()
        if len(rd.committed_entries) > 2:
            del rd.committed_entries[1]
        return rd


def commits_old_terms(self: RaftLog, index: int, term: int) -> bool:
    """RaftLog.maybe_commit without the §5.4.2 term check."""
    if index > self.committed:
        self.commit_to(index)
        return True
    return False


# ------------------------------------------------------------- random seeds


def test_two_votes_per_term_gives_two_leaders() -> None:
    exc = first_violation(40, CHURN, core_factory=VotesTwice)
    assert "election safety" in str(exc)


def test_counting_old_term_entries_breaks_the_commit_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RaftLog, "maybe_commit", commits_old_terms)
    exc = first_violation(10, MIXED)
    assert "commit rule (§5.4.2)" in str(exc)


def test_voting_for_a_stale_log_breaks_leader_completeness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, index, term: True)
    exc = first_violation(20, MIXED)
    assert "leader completeness" in str(exc)


def test_appending_without_the_consistency_check_breaks_log_matching(monkeypatch: pytest.MonkeyPatch) -> None:
    original = RaftLog.maybe_append

    def skips_check(self, index, log_term, committed, entries):  # type: ignore[no-untyped-def]
        # §5.3 broken: pretend our entry at ``index`` has the leader's term.
        if index <= self.last_index() and not self.match_term(index, log_term):
            log_term = self.term(index)
        return original(self, index, log_term, committed, entries)

    monkeypatch.setattr(RaftLog, "maybe_append", skips_check)
    exc = first_violation(30, CHURN)
    assert "log matching" in str(exc)


def test_reads_without_a_quorum_round_are_stale() -> None:
    exc = first_violation(60, MIXED, core_factory=ReadsWithoutQuorum)
    assert "ReadIndex" in str(exc)


def test_a_gap_in_applied_entries_is_caught() -> None:
    exc = first_violation(5, MIXED, core_factory=SkipsAnEntry)
    assert "applied index" in str(exc)


# ------------------------------------------------------------------- scripted


def scripted(core_factory: type[RaftCore] = RaftCore, **config: Any) -> Simulator:
    """A 5-node cluster where nothing happens on its own: long election timeouts, no
    PreVote or leader lease, one entry per APP (so entries are acknowledged one by one)."""
    n_nodes = config.pop("n_nodes", 5)
    params = dict(election_tick=100, heartbeat_tick=1, pre_vote=False, check_quorum=False,
                  max_entries_per_msg=1, max_inflight_msgs=256)
    params.update(config)
    return Simulator(0, n_nodes=n_nodes, profile=SCRIPTED, core_factory=core_factory,
                     config=params)


def elect(sim: Simulator, node: int, above_term: int = 0) -> bool:
    """Campaign ``node`` (up to 3 times) until it leads a term above ``above_term``."""
    core = sim.nodes[node].core
    assert core is not None

    def won() -> bool:
        return core.role == Role.LEADER and core.term > above_term

    for _ in range(3):
        sim.campaign(node)
        if sim.run_until_true(won, 3):
            return True
    return False


def figure8(sim: Simulator) -> None:
    """Raft Figure 8 (§5.4.2), with each leader's no-op entry."""
    net = sim.network
    core: Callable[[int], RaftCore] = lambda i: sim.nodes[i].core  # type: ignore[assignment,return-value]
    sim.run_until(5)
    # (a) node 1 leads term 2; its entry at index 7 reaches node 2 only.
    assert elect(sim, 1)
    sim.run_until(sim.now + 3 * sim.TICK)
    net.partition([1, 2], [3, 4, 5])
    assert sim.propose_at(1)
    sim.run_until(sim.now + 2 * sim.TICK)
    # (b) node 5 leads term 3 with the votes of 3 and 4; its entries stay local.
    assert elect(sim, 5)
    net.heal()
    net.partition([5], [1, 2, 3, 4])
    assert sim.propose_at(5)
    sim.run_until(sim.now + 2 * sim.TICK)
    # (c) node 1 leads term 4 with 2 and 3, replicates index 7 (term 2) to node 3, and
    # crashes as soon as it commits something or node 3 holds its no-op.
    net.heal()
    net.partition([1, 2, 3], [4, 5])
    assert elect(sim, 1, above_term=3)
    sim.run_until_true(lambda: core(1).log.committed >= 7 or core(3).log.last_index() >= 8, 5)
    sim.crash(1)
    # (d) node 5 hears of term 4, then campaigns with 3 and 4: it can win only if no
    # entry of term 4 reached node 3; it then overwrites index 7 everywhere.
    net.heal()
    net.partition([3, 4, 5], [1, 2])
    sim.run_until(sim.now + 2 * sim.TICK)
    # (With the correct core node 3 holds the term-4 no-op and refuses: no leader.)
    elect(sim, 5, above_term=4)
    sim.run_until(sim.now + 3 * sim.TICK)


def test_figure8_correct_core_is_safe() -> None:
    figure8(scripted())


def test_figure8_counting_old_terms_is_caught_by_the_commit_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RaftLog, "maybe_commit", commits_old_terms)
    with pytest.raises(InvariantViolation, match=r"commit rule \(§5.4.2\): node 1, leader of term 4"):
        figure8(scripted())


def test_figure8_consequence_is_caught_by_leader_completeness(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the direct commit-rule check off, the lost entry itself is caught (§5.4.3)."""
    monkeypatch.setattr(RaftLog, "maybe_commit", commits_old_terms)
    sim = scripted()
    sim.checker.check_commit_rule = False
    with pytest.raises(InvariantViolation, match=r"leader completeness: node 5, leader of term 5"):
        figure8(sim)


def forgotten_vote(sim: Simulator) -> None:
    """Node 3 votes for node 1 in term 2, crashes and restarts, then node 2 asks for its
    vote in the same term: only a persisted vote stops node 3 from granting it."""
    net = sim.network
    sim.run_until(5)
    net.partition([1], [2])
    assert elect(sim, 1)  # votes from 3 (and only 3): node 2 cannot hear node 1
    net.partition([1], [3])  # node 3 must not receive node 1's entries of term 2
    sim.crash(3)
    sim.restart(sim.nodes[3])
    sim.campaign(2)  # term 2 as well: node 2 was still in term 1
    sim.run_until(sim.now + 3 * sim.TICK)


def test_forgotten_vote_correct_core_is_safe() -> None:
    sim = scripted(n_nodes=3)
    forgotten_vote(sim)
    assert sim.nodes[2].core is not None and sim.nodes[2].core.role != Role.LEADER


def test_forgotten_vote_gives_two_leaders() -> None:
    with pytest.raises(InvariantViolation, match="election safety: nodes 1 and 2 are both leaders of term 2"):
        forgotten_vote(scripted(ForgetsVote, n_nodes=3))
