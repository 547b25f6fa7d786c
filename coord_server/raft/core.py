"""RaftCore: the whole consensus protocol as a deterministic state machine.

The core does no I/O, reads no clock and starts no thread. The driver feeds it ticks
(``tick``), peer messages (``step``) and proposals (``propose``); the core answers through
``ready()``, a ``Ready`` listing what to persist, what to send and what to apply, and the
driver reports back with ``advance(ready)``. Randomness (election timeouts) comes from the
``rng`` the driver passes in, so a seeded simulator replays a run exactly.

The driving loop (one Ready outstanding at a time; stepping, ticking and proposing may go
on while a Ready is being persisted)::

    while True:
        ... core.tick() every tick, core.step(msg) for each peer message ...
        if core.has_ready():
            rd = core.ready()
            send(rd.messages)                    # may go out before the disk write
            storage.apply_snapshot(rd.snapshot)  # if any, then
            storage.append(rd.entries)           # then
            storage.set_hard_state(rd.hard_state); fsync
            send(rd.persisted_messages)          # only now
            apply(rd.committed_entries); serve(rd.read_states)
            core.advance(rd)

Sections of the paper and thesis are cited where a rule comes from. The step function is
split by role (``_step_leader``, ``_step_candidate``, ``_step_follower``); role changes swap
``_step`` and ``_tick`` (etcd's shape).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from . import quorum
from .config import Config
from .errors import CompactedError, ProposalDroppedError, NotLeaderError, UnavailableError
from .log import RaftLog
from .membership import MembershipError, apply_change, check_change
from .messages import (
    CAMPAIGN_TRANSFER,
    LOCAL_TYPES,
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
)
from .progress import Progress, ProgressState
from .read_only import ReadOnly
from .storage import Storage

MT = MessageType


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


class RandomSource(Protocol):
    """Where election-timeout jitter comes from (``random.Random`` satisfies it)."""

    def randrange(self, stop: int, /) -> int: ...


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth telling the driver about; never persisted."""

    leader: int
    role: Role


@dataclass(slots=True)
class Ready:
    """What the driver must do, in this order, before calling ``advance(ready)``.

    Every field is safe to ignore when empty.
    """

    soft_state: SoftState | None = None
    """Changed leader or role, if any (informational: update status, wake waiters)."""
    hard_state: HardState | None = None
    """Changed term/vote/commit: persist before sending ``persisted_messages``."""
    snapshot: Snapshot | None = None
    """A snapshot from the leader: persist it and restore the state machine from it
    before ``entries`` and before applying ``committed_entries``."""
    entries: list[Entry] = field(default_factory=list)
    """Append to storage, replacing any stored suffix from ``entries[0].index`` on;
    persist before sending ``persisted_messages``."""
    committed_entries: list[Entry] = field(default_factory=list)
    """Committed and already persisted here: apply to the state machine in order."""
    messages: list[Message] = field(default_factory=list)
    """The leader's messages, which may be sent at once, even before this Ready's
    entries are durable (thesis §10.2.1: the leader counts itself toward a commit only
    once ``advance`` reports its own entries persisted)."""
    persisted_messages: list[Message] = field(default_factory=list)
    """Send only after ``hard_state``, ``snapshot`` and ``entries`` are durable: votes and
    acknowledgements promise what the disk holds."""
    read_states: list[ReadState] = field(default_factory=list)
    """ReadIndex results: serve each read once the applied index reaches ``index``."""
    must_sync: bool = False
    """True when the write must be fsynced (new entries, or a changed term or vote)."""


@dataclass(frozen=True, slots=True)
class PeerStatus:
    match: int
    next: int
    state: ProgressState
    is_learner: bool
    recent_active: bool


@dataclass(frozen=True, slots=True)
class Status:
    """A consistent picture of the core for the Cluster service and for tests."""

    id: int
    role: Role
    term: int
    vote: int
    leader: int
    commit: int
    applied: int
    last_index: int
    first_index: int
    conf_state: ConfState
    lead_transferee: int
    progress: dict[int, PeerStatus]


# Vote requests and responses carry a term chosen by the caller (see _campaign and
# _handle_vote_request); every other message is stamped with the sender's term.
_TERM_SET_BY_CALLER = frozenset({MT.VOTE, MT.PRE_VOTE, MT.VOTE_RESP, MT.PRE_VOTE_RESP})

# Messages a leader may send before its own disk write (see Ready.messages).
_SEND_BEFORE_PERSIST = frozenset(
    {MT.APP, MT.COMMIT, MT.HEARTBEAT, MT.SNAP, MT.TIMEOUT_NOW, MT.READ_INDEX_RESP}
)


