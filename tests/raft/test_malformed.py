"""Messages a correct peer would never send, and configurations that make no sense.

A core must survive anything on the wire: a message from a node it does not know, with a
stale term, with an index beyond or before its log, or with entries that do not follow
one another is ignored or answered as the paper says, and never raises. A Config that
makes no sense is refused up front with both offending values named.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coord_server.raft import (
    Config,
    ConfigError,
    ConfState,
    Entry,
    MemoryStorage,
    Message,
    MessageType,
    RaftCore,
    Role,
    Snapshot,
    SnapshotMeta,
)
from coord_server.raft.messages import LOCAL_TYPES

from tests.sim.ready import persist

from .network import Network

MT = MessageType
REMOTE_TYPES = [t for t in MessageType if t not in LOCAL_TYPES]


def cluster() -> tuple[Network, int, int]:
    """A settled 3-node cluster with a few entries: (network, leader, a follower)."""
    net = Network(3, random.Random(1))
    lead = net.wait_leader()
    for i in range(3):
        net.agree(f"v{i}".encode())
    follower = next(n for n in (1, 2, 3) if n != lead)
    return net, lead, follower


def answers(net: Network, node: int, m: Message) -> list[Message]:
    """Step ``m`` into ``node`` and return what it sends back (not delivered)."""
    net.trace = None
    before = len(net.queue)
    net.core(node).step(m)
    n = net.nodes[node]
    core = net.core(node)
    out: list[Message] = []
    if core.has_ready():
        rd = core.ready()
        out = rd.messages + rd.persisted_messages
        persist(n.storage, rd)  # as the driver would, without sending
        for entry in rd.committed_entries:
            net._apply(n, entry)
        core.advance(rd)
    assert len(net.queue) == before
    return out


def test_messages_from_an_unknown_node_are_ignored_by_the_leader() -> None:
    """Responses from a node outside the membership change nothing on the leader. §5.1"""
    net, lead, _ = cluster()
    core = net.core(lead)
    before = (core.term, core.log.committed, {n: p.match for n, p in core.progress.items()})
    for kind in (MT.APP_RESP, MT.HEARTBEAT_RESP, MT.VOTE_RESP, MT.PRE_VOTE_RESP):
        for index in (0, 5, 10_000):
            answers(net, lead, Message(type=kind, from_=99, to=lead, term=core.term, index=index))
    assert core.role == Role.LEADER
    assert (core.term, core.log.committed, {n: p.match for n, p in core.progress.items()}) == before
    assert 99 not in core.progress


def test_stale_term_messages_are_ignored_or_answered_with_our_term() -> None:
    """A message with an older term changes nothing; an APP or HEARTBEAT from a stale
    leader is answered with our term so it learns it was deposed, a stale PRE_VOTE is
    refused, anything else is dropped. §5.1"""
    net, lead, follower = cluster()
    core = net.core(follower)
    term, last = core.term, core.log.last_index()
    stale = term - 1
    out = answers(net, follower, Message(type=MT.APP, from_=lead, to=follower, term=stale,
                                         index=last, log_term=stale,
                                         entries=(Entry(term=stale, index=last + 1),)))
    assert [(m.type, m.term, m.reject) for m in out] == [(MT.APP_RESP, term, False)]
    assert core.log.last_index() == last
    out = answers(net, follower, Message(type=MT.PRE_VOTE, from_=lead, to=follower, term=stale))
    assert [(m.type, m.term, m.reject) for m in out] == [(MT.PRE_VOTE_RESP, term, True)]
    for kind in (MT.VOTE, MT.APP_RESP, MT.SNAP, MT.TIMEOUT_NOW, MT.HEARTBEAT_RESP):
        assert answers(net, follower, Message(type=kind, from_=lead, to=follower, term=stale)) == []
    assert (core.term, core.log.last_index(), core.lead) == (term, last, lead)


def test_app_beyond_the_log_is_rejected_with_a_hint() -> None:
    """An APP whose preceding index lies past our last entry is rejected, with our last
    index as the place to probe next. §5.3"""
    net, lead, follower = cluster()
    core = net.core(follower)
    last = core.log.last_index()
    out = answers(net, follower, Message(type=MT.APP, from_=lead, to=follower, term=core.term,
                                         index=last + 100, log_term=core.term, commit=last + 100))
    [resp] = out
    assert resp.type == MT.APP_RESP and resp.reject and resp.reject_hint == last
    assert core.log.last_index() == last and core.log.committed <= last


@pytest.mark.parametrize(
    "fields",
    [
        dict(index=-1, log_term=0),
        dict(index=-5, log_term=-1, commit=-3),
        dict(index=0, log_term=-2),
        dict(commit=-1),
    ],
)
def test_negative_indexes_are_ignored(fields: dict[str, int]) -> None:
    """Negative indexes, terms or commit indexes are malformed: ignored, nothing changes.
    §5.3"""
    net, lead, follower = cluster()
    core = net.core(follower)
    state = (core.term, core.log.last_index(), core.log.committed)
    app = {"index": core.log.last_index(), "log_term": core.term, "commit": 0, **fields}
    answers(net, follower, Message(type=MT.APP, from_=lead, to=follower, term=core.term,
                                   index=app["index"], log_term=app["log_term"], commit=app["commit"]))
    answers(net, follower, Message(type=MT.HEARTBEAT, from_=lead, to=follower, term=core.term,
                                   commit=fields.get("commit", -1)))
    assert (core.term, core.log.last_index(), core.log.committed) == state


@pytest.mark.parametrize("shape", ["gap", "repeat", "backwards", "term_too_new", "term_decreasing", "term_zero"])
def test_malformed_entries_are_ignored(shape: str) -> None:
    """An APP whose entries do not follow its preceding index one by one, or whose terms
    are impossible (newer than the message, decreasing, zero), is ignored. §5.3"""
    net, lead, follower = cluster()
    core = net.core(follower)
    last, term = core.log.last_index(), core.term
    entries = {
        "gap": (Entry(term, last + 1), Entry(term, last + 3)),
        "repeat": (Entry(term, last + 1), Entry(term, last + 1)),
        "backwards": (Entry(term, last + 2), Entry(term, last + 1)),
        "term_too_new": (Entry(term + 1, last + 1),),
        "term_decreasing": (Entry(term, last + 1), Entry(term - 1, last + 2)),
        "term_zero": (Entry(0, last + 1),),
    }[shape]
    out = answers(net, follower, Message(type=MT.APP, from_=lead, to=follower, term=term,
                                         index=last, log_term=core.log.last_term(), entries=entries))
    assert core.log.last_index() == last
    assert all(m.type != MT.APP_RESP or m.index <= last for m in out)


def test_leader_ignores_acks_for_entries_it_never_sent() -> None:
    """An APP_RESP claiming an index past the leader's log, or with absurd rejection hints,
    neither advances commit nor corrupts the follower's progress. §5.3"""
    net, lead, follower = cluster()
    core = net.core(lead)
    last, commit = core.log.last_index(), core.log.committed
    answers(net, lead, Message(type=MT.APP_RESP, from_=follower, to=lead, term=core.term, index=last + 50))
    assert core.progress[follower].match <= last and core.log.committed == commit
    for hint, hint_term in ((-7, 0), (-7, 3), (10**9, 1), (10**9, 10**9), (0, 0)):
        answers(net, lead, Message(type=MT.APP_RESP, from_=follower, to=lead, term=core.term,
                                   index=core.progress[follower].next - 1, reject=True,
                                   reject_hint=hint, log_term=hint_term))
        pr = core.progress[follower]
        assert 1 <= pr.next <= last + 1 and pr.match < pr.next
    net.tick(count=3)
    assert net.log_of(follower) == net.log_of(lead)


