"""The values that flow in and out of the Raft core.

Everything here is a frozen dataclass or an IntEnum: plain data, cheap to copy, safe to
share between the core, the simulator and the transport codec. There is one ``Message``
type for every kind of traffic (the shape of etcd's raftpb.Message); which fields matter
depends on ``Message.type`` and is documented field by field below.

Node ids are positive integers; ``NONE`` (0) means "no node" (no vote, no known leader).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields
from enum import IntEnum

NONE = 0
"""The id that means "nobody": no vote cast, no leader known."""


class MessageType(IntEnum):
    """Every message the core steps. Local messages (term 0) never cross the network.

    When adding a type, update ``LOCAL_TYPES`` and ``RESPONSE_TYPES`` below.
    """

    HUP = 0
    """Local: start an election (a pre-vote first when PreVote is on)."""
    BEAT = 1
    """Local: the leader broadcasts heartbeats."""
    PROP = 2
    """Local: append ``entries`` to the log (only a leader accepts it)."""
    APP = 3
    """Leader -> follower: entries after (``index``, ``log_term``), and the leader's commit."""
    APP_RESP = 4
    """Follower -> leader: accepted up to ``index``, or ``reject`` with a back-off hint."""
    VOTE = 5
    """Candidate -> all: vote for me in ``term``; my last entry is (``index``, ``log_term``)."""
    VOTE_RESP = 6
    """Answer to VOTE; ``reject`` says whether the vote was refused."""
    PRE_VOTE = 7
    """Pre-candidate -> all: would you vote for me in ``term`` (not yet my term)?"""
    PRE_VOTE_RESP = 8
    """Answer to PRE_VOTE."""
    SNAP = 9
    """Leader -> follower: install ``snapshot`` (the transport streams it in chunks)."""
    HEARTBEAT = 10
    """Leader -> follower: I am alive; ``commit`` is min(leader commit, follower match)."""
    HEARTBEAT_RESP = 11
    """Follower -> leader: heartbeat acknowledged, echoing ``context`` (ReadIndex rounds)."""
    TRANSFER_LEADER = 12
    """Local: the leader hands leadership to ``from_`` (the transferee)."""
    TIMEOUT_NOW = 13
    """Leader -> transferee: campaign now, skipping pre-vote and the leader lease."""
    READ_INDEX = 14
    """Local, or follower -> leader: ask for a linearizable read point tagged ``context``."""
    READ_INDEX_RESP = 15
    """Leader -> follower: the read point ``index`` for ``context``."""
    UNREACHABLE = 16
    """Local, from the transport: a message to ``from_`` could not be delivered."""
    SNAP_STATUS = 17
    """Local, from the transport: sending a snapshot to ``from_`` finished (``reject`` = failed)."""
    CHECK_QUORUM = 18
    """Local: the leader checks that a quorum was active during the last election timeout."""
    COMMIT = 19
    """Leader -> follower in steady replication: the commit moved to ``commit``; an APP
    without entries after (``index``, ``log_term``), answered only when refused or stale.
    The answer to the APP that carried those entries already told the leader all that
    accepting it would (half the answers a write cost). A lost answer is recovered as
    any is: the next heartbeat answer makes the leader send an APP, which is answered."""


LOCAL_TYPES = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.PROP,
        MessageType.TRANSFER_LEADER,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
        MessageType.CHECK_QUORUM,
    }
)
"""Message types produced and consumed inside one node; they carry term 0."""

RESPONSE_TYPES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.PRE_VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.READ_INDEX_RESP,
    }
)
"""Message types that answer a request."""