class RaftCore:
    """One node's Raft state machine. Not thread-safe: one driver owns it."""

    def __init__(self, config: Config, storage: Storage, rng: RandomSource, applied: int = 0) -> None:
        """Start from whatever ``storage`` holds (an empty one: a node with no history).

        ``applied`` is the index the driver's state machine has already applied (0, or the
        snapshot index it restored); committed entries after it are handed out again.
        """
        config.validate()
        self.config = config
        self.id = config.id
        self.rng = rng
        self.log = RaftLog(storage)
        hard_state, conf_state = storage.initial_state()
        self.term = hard_state.term
        self.vote = hard_state.vote
        self.lead = NONE
        self.role = Role.FOLLOWER
        self.voters: set[int] = set(conf_state.voters)
        self.learners: set[int] = set(conf_state.learners)
        # What conf_state() reports: the membership as of the applied index. ``voters`` and
        # ``learners`` run ahead of it while a snapshot received from the leader (whose
        # membership is adopted on receipt) waits for ``advance``.
        self._applied_conf = ConfState(voters=frozenset(self.voters), learners=frozenset(self.learners))
        # The index of the last snapshot adopted on receipt: CONF_CHANGE entries at or below
        # it that are still being applied are already part of that snapshot's membership.
        self._snapshot_conf_index = 0
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self._leader_lost = False
        """``leader_lost`` shortened the election timeout until the leader is heard again."""
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly()
        self.pending_read_index_messages: list[Message] = []
        self.read_states: list[ReadState] = []
        self.msgs: list[Message] = []
        self.msgs_after_persist: list[Message] = []
        self._step: Callable[[Message], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election

        if hard_state.commit > self.log.last_index():
            raise AssertionError(
                f"persisted commit {hard_state.commit} is past the last index "
                f"{self.log.last_index()}: storage is damaged"
            )
        # Bug fix (found by tests/sim): a persisted commit below the snapshot index is not
        # damage. A crash can cut a write between a received snapshot and the hard state
        # after it; the snapshot's index is committed by definition, so keep the larger.
        self.log.committed = max(self.log.committed, hard_state.commit)
        if applied:
            self.log.applied_to(min(applied, self.log.committed))
        self.become_follower(self.term, NONE)
        self._prev_soft = SoftState(self.lead, self.role)
        self._prev_hard = hard_state

    # ==================================================================== public API

    def bootstrap(self, voters: Sequence[int], contexts: Mapping[int, bytes] | None = None) -> None:
        """Start a brand-new cluster whose first members are ``voters``.

        Writes one ADD_NODE entry per voter at term 1, committed, on every founding member
        alike (so their logs match); ``contexts`` gives each change's context (the server
        puts the member's name and addresses there). Only allowed on a node with an empty
        log.
        """
        if self.log.last_index() != 0 or self.term != 0:
            raise ValueError("bootstrap needs an empty log; this node already has history")
        if not voters:
            raise ValueError("bootstrap needs at least one voter")
        entries = [
            Entry(term=1, index=i, type=EntryType.CONF_CHANGE,
                  data=ConfChange(ConfChangeType.ADD_NODE, node, (contexts or {}).get(node, b"")).encode())
            for i, node in enumerate(sorted(set(voters)), start=1)
        ]
        self.log.append(entries)
        self.log.committed = len(entries)
        self.become_follower(1, NONE)
        for entry in entries:
            self._apply_conf_change(ConfChange.decode(entry.data))
        self._applied_conf = self._current_conf()

    def tick(self) -> None:
        """Advance logical time by one tick."""
        self._tick()

    def campaign(self) -> None:
        """Start an election now (as if the election timeout had fired)."""
        self.step(Message(type=MT.HUP))

    def propose(self, data: bytes) -> int:
        """Append one command; returns its log index. Raises NotLeaderError off the leader."""
        return self.propose_batch([data])[0]

    def propose_batch(self, datas: Sequence[bytes]) -> list[int]:
        """Append several commands as one batch (one APP per follower); returns their
        indexes. The entry at each index carries this core's current term: if a later
        applied entry at that index has another term, the proposal was lost."""
        # Built with the term and indexes they get if we lead, so the leader keeps these
        # objects instead of copying each one (see _leader_append_proposal).
        term, first = self.term, self.log.last_index() + 1
        entries = tuple(Entry(term=term, index=i, data=d) for i, d in enumerate(datas, first))
        self.step(Message(type=MT.PROP, from_=self.id, entries=entries))
        last = self.log.last_index()
        return list(range(last - len(entries) + 1, last + 1))

    def propose_conf_change(self, change: ConfChange) -> int:
        """Propose one membership change; returns its index. Raises ProposalDroppedError
        while another change is pending, or MembershipError for an impossible change."""
        entry = Entry(term=0, index=0, type=EntryType.CONF_CHANGE, data=change.encode())
        self.step(Message(type=MT.PROP, from_=self.id, entries=(entry,)))
        return self.log.last_index()

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read point tagged ``context`` (unique per request); it
        arrives as a ReadState in a later Ready. Raises ProposalDroppedError when no
        leader is known."""
        if self.role != Role.LEADER and self.lead == NONE:
            raise ProposalDroppedError("cannot serve a linearizable read now")
        self.step(Message(type=MT.READ_INDEX, from_=self.id, context=context))

    def transfer_leadership(self, transferee: int) -> None:
        """Hand leadership to ``transferee`` (thesis §3.10); forwarded if not leader."""
        self.step(Message(type=MT.TRANSFER_LEADER, from_=transferee))

    def report_unreachable(self, node: int) -> None:
        self.step(Message(type=MT.UNREACHABLE, from_=node))

    def leader_lost(self, leader: int, ticks: int) -> None:
        """The connection from ``leader`` broke: its process most likely died (a leader
        that is alive but stalled keeps its connections). A follower of it stops
        honouring its leader's lease at once and campaigns after ``ticks`` to twice as
        many, rather than a whole randomised election timeout; any message from the
        leader meanwhile cancels that. Only when an election happens depends on this,
        never safety, and PreVote still needs a quorum that stopped hearing the leader
        too: one follower losing a connection alone cannot unseat a live leader."""
        if self.role != Role.FOLLOWER or self.lead == NONE or self.lead != leader or ticks <= 0:
            return
        self.election_elapsed = max(self.election_elapsed, self.config.election_tick)
        self.randomized_election_timeout = min(
            self.randomized_election_timeout, self.election_elapsed + ticks + self.rng.randrange(ticks)
        )
        self._leader_lost = True

    def _leader_heard(self) -> None:
        """A message from the leader after ``leader_lost``: the usual timeout again."""
        self._leader_lost = False
        self.randomized_election_timeout = self.config.election_tick + self.rng.randrange(self.config.election_tick)

    def report_snapshot(self, node: int, failed: bool) -> None:
        self.step(Message(type=MT.SNAP_STATUS, from_=node, reject=failed))

    def conf_state(self) -> ConfState:
        """The membership as of the applied index (snapshot it with the state machine)."""
        return self._applied_conf

    def _current_conf(self) -> ConfState:
        """The membership in use now (ahead of ``conf_state()`` while a received snapshot
        awaits ``advance``)."""
        return ConfState(voters=frozenset(self.voters), learners=frozenset(self.learners))

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def status(self) -> Status:
        progress = {
            node: PeerStatus(pr.match, pr.next, pr.state, pr.is_learner, pr.recent_active)
            for node, pr in self.progress.items()
        }
        return Status(
            id=self.id, role=self.role, term=self.term, vote=self.vote, leader=self.lead,
            commit=self.log.committed, applied=self.log.applied,
            last_index=self.log.last_index(), first_index=self.log.first_index(),
            conf_state=self._current_conf(), lead_transferee=self.lead_transferee,
            progress=progress,
        )

    # ------------------------------------------------------------------ Ready / advance

    def has_ready(self) -> bool:
        soft, hard = self._prev_soft, self._prev_hard
        if self.lead != soft.leader or self.role != soft.role:
            return True
        if self.term != hard.term or self.vote != hard.vote or self.log.committed != hard.commit:
            return True
        if self.log.pending_snapshot() is not None or self.log.unstable.entries:
            return True
        return bool(
            self.msgs or self.msgs_after_persist or self.read_states
            or self.log.has_next_committed_entries()
        )

    def ready(self) -> Ready:
        """Collect what the driver must do now. Call ``advance`` with it when done."""
        rd = Ready(
            entries=list(self.log.unstable.entries),
            snapshot=self.log.pending_snapshot(),
            committed_entries=self.log.next_committed_entries(self.config.max_committed_bytes_per_ready),
            messages=self.msgs,
            persisted_messages=self.msgs_after_persist,
            read_states=self.read_states,
        )
        prev_soft = self._prev_soft
        if self.lead != prev_soft.leader or self.role != prev_soft.role:
            soft = SoftState(self.lead, self.role)
            rd.soft_state = soft
            self._prev_soft = soft
        prev_hard = self._prev_hard
        if self.term != prev_hard.term or self.vote != prev_hard.vote or self.log.committed != prev_hard.commit:
            hard = self.hard_state()
            rd.hard_state = hard
            rd.must_sync = hard.term != self._prev_hard.term or hard.vote != self._prev_hard.vote
            self._prev_hard = hard
        rd.must_sync = rd.must_sync or bool(rd.entries) or rd.snapshot is not None
        if rd.committed_entries:
            self.log.accept_applying(rd.committed_entries[-1].index)
        self.msgs = []
        self.msgs_after_persist = []
        self.read_states = []
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver persisted, sent and applied ``rd``."""
        if rd.snapshot is not None:
            self.log.stable_snap_to(rd.snapshot.meta.index)
            if rd.snapshot.meta.index > self.log.applied:
                self.log.applied_to(rd.snapshot.meta.index)
            self._applied_conf = rd.snapshot.meta.conf_state
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
            if self.role == Role.LEADER and self.log.match_term(last.index, last.term):
                # Thesis §10.2.1: the leader counts itself once its own write is durable.
                self_pr = self.progress.get(self.id)
                if self_pr is not None and self_pr.maybe_update(last.index):
                    if self._maybe_commit():
                        self._bcast_append(commit_notice=True)
        if rd.committed_entries:
            conf_change = EntryType.CONF_CHANGE
            for entry in rd.committed_entries:
                if entry.type == conf_change:
                    change = ConfChange.decode(entry.data)
                    self._applied_conf = apply_change(self._applied_conf, change)
                    # Bug fix (found by tests/sim): a snapshot received while this Ready was
                    # out already carries a newer membership; re-applying this older change
                    # on top of it would undo later changes (e.g. re-add a removed voter).
                    if entry.index > self._snapshot_conf_index:
                        self._apply_conf_change(change)
            if self.role == Role.LEADER:
                # (A leader that stepped down above has reset uncommitted_size to 0.)
                size = sum(map(len, map(_entry_data, rd.committed_entries)))
                self.uncommitted_size = max(0, self.uncommitted_size - size)
            self.log.applied_to(rd.committed_entries[-1].index)

    # ======================================================================= stepping

    def step(self, m: Message) -> None:
        """Process one message. Term handling happens here once for every type (§5.1);
        the rest is the current role's ``_step``."""
        if m.term == 0 and m.type not in LOCAL_TYPES and m.type not in (MT.READ_INDEX, MT.READ_INDEX_RESP):
            return  # a remote message without a term is malformed
        if m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                forced = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.config.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.config.election_tick
                )
                if in_lease and not forced:
                    # Thesis §4.2.3 / §9.6: we heard from a live leader within the minimum
                    # election timeout; a disruptive candidate is ignored.
                    return
            if m.type == MT.PRE_VOTE:
                pass  # a pre-vote never changes our term
            elif m.type == MT.PRE_VOTE_RESP and not m.reject:
                pass  # a granted pre-vote answers with the future term; our term stays
            elif m.type in (MT.APP, MT.COMMIT, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(m.term, m.from_)
            else:
                self.become_follower(m.term, NONE)
        elif m.term and m.term < self.term:
            if m.type in (MT.HEARTBEAT, MT.APP, MT.COMMIT):
                # §5.1: a stale request is refused with our term. A leader from an older term
                # (perhaps partitioned away) must hear it: with CheckQuorum and PreVote no vote
                # request would ever reach it, so it would lead forever in its own mind.
                self._send(Message(type=MT.APP_RESP, to=m.from_))
            elif m.type == MT.PRE_VOTE:
                self._send(Message(type=MT.PRE_VOTE_RESP, to=m.from_, term=self.term, reject=True))
            return

        if m.type == MT.HUP:
            self._hup(transfer=False)
        elif m.type in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        else:
            self._step(m)

    def _handle_vote_request(self, m: Message) -> None:
        """§5.2, §5.4.1: grant at most one vote per term, only to an up-to-date log."""
        can_vote = (
            self.vote == m.from_
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == MT.PRE_VOTE and m.term > self.term)
        )
        resp_type = MT.VOTE_RESP if m.type == MT.VOTE else MT.PRE_VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # A granted response carries the candidate's term (for a pre-vote, the term it
            # would campaign in), so the pre-candidate does not take it for a stale answer.
            self._send(Message(type=resp_type, to=m.from_, term=m.term))
            if m.type == MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self._send(Message(type=resp_type, to=m.from_, term=self.term, reject=True))

    # ------------------------------------------------------------------------- leader

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MT.BEAT:
            self._bcast_heartbeat()
        elif t == MT.CHECK_QUORUM:
            if not self._quorum_active():
                self.become_follower(self.term, NONE)
        elif t == MT.PROP:
            self._leader_append_proposal(m)
        elif t == MT.READ_INDEX:
            self._leader_read_index(m)
        elif t == MT.TRANSFER_LEADER:
            self._leader_transfer(m.from_)
        else:
            pr = self.progress.get(m.from_)
            if pr is None:
                return  # a response from a node that is not (or no longer) a member
            if t == MT.APP_RESP:
                self._leader_handle_append_response(m, pr)
            elif t == MT.HEARTBEAT_RESP:
                self._leader_handle_heartbeat_response(m, pr)
            elif t == MT.SNAP_STATUS:
                if pr.state == ProgressState.SNAPSHOT:
                    pr.become_probe()
                    # Wait for the next heartbeat response before probing again.
                    pr.probe_sent = True
            elif t == MT.UNREACHABLE:
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()

    def _leader_append_proposal(self, m: Message) -> None:
        if not m.entries:
            return
        if self.id not in self.progress:
            raise ProposalDroppedError("this leader is being removed from the cluster")
        if self.lead_transferee != NONE:
            raise ProposalDroppedError(
                f"leadership is being transferred to node {self.lead_transferee}", self.lead_transferee
            )
        size = sum(map(len, map(_entry_data, m.entries)))
        limit = self.config.max_uncommitted_bytes
        if limit and self.uncommitted_size > 0 and self.uncommitted_size + size > limit:
            raise ProposalDroppedError(
                f"too much uncommitted data ({self.uncommitted_size} bytes, limit {limit})", self.id
            )
        for entry in m.entries:
            if entry.type == EntryType.CONF_CHANGE:
                if len(m.entries) != 1:
                    raise ProposalDroppedError("a membership change must be proposed alone", self.id)
                if self.pending_conf_index > self.log.applied:
                    raise ProposalDroppedError(
                        "another membership change is still being applied "
                        f"(index {self.pending_conf_index}, applied {self.log.applied})", self.id
                    )
                check_change(self._current_conf(), ConfChange.decode(entry.data))
        term = self.term
        # Entries are immutable: one that already has its final term and index is kept.
        entries = [
            e if e.term == term and e.index == i else Entry(term=term, index=i, type=e.type, data=e.data)
            for i, e in enumerate(m.entries, start=self.log.last_index() + 1)
        ]
        if entries[0].type == EntryType.CONF_CHANGE:
            self.pending_conf_index = entries[0].index
        self.uncommitted_size += size
        self.log.append(entries)
        self._bcast_append()

    def _leader_read_index(self, m: Message) -> None:
        if self._is_single_voter():
            self._release_read(m, self.log.committed)
            return
        if not self._committed_entry_in_current_term():
            # Thesis §6.4 step 1: until an entry of its term commits, the leader's commit
            # index may be behind the cluster's; hold the request until it is not.
            self.pending_read_index_messages.append(m)
            return
        self.read_only.add_request(self.log.committed, m)
        self.read_only.recv_ack(self.id, m.context)
        self._bcast_heartbeat(m.context)

    def _release_read(self, request: Message, index: int) -> None:
        if request.from_ in (NONE, self.id):
            self.read_states.append(ReadState(index=index, context=request.context))
        else:
            self._send(Message(type=MT.READ_INDEX_RESP, to=request.from_, index=index, context=request.context))

    def _leader_transfer(self, transferee: int) -> None:
        pr = self.progress.get(transferee)
        if pr is None or pr.is_learner or transferee == self.id:
            return
        if self.lead_transferee == transferee:
            return  # already transferring to it
        self.lead_transferee = transferee
        # The transfer must finish within one election timeout or it is abandoned (tick).
        self.election_elapsed = 0
        if pr.match == self.log.last_index():
            self._send(Message(type=MT.TIMEOUT_NOW, to=transferee))
        else:
            self._send_append(transferee)

    def _leader_handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            # Fast back-off: jump to where the follower's log can match, one term per
            # round trip instead of one entry.
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.from_)
            return
        if m.index > self.log.last_index():
            return  # claims entries we never sent: malformed, ignore
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._bcast_append(commit_notice=True)
        elif was_paused:
            self._send_append(m.from_)
        # Fill the pipeline: keep sending while flow control allows.
        while self._send_append(m.from_, send_if_empty=False):
            pass
        if m.from_ == self.lead_transferee and pr.match == self.log.last_index():
            self._send(Message(type=MT.TIMEOUT_NOW, to=m.from_))

    def _leader_handle_heartbeat_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        pr.probe_sent = False
        if pr.state == ProgressState.REPLICATE and pr.inflights.full():
            # The follower is alive but the window is full (answers may have been lost):
            # free one slot so replication cannot stall forever.
            pr.inflights.free_first_one()
        if pr.match < self.log.last_index():
            self._send_append(m.from_)
        if not m.context:
            return
        acks = self.read_only.recv_ack(m.from_, m.context)
        if acks is None or not quorum.has_quorum(self.voters, acks):
            return
        for status in self.read_only.advance(m.context):
            self._release_read(status.request, status.index)

    # ---------------------------------------------------------------------- candidate

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t == MT.PROP:
            raise ProposalDroppedError("an election is in progress")
        if t == MT.READ_INDEX:
            if m.from_ in (NONE, self.id):
                raise ProposalDroppedError("an election is in progress")
            return
        if t in (MT.APP, MT.COMMIT, MT.HEARTBEAT, MT.SNAP):
            # A leader exists in our term (§5.2): go back to following it.
            self.become_follower(m.term, m.from_)
            self._step_follower(m)
            return
        my_resp = MT.PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else MT.VOTE_RESP
        if t == my_resp:
            if m.from_ not in self.voters:
                return
            self.votes.setdefault(m.from_, not m.reject)
            result = quorum.vote_result(self.voters, self.votes)
            if result == quorum.VoteResult.WON:
                if self.role == Role.PRE_CANDIDATE:
                    self._campaign(pre_vote=False, transfer=False)
                else:
                    self.become_leader()
                    self._bcast_append()
            elif result == quorum.VoteResult.LOST:
                self.become_follower(self.term, NONE)

    # ----------------------------------------------------------------------- follower

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MT.PROP:
            raise NotLeaderError(self.lead)
        if t == MT.APP or t == MT.COMMIT:
            self.election_elapsed = 0
            self.lead = m.from_
            if self._leader_lost:
                self._leader_heard()
            self._handle_append(m)
        elif t == MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.from_
            if self._leader_lost:
                self._leader_heard()
            self._handle_heartbeat(m)
        elif t == MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.from_
            if self._leader_lost:
                self._leader_heard()
            self._handle_snapshot(m)
        elif t == MT.TRANSFER_LEADER:
            if self.lead != NONE:
                self._send(Message(type=MT.TRANSFER_LEADER, to=self.lead, from_=m.from_))
        elif t == MT.TIMEOUT_NOW:
            # Thesis §3.10: the leader asks us to campaign now; skip pre-vote and the lease.
            self._hup(transfer=True)
        elif t == MT.READ_INDEX:
            if self.lead == NONE:
                if m.from_ in (NONE, self.id):
                    raise ProposalDroppedError("cannot serve a linearizable read now")
                return
            self._send(Message(type=MT.READ_INDEX, to=self.lead, context=m.context))
        elif t == MT.READ_INDEX_RESP:
            if m.from_ == self.lead:
                self.read_states.append(ReadState(index=m.index, context=m.context))

    def _handle_append(self, m: Message) -> None:
        """§5.3: accept entries that extend a matching prefix; otherwise reject with a hint."""
        if not self._well_formed_append(m):
            return
        if m.index < self.log.committed:
            self._send(Message(type=MT.APP_RESP, to=m.from_, index=self.log.committed))
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            if m.type != MT.COMMIT:
                self._send(Message(type=MT.APP_RESP, to=m.from_, index=last_new))
            return
        hint_index = min(m.index, self.log.last_index())
        hint_index, hint_term = self.log.find_conflict_by_term(hint_index, m.log_term)
        self._send(
            Message(type=MT.APP_RESP, to=m.from_, index=m.index, reject=True,
                    reject_hint=hint_index, log_term=hint_term)
        )

    def _well_formed_append(self, m: Message) -> bool:
        if m.index < 0 or m.log_term < 0 or m.commit < 0:
            return False
        # Indexes follow m.index one by one; terms are positive, never above the leader's,
        # and never decrease.
        index, max_term, prev_term = m.index, m.term, 1
        for entry in m.entries:
            index += 1
            term = entry.term
            if entry.index != index or term > max_term or term < prev_term:
                return False
            prev_term = term
        return True

    def _handle_heartbeat(self, m: Message) -> None:
        # The leader caps commit at our match, so it is within our log; guard anyway.
        if m.commit <= self.log.last_index():
            self.log.commit_to(m.commit)
        self._send(Message(type=MT.HEARTBEAT_RESP, to=m.from_, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        if snap is None or snap.is_empty:
            return
        meta = snap.meta
        if meta.index <= self.log.committed:
            self._send(Message(type=MT.APP_RESP, to=m.from_, index=self.log.committed))
            return
        if self.log.match_term(meta.index, meta.term):
            # We already hold the snapshot's last entry: just fast-forward commit.
            self.log.commit_to(meta.index)
            # Acknowledge only what the snapshot vouches for: entries after it may be an
            # old term's divergent suffix, which the leader must not count (§5.3).
            self._send(Message(type=MT.APP_RESP, to=m.from_, index=self.log.committed))
            return
        self.log.restore(snap)
        self._set_membership(meta.conf_state)
        self._snapshot_conf_index = meta.index
        self._send(Message(type=MT.APP_RESP, to=m.from_, index=self.log.last_index()))

    # =================================================================== role changes

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.config.election_tick + self.rng.randrange(
            self.config.election_tick
        )
        self._leader_lost = False
        self.lead_transferee = NONE
        self.votes = {}
        self._reset_progress()
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only.clear()
        self.pending_read_index_messages = []

    def _reset_progress(self) -> None:
        last = self.log.last_index()
        self.progress = {}
        for node in self.voters | self.learners:
            pr = Progress(last + 1, self.config.max_inflight_msgs, is_learner=node in self.learners)
            if node == self.id:
                pr.match = self.log.stable_last_index()
                pr.recent_active = True
            self.progress[node] = pr

    def become_follower(self, term: int, lead: int) -> None:
        self._step = self._step_follower
        self._tick = self._tick_election
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER

    def _become_pre_candidate(self) -> None:
        # Term and vote stay as they are: a pre-vote must leave no trace (thesis §9.6).
        self._step = self._step_candidate
        self._tick = self._tick_election
        self.votes = {}
        self.lead = NONE
        self.role = Role.PRE_CANDIDATE

    def _become_candidate(self) -> None:
        self._step = self._step_candidate
        self._tick = self._tick_election
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_leader(self) -> None:
        if self.role == Role.FOLLOWER:
            raise AssertionError("a follower cannot become leader without an election")
        self._step = self._step_leader
        self._tick = self._tick_heartbeat
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        for node, pr in self.progress.items():
            pr.recent_active = True  # give every follower one election timeout to respond
            if node == self.id:
                pr.become_replicate()
                pr.match = self.log.stable_last_index()
        # Rule 2 of membership.py: no membership change until our no-op is applied.
        self.pending_conf_index = self.log.last_index()
        # §5.4.2 / §8: an empty entry of our term lets earlier entries commit promptly.
        self.log.append([Entry(term=self.term, index=self.log.last_index() + 1)])

    def _hup(self, transfer: bool) -> None:
        if self.role == Role.LEADER:
            return
        if not self._promotable():
            return
        if self._has_unapplied_conf_change():
            # Our membership may be about to change; campaigning now could use a stale one.
            return
        self._campaign(pre_vote=self.config.pre_vote and not transfer, transfer=transfer)

    def _campaign(self, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self._become_pre_candidate()
            vote_type, term = MT.PRE_VOTE, self.term + 1
        else:
            self._become_candidate()
            vote_type, term = MT.VOTE, self.term
        self.votes[self.id] = True
        if quorum.vote_result(self.voters, self.votes) == quorum.VoteResult.WON:
            # A single-voter cluster wins at once.
            if pre_vote:
                self._campaign(pre_vote=False, transfer=transfer)
            else:
                self.become_leader()
            return
        context = CAMPAIGN_TRANSFER if transfer else b""
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for node in sorted(self.voters):
            if node == self.id:
                continue
            self._send(Message(type=vote_type, to=node, term=term, index=last_index,
                               log_term=last_term, context=context))

    # ========================================================================== ticks

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self._promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(type=MT.HUP))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_tick:
            self.election_elapsed = 0
            if self.config.check_quorum:
                self.step(Message(type=MT.CHECK_QUORUM))
            if self.role == Role.LEADER and self.lead_transferee != NONE:
                self.lead_transferee = NONE  # the transfer did not finish in time: abandon it
        if self.role != Role.LEADER:
            return
        if self.heartbeat_elapsed >= self.config.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self.step(Message(type=MT.BEAT))

    # ======================================================================= sending

    def _send(self, m: Message) -> None:
        """Stamp ``m`` with our id and term and queue it in the right Ready list.

        ``m`` must be a message the core has just built and shared with no one: it is
        stamped in place (copying the frozen Message cost a fifth of the benchmark)."""
        if m.from_ == NONE:
            _stamp(m, "from_", self.id)
        if m.term == 0 and m.type not in _TERM_SET_BY_CALLER:
            _stamp(m, "term", self.term)
        if self.role == Role.LEADER and m.type in _SEND_BEFORE_PERSIST:
            self.msgs.append(m)
        else:
            self.msgs_after_persist.append(m)

    def _send_append(self, to: int, send_if_empty: bool = True, commit_notice: bool = False) -> bool:
        """Send the entries ``to`` needs next, or a snapshot if they were compacted.
        Returns whether a message was sent. With ``commit_notice``, a follower in steady
        replication with nothing to receive gets a COMMIT rather than an empty APP."""
        pr = self.progress[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        try:
            prev_term = self.log.term(prev_index)
            entries = self.log.entries_from(
                pr.next, self.config.max_bytes_per_msg, self.config.max_entries_per_msg
            )
        except CompactedError:
            return self._send_snapshot(to, pr)
        except UnavailableError:
            return False
        if not entries and not send_if_empty:
            return False
        if not entries and commit_notice and pr.state == ProgressState.REPLICATE:
            self._send(Message(type=MT.COMMIT, to=to, index=prev_index, log_term=prev_term, commit=self.log.committed))
            return True
        self._send(Message(type=MT.APP, to=to, index=prev_index, log_term=prev_term,
                           entries=tuple(entries), commit=self.log.committed))
        if entries:
            pr.sent_entries(entries[-1].index, len(entries))
        else:
            pr.sent_entries(prev_index, 0)
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # do not ship a whole snapshot to a node that may be down
        snap = self.log.storage.snapshot()
        if snap.is_empty:
            return False
        pr.become_snapshot(snap.meta.index)
        self._send(Message(type=MT.SNAP, to=to, snapshot=snap))
        return True

    def _bcast_append(self, commit_notice: bool = False) -> None:
        """``commit_notice``: the commit moved, and every follower learns it now (its
        waiting reads and watches need it), in an APP with what it lacks, or else a
        COMMIT."""
        for node in self.progress:
            if node != self.id:
                self._send_append(node, commit_notice=commit_notice)

    def _bcast_heartbeat(self, context: bytes | None = None) -> None:
        if context is None:
            context = self.read_only.last_pending_context() or b""
        for node, pr in self.progress.items():
            if node == self.id:
                continue
            # Never tell a follower to commit past what it is known to hold.
            commit = min(pr.match, self.log.committed)
            self._send(Message(type=MT.HEARTBEAT, to=node, commit=commit, context=context))

    # ====================================================================== helpers

    def _maybe_commit(self) -> bool:
        """§5.4.2: advance commit to what a majority stores, if that entry is of our term."""
        match = {node: pr.match for node, pr in self.progress.items() if not pr.is_learner}
        index = quorum.committed_index(self.voters, match)
        if not self.log.maybe_commit(index, self.term):
            return False
        if self.pending_read_index_messages and self._committed_entry_in_current_term():
            pending, self.pending_read_index_messages = self.pending_read_index_messages, []
            for m in pending:
                self._leader_read_index(m)
        return True

    def _committed_entry_in_current_term(self) -> bool:
        return self.log.term_or_zero(self.log.committed) == self.term

    def _quorum_active(self) -> bool:
        active = {node for node, pr in self.progress.items() if pr.recent_active or node == self.id}
        for node, pr in self.progress.items():
            if node != self.id:
                pr.recent_active = False
        return quorum.has_quorum(self.voters, active)

    def _is_single_voter(self) -> bool:
        return self.voters == {self.id}

    def _promotable(self) -> bool:
        return self.id in self.voters

    def _has_unapplied_conf_change(self) -> bool:
        if self.log.committed <= self.log.applied:
            return False
        try:
            pending = self.log.slice(self.log.applied + 1, self.log.committed + 1)
        except (CompactedError, UnavailableError):
            return False
        return any(e.type == EntryType.CONF_CHANGE for e in pending)

    def _apply_conf_change(self, change: ConfChange) -> None:
        try:
            conf = apply_change(self._current_conf(), change)
        except MembershipError:
            return
        self._set_membership(conf)
        if self.role != Role.LEADER:
            return
        if self.id not in self.voters:
            # We were removed or demoted: step down; the others elect among themselves.
            self.become_follower(self.term, NONE)
            return
        if self.lead_transferee not in self.progress:
            self.lead_transferee = NONE
        if self._maybe_commit():
            self._bcast_append()

    def _set_membership(self, conf: ConfState) -> None:
        """Adopt ``conf``, keeping the progress of nodes that stay."""
        self.voters = set(conf.voters)
        self.learners = set(conf.learners)
        last = self.log.last_index()
        members = self.voters | self.learners
        for node in list(self.progress):
            if node not in members:
                del self.progress[node]
        for node in members:
            pr = self.progress.get(node)
            if pr is None:
                pr = Progress(last + 1, self.config.max_inflight_msgs)
                pr.recent_active = True
                if node == self.id:
                    pr.match = self.log.stable_last_index()
                self.progress[node] = pr
            pr.is_learner = node in self.learners


_stamp = object.__setattr__
"""Sets a field of a frozen Message the core has just built (see ``_send``)."""

_entry_data = attrgetter("data")