def test_heartbeat_commit_beyond_log_and_empty_snapshot() -> None:
    """A HEARTBEAT claiming a commit index past our log does not move commit past it; a
    SNAP without a snapshot (or an empty one) is ignored. §5.3, §7"""
    net, lead, follower = cluster()
    core = net.core(follower)
    last = core.log.last_index()
    answers(net, follower, Message(type=MT.HEARTBEAT, from_=lead, to=follower, term=core.term, commit=last + 10))
    assert core.log.committed <= last
    for snap in (None, Snapshot(), Snapshot(meta=SnapshotMeta(index=0, term=5))):
        answers(net, follower, Message(type=MT.SNAP, from_=lead, to=follower, term=core.term, snapshot=snap))
    assert core.log.last_index() == last


def test_remote_message_without_term_and_stray_read_response() -> None:
    """A remote message with term 0 is malformed and dropped; a READ_INDEX_RESP from a
    node that is not our leader is not served. §5.1, thesis §6.4"""
    net, lead, follower = cluster()
    core = net.core(follower)
    for kind in REMOTE_TYPES:
        if kind in (MT.READ_INDEX, MT.READ_INDEX_RESP):
            continue
        assert answers(net, follower, Message(type=kind, from_=lead, to=follower, term=0, index=3)) == []
    stranger = next(n for n in (1, 2, 3) if n not in (lead, follower))
    answers(net, follower, Message(type=MT.READ_INDEX_RESP, from_=stranger, to=follower,
                                   term=core.term, index=1, context=b"x"))
    assert net.nodes[follower].read_states == []


