"""Raft's safety properties (§5.2–§5.4, Figure 3), checked after every simulator event.

The checker keeps global history across all time and all nodes, so a violation is caught
even when the nodes involved have since crashed or been removed:

Rule 1  election safety: at most one leader per term, ever (term -> leader is recorded).
Rule 2  log matching: every (index, term) that ever appears in any log (persisted or
        unstable) always comes with the same content and the same predecessor term. By
        induction on the index this is the paper's property: two logs that share an entry
        share the whole prefix before it.
Rule 3  leader completeness: an entry known committed while some node was in term t (so
        committed in a term <= t) is in the log of every leader of a term > t.
Rule 4  state machine safety: no two nodes apply different entries at one index, and the
        state (a digest of the applied prefix) at each index is the same everywhere,
        snapshots included.
Rule 5  committed entries are never lost: the entry at a committed index never changes;
        a node's commit never goes backwards while it runs, and never below what it
        persisted across a restart; commit never exceeds the node's last index, and
        applied never exceeds commit.
Rule 6  ReadIndex (linearizability, lite): a read point is at least the highest index
        known committed anywhere when the read was requested.
Rule 7  nothing is invented: every applied NORMAL entry with data was proposed by the
        client.
Rule 8  the commit rule (§5.4.2): while a node leads term t, its commit index only ever
        advances onto an entry of term t; earlier terms' entries commit only with it
        (Figure 8 shows what goes wrong otherwise, which Rule 3 catches when it happens).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NoReturn

from coord_server.raft import (
    CompactedError,
    ConfState,
    Entry,
    EntryType,
    RaftCore,
    ReadState,
    Role,
    Snapshot,
    UnavailableError,
)

from .statemachine import decode_snapshot


class InvariantViolation(AssertionError):
    """A safety property of Raft does not hold; the message says which, where and when."""


@dataclass(slots=True)
class _NodeView:
    """What the checker remembers about one incarnation of one node."""

    commit: int = 0
    """The node's commit index when last checked (Rule 5: it never decreases)."""
    recorded_commit: int = 0
    """Entries up to here were compared with the global committed map."""
    unstable_fingerprint: tuple[int, int, int, int] = (0, 0, 0, 0)
    """(offset, len, id(first), id(last)) of the unstable entries last scanned (Rule 2)."""
    leader_term: int = 0
    """The term in which this node was last checked as a new leader (Rule 3)."""