class EntryType(IntEnum):
    """What an entry's ``data`` holds."""

    NORMAL = 0
    """Application data for the state machine (empty data: the leader's no-op of its term)."""
    CONF_CHANGE = 1
    """An encoded ``ConfChange``: one membership change."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. ``index`` starts at 1; ``term`` is the leader's term when appended."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


def _fill_entry_slots() -> None:
    """Give Entry an ``__init__`` that fills its slots through their descriptors: the
    same signature and the same frozen object, built about twice as fast as by the
    generated one (which calls object.__setattr__ per field). An Entry is built for every
    proposed command, so this shows in bench/raft_core.py."""
    # A field added to Entry must be added here too, or it would silently stay unset.
    assert [f.name for f in fields(Entry)] == ["term", "index", "type", "data"], "update _fill_entry_slots"
    slot = vars(Entry)
    set_term, set_index = slot["term"].__set__, slot["index"].__set__
    set_type, set_data = slot["type"].__set__, slot["data"].__set__

    def __init__(self: Entry, term: int, index: int, type: EntryType = EntryType.NORMAL,
                 data: bytes = b"") -> None:
        set_term(self, term)
        set_index(self, index)
        set_type(self, type)
        set_data(self, data)

    __init__.__qualname__ = "Entry.__init__"
    Entry.__init__ = __init__  # type: ignore[method-assign]


_fill_entry_slots()


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before the node says anything that depends on it (§5, Figure 2).

    ``term`` is the latest term seen, ``vote`` the candidate voted for in it (or NONE),
    ``commit`` the highest index known committed (persisting it saves re-replication work
    after a restart; it is never required for safety).
    """

    term: int = 0
    vote: int = NONE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership: voters count toward quorums, learners only receive the log."""

    voters: frozenset[int] = frozenset()
    learners: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """A snapshot covers the log up to and including (``index``, ``term``)."""

    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state machine's image at ``meta.index``; ``data`` is opaque to the core."""

    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""

    @property
    def is_empty(self) -> bool:
        return self.meta.index == 0


EMPTY_SNAPSHOT = Snapshot()


class ConfChangeType(IntEnum):
    """One membership change (one server at a time, Raft thesis §4.1)."""

    ADD_NODE = 0
    """Add a voter, or promote an existing learner to voter."""
    ADD_LEARNER = 1
    """Add a non-voting learner (or demote a voter to learner)."""
    REMOVE_NODE = 2
    """Remove a voter or a learner."""


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A membership change as carried in a CONF_CHANGE entry's data."""

    type: ConfChangeType
    node_id: int
    context: bytes = b""

    _HEADER = struct.Struct(">BQ")

    def encode(self) -> bytes:
        return self._HEADER.pack(self.type, self.node_id) + self.context

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        if len(data) < cls._HEADER.size:
            raise ValueError(f"conf change of {len(data)} bytes is shorter than its header")
        kind, node_id = cls._HEADER.unpack_from(data)
        return cls(ConfChangeType(kind), node_id, bytes(data[cls._HEADER.size :]))


@dataclass(frozen=True, slots=True)
class Message:
    """One message to or from the core.

    Field meanings by type (fields not listed are zero/empty):

    - ``term``: the sender's term; 0 for local messages. For PRE_VOTE it is the term the
      sender would campaign in; a granted PRE_VOTE_RESP echoes that term.
    - ``log_term``, ``index``: APP and COMMIT: the entry preceding ``entries`` (type=APP, index=100,
      log_term=5 means "my entry 100 has term 5; append after it"). VOTE/PRE_VOTE: the
      candidate's last entry. APP_RESP: the highest index now matching the leader (accept)
      or the rejected ``index`` (reject). READ_INDEX_RESP: the read point.
    - ``entries``: APP and PROP: the entries to append.
    - ``commit``: APP/COMMIT/HEARTBEAT: the leader's commit index (capped for heartbeats).
    - ``reject``, ``reject_hint``: APP_RESP: refused, and the follower suggests probing at
      ``reject_hint`` whose term is ``log_term`` (fast back-off). VOTE_RESP/PRE_VOTE_RESP:
      vote refused. SNAP_STATUS: the snapshot failed to send.
    - ``snapshot``: SNAP only.
    - ``context``: HEARTBEAT/HEARTBEAT_RESP/READ_INDEX/READ_INDEX_RESP: the ReadIndex
      request tag. VOTE/PRE_VOTE: ``CAMPAIGN_TRANSFER`` when forced by TIMEOUT_NOW.
    """

    type: MessageType
    to: int = NONE
    from_: int = NONE
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""


CAMPAIGN_TRANSFER = b"coord-campaign-transfer"
"""``context`` of a VOTE caused by leadership transfer: it may bypass the leader lease."""


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read point: once ``index`` is applied, serve the read tagged ``context``."""

    index: int
    context: bytes