message_strategy = st.builds(
    Message,
    type=st.sampled_from(REMOTE_TYPES),
    to=st.sampled_from([1, 2, 3]),
    from_=st.sampled_from([1, 2, 3, 4, 99]),
    term=st.integers(-1, 8),
    log_term=st.integers(-1, 8),
    index=st.integers(-2, 14),
    entries=st.lists(
        st.builds(Entry, term=st.integers(-1, 8), index=st.integers(-1, 16), data=st.binary(max_size=3)),
        max_size=3,
    ).map(tuple),
    commit=st.integers(-2, 16),
    reject=st.booleans(),
    reject_hint=st.integers(-2, 16),
    snapshot=st.one_of(
        st.none(),
        st.builds(
            Snapshot,
            meta=st.builds(SnapshotMeta, index=st.integers(0, 16), term=st.integers(0, 8),
                           conf_state=st.just(ConfState(voters=frozenset({1, 2, 3})))),
        ),
    ),
    context=st.sampled_from([b"", b"ctx"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msgs=st.lists(message_strategy, min_size=1, max_size=12), seed=st.integers(0, 3))
def test_fuzzed_messages_never_crash_a_core(msgs: list[Message], seed: int) -> None:
    """Arbitrary remote messages (unknown senders, any term, indexes inside, beyond and
    before the log, malformed entries, snapshots) stepped straight into the nodes of a
    live cluster never raise, and each core keeps commit within its log and its term
    from going backwards. §5.1, §5.3"""
    net = Network(3, random.Random(seed))
    net.wait_leader()
    net.agree(b"x")
    terms = {n: net.core(n).term for n in (1, 2, 3)}
    for m in msgs:
        if m.from_ == m.to:
            continue  # not from the wire: a transport never delivers a node's own messages
        core = net.core(m.to)
        core.step(m)
        assert core.term >= terms[m.to]
        terms[m.to] = core.term
        assert core.log.committed <= core.log.last_index()
        # Drive the Ready by hand: persisting must work whatever was stepped.
        while core.has_ready():
            rd = core.ready()
            persist(net.nodes[m.to].storage, rd)
            core.advance(rd)
    for node in (1, 2, 3):
        net.core(node).tick()


# ================================================================================ Config


@pytest.mark.parametrize(
    "kwargs,names",
    [
        (dict(id=0), ["0"]),
        (dict(id=-3), ["-3"]),
        (dict(id=1, heartbeat_tick=0), ["0"]),
        (dict(id=1, election_tick=3, heartbeat_tick=4), ["3", "4"]),
        (dict(id=1, election_tick=5, heartbeat_tick=5), ["5"]),
        (dict(id=1, max_inflight_msgs=0), ["0"]),
        (dict(id=1, max_entries_per_msg=-1), ["-1"]),
        (dict(id=1, max_bytes_per_msg=0), ["0"]),
        (dict(id=1, max_uncommitted_bytes=-2), ["-2"]),
    ],
)
def test_config_validate_refuses_nonsense(kwargs: dict[str, int], names: list[str]) -> None:
    """Config.validate raises ConfigError naming the offending values (both of them when
    two settings conflict); RaftCore refuses to start with such a config."""
    config = Config(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as info:
        config.validate()
    for value in names:
        assert value in str(info.value)
    if kwargs.get("election_tick") == 3:
        text = str(info.value)
        assert "election" in text and "heartbeat" in text
    with pytest.raises(ConfigError):
        RaftCore(config, MemoryStorage(), random.Random(0))


def test_config_defaults_are_valid() -> None:
    """The defaults pass validation and keep ElectionTick = 10 x HeartbeatTick."""
    config = Config(id=1)
    config.validate()
    assert config.election_tick == 10 * config.heartbeat_tick


def test_commit_is_answered_only_when_refused() -> None:
    """A COMMIT that matches moves the follower's commit and gets no answer (the answer
    to the APP that carried the entries said it all); one that does not match is refused
    with a hint, as an APP would be, so the leader can repair the follower."""
    net, lead, follower = cluster()
    core = net.core(follower)
    last = core.log.last_index()
    last_term = core.log.term(last)
    assert answers(net, follower, Message(type=MT.COMMIT, from_=lead, to=follower, term=core.term,
                                          index=last, log_term=last_term, commit=last)) == []
    assert core.log.committed == last
    [resp] = answers(net, follower, Message(type=MT.COMMIT, from_=lead, to=follower, term=core.term,
                                            index=last + 5, log_term=core.term, commit=last + 5))
    assert resp.type == MT.APP_RESP and resp.reject and resp.reject_hint == last
    assert core.log.committed == last