class Checker:
    """Global history plus per-node views; every ``check_*`` raises InvariantViolation."""

    def __init__(self, where: Callable[[], str] = lambda: "") -> None:
        self.where = where
        """Describes the current time and event, for messages (called only on failure)."""
        self.leaders: dict[int, int] = {}
        """Rule 1: term -> the node that was leader in it."""
        self.entries: dict[tuple[int, int], tuple[int, int, bytes]] = {}
        """Rule 2: (index, term) -> (term of index - 1, type, data)."""
        self.committed: dict[int, int] = {}
        """Rule 5: index -> term of the entry known committed there."""
        self.commit_term: dict[int, int] = {}
        """Rule 3: index -> the smallest term of a node that knew it committed."""
        self.max_committed = 0
        self.applied: dict[int, tuple[int, int, bytes]] = {}
        """Rule 4: index -> (term, type, data) of the entry applied there."""
        self.digests: dict[int, bytes] = {}
        """Rule 4: index -> state machine digest after applying up to it."""
        self.proposed: set[bytes] = set()
        self.applied_data: dict[bytes, int] = {}
        """Rule 7 and liveness: command data -> the index where it was first applied."""
        self.reads: dict[bytes, int] = {}
        """Rule 6: read context -> the highest committed index when it was requested."""
        self.persisted_commit: dict[int, int] = {}
        """Rule 5: node -> the commit index in its latest persisted hard state."""
        self.views: dict[int, _NodeView] = {}
        self.check_commit_rule = True
        """Rule 8 on or off (off only to show that Rule 3 catches the consequence)."""
        self.check_proposals = True
        """Rule 7 on or off (off for drivers that do not see every proposal: tests/raft)."""
        self.fresh: list[int] = []
        """Rule 3: indexes whose commit term was lowered since ``check_leaders`` last ran."""

    def _fail(self, message: str) -> NoReturn:
        raise InvariantViolation(f"{message} [{self.where()}]")

    # -- lifecycle ------------------------------------------------------------------------

    def node_started(self, node: int, core: RaftCore) -> None:
        """A (re)started core: its commit must not be below what it persisted (Rule 5)."""
        persisted = self.persisted_commit.get(node, 0)
        if core.log.committed < persisted:
            self._fail(
                f"node {node} restarted with commit {core.log.committed} below its "
                f"persisted commit {persisted}"
            )
        self.views[node] = _NodeView()
        self.check_node(node, core)

    def node_stopped(self, node: int) -> None:
        self.views.pop(node, None)

    def persisted(self, node: int, commit: int) -> None:
        self.persisted_commit[node] = commit

    # -- after every event -----------------------------------------------------------------

    def check_node(self, node: int, core: RaftCore) -> None:
        """Rules 1, 2, 3 and 5 for one node whose state an event may have changed."""
        view = self.views[node]
        log = core.log
        term = core.term

        # Rule 1: one leader per term.
        if core.role == Role.LEADER:
            other = self.leaders.setdefault(term, node)
            if other != node:
                self._fail(f"election safety: nodes {other} and {node} are both leaders of term {term}")

        # Rule 5: commit bounds and monotonicity.
        committed = log.committed
        last = log.last_index()
        if committed > last:
            self._fail(f"node {node} commit {committed} exceeds its last index {last}")
        if log.applied > committed:
            self._fail(f"node {node} applied {log.applied} exceeds its commit {committed}")
        if committed < view.commit:
            self._fail(f"node {node} commit went backwards from {view.commit} to {committed}")
        if (committed > view.commit and core.role == Role.LEADER and view.leader_term == term
                and self.check_commit_rule):
            # Rule 8: a leader commits by counting only entries of its own term.
            entry_term = log.term(committed)
            if entry_term != term:
                self._fail(
                    f"commit rule (§5.4.2): node {node}, leader of term {term}, advanced its "
                    f"commit to index {committed}, an entry of term {entry_term}"
                )
        view.commit = committed

        # Rule 2 (and Rule 5 for a node's own committed prefix): scan new unstable entries.
        unstable = log.unstable
        ents = unstable.entries
        if ents:
            fingerprint = (unstable.offset, len(ents), id(ents[0]), id(ents[-1]))
            if fingerprint != view.unstable_fingerprint:
                view.unstable_fingerprint = fingerprint
                self._check_entries(node, core, ents)
        elif view.unstable_fingerprint[1]:
            view.unstable_fingerprint = (unstable.offset, 0, 0, 0)

        # Rule 5: the committed prefix is the same everywhere, forever.
        if committed > view.recorded_commit:
            self._record_commits(node, core, view.recorded_commit, committed)
            view.recorded_commit = committed

        # Rule 3: a new leader holds everything committed in earlier terms.
        if core.role == Role.LEADER and view.leader_term != term:
            view.leader_term = term
            self._check_leader_complete(node, core, self.committed)

    def _check_entries(self, node: int, core: RaftCore, ents: list[Entry]) -> None:
        log = core.log
        first = ents[0]
        try:
            prev_term = log.term(first.index - 1)
        except (CompactedError, UnavailableError) as exc:
            self._fail(f"node {node} log has a hole before unstable entry {first.index}: {exc}")
        entries = self.entries
        committed = self.committed
        own_commit = self.views[node].recorded_commit
        for entry in ents:
            key = (entry.index, entry.term)
            value = (prev_term, entry.type, entry.data)
            seen = entries.setdefault(key, value)
            if seen is not value and seen != value:
                self._fail(
                    f"log matching: node {node} holds entry (index {entry.index}, term "
                    f"{entry.term}) with (previous term, type, data) {value}, but another log "
                    f"had {seen}"
                )
            if entry.index <= own_commit and committed.get(entry.index, entry.term) != entry.term:
                self._fail(
                    f"node {node} replaced its committed entry {entry.index} (term "
                    f"{committed[entry.index]}) with one of term {entry.term}"
                )
            prev_term = entry.term

    def _record_commits(self, node: int, core: RaftCore, lo: int, hi: int) -> None:
        """Record entries (lo, hi] of ``node`` as committed in its current term."""
        log = core.log
        term = core.term
        committed = self.committed
        commit_term = self.commit_term
        for index in range(max(lo + 1, log.first_index()), hi + 1):
            entry_term = log.term(index)
            known = committed.setdefault(index, entry_term)
            if known != entry_term:
                self._fail(
                    f"committed entry lost: node {node} has term {entry_term} at committed "
                    f"index {index}, but term {known} was committed there"
                )
            if commit_term.get(index, term + 1) > term:
                commit_term[index] = term
                self.fresh.append(index)
        if hi > self.max_committed:
            self.max_committed = hi

    def check_leaders(self, cores: dict[int, RaftCore]) -> None:
        """Rule 3 for commits recorded since the last call, against every current leader."""
        if not self.fresh:
            return
        fresh, self.fresh = self.fresh, []
        for node, core in cores.items():
            if core.role == Role.LEADER:
                self._check_leader_complete(node, core, fresh)

    def _check_leader_complete(self, node: int, core: RaftCore, indexes: Iterable[int]) -> None:
        log = core.log
        term = core.term
        first = log.first_index()
        committed = self.committed
        commit_term = self.commit_term
        for index in indexes:
            if index < first or commit_term[index] >= term:
                continue  # compacted into the leader's snapshot, or committed too late
            entry_term = committed[index]
            try:
                ours = log.term(index)
            except UnavailableError:
                ours = 0
            if ours != entry_term:
                self._fail(
                    f"leader completeness: node {node}, leader of term {term}, has "
                    f"{'no entry' if not ours else f'term {ours}'} at index {index}, but "
                    f"(index {index}, term {entry_term}) was committed by term "
                    f"{commit_term[index]}"
                )

    # -- the state machine ------------------------------------------------------------------

    def applied_entry(self, node: int, expected_index: int, entry: Entry, digest: bytes) -> None:
        """Rule 4 and Rule 7 for one applied entry; ``digest`` is the state after it."""
        if entry.index != expected_index:
            self._fail(f"node {node} applied index {entry.index}, expected {expected_index}")
        value = (entry.term, entry.type, entry.data)
        seen = self.applied.setdefault(entry.index, value)
        if seen != value:
            self._fail(
                f"state machine safety: node {node} applied (term, type, data) {value} at "
                f"index {entry.index}, another node applied {seen}"
            )
        if self.digests.setdefault(entry.index, digest) != digest:
            self._fail(f"state machine safety: node {node} state differs at index {entry.index}")
        if entry.type == EntryType.NORMAL and entry.data:
            if self.check_proposals and entry.data not in self.proposed:
                self._fail(f"node {node} applied data {entry.data!r} that no client proposed")
            self.applied_data.setdefault(entry.data, entry.index)

    def restored_snapshot(self, node: int, snapshot: Snapshot, applied_before: int) -> None:
        """Rule 4 for a snapshot a running node installs from its leader."""
        index, digest = decode_snapshot(snapshot.data)
        if index != snapshot.meta.index:
            self._fail(f"node {node} got a snapshot at {snapshot.meta.index} whose data is at {index}")
        if index < applied_before:
            self._fail(
                f"node {node} restored a snapshot at {index}, behind its applied index "
                f"{applied_before}: applied entries would be undone"
            )
        self.check_snapshot_digest(node, index, digest)

    def snapshot_taken(self, node: int, index: int, core_conf: ConfState, applied_conf: ConfState) -> None:
        """Rule 4: a snapshot's membership is the one its applied entries imply."""
        if core_conf != applied_conf:
            self._fail(
                f"node {node} snapshots at applied index {index} with core.conf_state() "
                f"{_conf(core_conf)}, but the entries it applied imply {_conf(applied_conf)}"
            )

    def check_snapshot_digest(self, node: int, index: int, digest: bytes) -> None:
        if self.digests.setdefault(index, digest) != digest:
            self._fail(f"state machine safety: node {node} snapshot at index {index} has a different state")

    # -- ReadIndex -------------------------------------------------------------------------

    def read_requested(self, context: bytes) -> None:
        self.reads[context] = self.max_committed

    def read_served(self, node: int, rs: ReadState) -> None:
        """Rule 6."""
        need = self.reads.get(rs.context)
        if need is None:
            self._fail(f"node {node} got a ReadState for context {rs.context!r} nobody requested")
        if rs.index < need:
            self._fail(
                f"ReadIndex: node {node} got read point {rs.index} for {rs.context!r}, but "
                f"index {need} was already committed when the read was requested"
            )


def _conf(conf: ConfState) -> str:
    return f"voters {sorted(conf.voters)} learners {sorted(conf.learners)}"
