"""A network of Raft cores under the test's full control (etcd-io/raft raft_test.go ``network``).

The harness owns every core, its ``MemoryStorage`` and a toy state machine, and drives each
core exactly as the Ready contract in ``coord_server/raft/core.py`` says: ``messages`` may
leave before the Ready is persisted, ``persisted_messages`` only after; one Ready at a time;
then ``advance``. Nothing reads a clock: time is ``tick()``, and every random choice (drops,
duplicates, reordering, delays, election jitter of each core) comes from the one seeded
``random.Random`` the test passes in, so a failing run replays exactly from its seed.

Rules:

1. ``send(msgs)`` queues messages and delivers until no message remains (each delivery may
   produce more). Faults apply per delivery: ``cut``/``isolate``/``drop`` (per direction,
   a fraction), ``ignore`` (a message type), ``msg_hook`` (veto any message), and
   ``set_unreliable`` (random drop, duplicate, reorder, delay to a later tick).
   ``recover()`` heals cuts, drops and ignores.
2. ``crash(node)`` throws away the core and its state machine; only what was persisted to
   the node's storage survives. ``restart(node)`` builds a new core from that storage.
   ``hold(node)`` stops processing the node's Readies so a test can crash it mid-Ready.
3. A SNAP that is lost (dropped, or its target is down) is reported to the sender as a
   failed snapshot; one that arrives is reported as done: what a streaming transport knows.
4. The harness checks, on every step, the safety properties of Raft with the one checker
   of the Raft test harnesses, ``tests/sim/invariants.Checker`` (the Simulator's): at most
   one leader per term (election safety), log matching for every entry any log ever
   held, a new leader holding every entry committed before its term (leader
   completeness), the same entry and the same state (a digest) at each applied index on
   every node, snapshots included (state machine safety), commit never going backwards
   nor below what was persisted, and the commit rule of §5.4.2. A violation raises
   ``InvariantViolation`` (an AssertionError) at once, naming the nodes, indexes and
   terms. Unlike the Simulator, tests here step cores directly (proposals and ReadIndex
   calls the harness does not see), so the checker's "nothing invented" and ReadIndex
   rules are the tests' own business. ``check_log_matching()`` compares whole logs on
   demand. The state machine is the Simulator's too (tests/sim/statemachine.py), keeping
   the applied values that the scenarios compare (``sm.values()``), and Readies are
   persisted by the same code (tests/sim/ready.py).
5. With ``async_persist`` set, a Ready's disk write may stay outstanding while the node
   steps further messages (the driver overlaps persisting with stepping, as the Ready
   contract allows); a crash meanwhile loses that write, and only the Ready's
   ``messages`` ever left.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from coord_server.raft import (
    CompactedError,
    Config,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDroppedError,
    RaftCore,
    ReadState,
    Ready,
    Role,
)
from tests.sim.invariants import Checker, InvariantViolation
from tests.sim.ready import persist
from tests.sim.statemachine import StateMachine

MT = MessageType

MsgHook = Callable[[Message], bool]
"""Called for every message about to be delivered; return False to drop it."""


# ---------------------------------------------------------------------------- one node


@dataclass
class NetNode:
    """One member of the network: its storage (what survives a crash) and its live parts."""

    id: int
    config: Config
    storage: MemoryStorage
    core: RaftCore | None
    sm: StateMachine = field(default_factory=lambda: StateMachine(keep_values=True))
    read_states: list[ReadState] = field(default_factory=list)
    held: bool = False
    """While True the harness leaves this node's Readies alone (see ``Network.hold``)."""
    pending: Ready | None = None
    """A Ready taken from the core whose disk write has not finished (Rule 5)."""
    incarnation: int = 0

    @property
    def alive(self) -> bool:
        return self.core is not None


def bootstrapped_storage(voters: Sequence[int]) -> MemoryStorage:
    """The storage of a founding member right after ``RaftCore.bootstrap(voters)``."""
    storage = MemoryStorage()
    core = RaftCore(Config(id=min(voters)), storage, random.Random(0))
    core.bootstrap(voters)
    rd = core.ready()
    assert rd.hard_state is not None
    persist(storage, rd)
    return storage


def crafted_storage(
    voters: Sequence[int], terms: Sequence[int], term: int = 0, vote: int = 0, commit: int = 0
) -> MemoryStorage:
    """A storage whose membership is ``voters`` (no bootstrap entries) and whose log holds
    one entry per item of ``terms`` (index 1, 2, ...), each carrying data b"i@t"."""
    storage = MemoryStorage(ConfState(voters=frozenset(voters)))
    storage.append(
        [Entry(term=t, index=i, data=f"{i}@{t}".encode()) for i, t in enumerate(terms, start=1)]
    )
    storage.set_hard_state(HardState(term=max([term, *terms], default=0), vote=vote, commit=commit))
    return storage


def state_at(storage: MemoryStorage, index: int) -> bytes:
    """The snapshot data of the state machine that applied ``storage``'s entries up to
    ``index`` (for a test that crafts a snapshot; the checker compares its state)."""
    sm = StateMachine(keep_values=True)
    for entry in storage.entries(1, index + 1):
        sm.apply(entry)
    return sm.snapshot_data()


# ---------------------------------------------------------------------------- the network


class Network:
    """Cores connected by a network the test controls; see the module docstring."""

    def __init__(
        self,
        peers: int | Sequence[RaftCore | None],
        rng: random.Random,
        *,
        pre_vote: bool = True,
        check_quorum: bool = True,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        max_entries_per_msg: int = 512,
        max_inflight_msgs: int = 256,
    ) -> None:
        """``peers`` is a cluster size (nodes 1..n, bootstrapped together with the given
        settings) or a list of ready-made cores; a ``None`` in the list is a black hole
        (a node id that swallows whatever is sent to it)."""
        self.rng = rng
        self.election_tick = election_tick
        self.nodes: dict[int, NetNode] = {}
        self.black_holes: set[int] = set()
        self._settings: dict[str, object] = dict(
            pre_vote=pre_vote, check_quorum=check_quorum, election_tick=election_tick,
            heartbeat_tick=heartbeat_tick, max_entries_per_msg=max_entries_per_msg,
            max_inflight_msgs=max_inflight_msgs,
        )
        # Faults (Rule 1).
        self.drops: dict[tuple[int, int], float] = {}
        self.ignored: set[MessageType] = set()
        self.msg_hook: MsgHook | None = None
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        self.delay_rate = 0.0
        self.reorder = False
        # Traffic.
        self.queue: list[Message] = []
        self.delayed: list[Message] = []
        self.sent: Counter[MessageType] = Counter()
        """Messages handed to the network, by type (dropped ones included)."""
        self.sent_by: Counter[tuple[int, MessageType]] = Counter()
        """Messages handed to the network, by (sender, type)."""
        self.delivered: Counter[MessageType] = Counter()
        self.trace: list[Message] | None = None
        """Set to a list to record every delivered message."""
        self.ticks = 0
        # Safety (Rule 4).
        self.checker = Checker(lambda: self.describe())
        self.checker.check_proposals = False  # tests propose on cores directly too
        self.leaders = self.checker.leaders
        """term -> the node that led it."""
        self.applied: dict[int, Entry] = {}
        """index -> the entry the first node to apply it applied there (the checker holds
        every other node to it)."""
        self.async_persist = 0.0
        """Rule 5: the probability that a Ready's disk write stays outstanding while the
        node keeps stepping messages (0: every Ready is handled at once)."""
        self.crash_in_write = 0.0
        """With ``async_persist``: the probability, at each delivery, that a node whose
        disk write is outstanding crashes before it finishes (restart it yourself)."""
        self._writes_held = False
        """Whether any Ready was ever left outstanding (then ``deliver`` looks for them)."""
        self.auto_compact: int = 0
        """When > 0, a node snapshots and compacts its log once this many applied entries
        sit in it beyond its last snapshot."""

        if isinstance(peers, int):
            ids = list(range(1, peers + 1))
            for node in ids:
                self.add_node(node, bootstrapped_storage(ids))
        else:
            for position, core in enumerate(peers, start=1):
                if core is None:
                    self.black_holes.add(position)
                    continue
                storage = core.log.storage
                assert isinstance(storage, MemoryStorage), "the network needs MemoryStorage"
                n = NetNode(core.id, core.config, storage, core)
                n.sm = self._restored_state(n.id, storage)
                self.nodes[core.id] = n
                self.checker.node_started(n.id, core)
        for node in list(self.nodes):
            self._process(node)
        self.deliver()

    # ------------------------------------------------------------------- membership of the net

    def config_for(self, node: int, **overrides: object) -> Config:
        settings: dict[str, object] = dict(self._settings)
        settings.update(overrides)
        return Config(id=node, **settings)  # type: ignore[arg-type]

    def add_node(self, node: int, storage: MemoryStorage | None = None, **overrides: object) -> NetNode:
        """Start node ``node`` from ``storage`` (an empty one: a brand-new server that knows
        nothing and waits for a leader to contact it)."""
        config = self.config_for(node, **overrides)
        storage = storage if storage is not None else MemoryStorage()
        net_node = NetNode(node, config, storage, None)
        self.nodes[node] = net_node
        self._start(net_node)
        return net_node

    def _restored_state(self, node: int, storage: MemoryStorage) -> StateMachine:
        """The state machine as a restarting server rebuilds it: from its latest snapshot
        (whose state the checker compares with what other nodes applied there)."""
        snap = storage.snapshot()
        sm = StateMachine(keep_values=True)
        if not snap.is_empty:
            sm.restore(snap)
            self.checker.check_snapshot_digest(node, snap.meta.index, sm.digest)
        return sm

    def _start(self, n: NetNode) -> None:
        snap = n.storage.snapshot()
        n.sm = self._restored_state(n.id, n.storage)
        n.core = RaftCore(n.config, n.storage, random.Random(self.rng.randrange(1 << 30)),
                          applied=snap.meta.index)
        n.incarnation += 1
        n.read_states = []
        n.held = False
        self.checker.node_started(n.id, n.core)

    def core(self, node: int) -> RaftCore:
        core = self.nodes[node].core
        assert core is not None, f"node {node} is down"
        return core

    def alive(self) -> list[int]:
        return sorted(n for n, nn in self.nodes.items() if nn.alive)

    # ------------------------------------------------------------------------- faults

    def drop(self, from_: int, to: int, fraction: float) -> None:
        """Lose ``fraction`` of the messages from ``from_`` to ``to``."""
        self.drops[(from_, to)] = fraction

    def cut(self, a: int, b: int) -> None:
        """No message passes between ``a`` and ``b``, either way."""
        self.drop(a, b, 1.0)
        self.drop(b, a, 1.0)

    def isolate(self, node: int) -> None:
        """Cut ``node`` off from every other node."""
        for other in list(self.nodes) + sorted(self.black_holes):
            if other != node:
                self.cut(node, other)

    def partition(self, *groups: Iterable[int]) -> None:
        """Only nodes in the same group can talk."""
        sets = [set(g) for g in groups]
        every = set(self.nodes)
        for group in sets:
            for a in group:
                for b in every - group:
                    self.cut(a, b)

    def ignore(self, msg_type: MessageType) -> None:
        """Lose every message of ``msg_type``."""
        self.ignored.add(msg_type)

    def recover(self) -> None:
        """Heal every cut, drop and ignore (the unreliable settings and hook stay)."""
        self.drops.clear()
        self.ignored.clear()

    def set_unreliable(
        self, drop: float = 0.1, duplicate: float = 0.05, delay: float = 0.1, reorder: bool = True
    ) -> None:
        """Every message is lost with probability ``drop``, delivered twice with
        ``duplicate``, held back to a later tick with ``delay``; with ``reorder`` the
        in-flight messages are delivered in random order."""
        self.drop_rate, self.dup_rate, self.delay_rate, self.reorder = drop, duplicate, delay, reorder

    def set_reliable(self) -> None:
        self.set_unreliable(0.0, 0.0, 0.0, False)

    # --------------------------------------------------------------------- crash / restart

    def crash(self, node: int) -> None:
        """Stop ``node``: its core, state machine and anything not persisted are gone."""
        n = self.nodes[node]
        n.core = None
        n.pending = None  # a disk write in progress is lost
        n.sm = StateMachine(keep_values=True)
        n.read_states = []
        n.held = False
        self.checker.node_stopped(node)

    def restart(self, node: int) -> None:
        """Start ``node`` again from what its storage holds."""
        n = self.nodes[node]
        assert n.core is None, f"node {node} is still running"
        self._start(n)
        self._process(node)
        self.deliver()

    def hold(self, node: int) -> None:
        """Stop handling ``node``'s Readies: its state changes stay unpersisted and its
        messages unsent until ``release`` or ``crash_holding``."""
        self.nodes[node].held = True

    def release(self, node: int) -> None:
        self.nodes[node].held = False
        self._process(node)
        self.deliver()

    def crash_holding(self, node: int, send_early: bool = True) -> Ready | None:
        """Crash a held node in the middle of its Ready: the Ready's ``messages`` (those the
        contract lets go out before the disk write) are sent when ``send_early``; nothing
        of it is persisted and ``persisted_messages`` never leave. Returns that Ready."""
        n = self.nodes[node]
        assert n.held and n.core is not None
        rd: Ready | None
        if n.pending is not None:  # its early messages are already out
            rd, send_early = n.pending, False
        else:
            rd = n.core.ready() if n.core.has_ready() else None
        self.crash(node)
        if rd is not None and send_early:
            self._emit(rd.messages)
        self.deliver()
        return rd

    # ------------------------------------------------------------------------- driving

    def send(self, msgs: Iterable[Message] = ()) -> None:
        """Queue ``msgs`` and deliver until nothing is in flight."""
        self._emit(msgs)
        self.deliver()

    def step(self, node: int, m: Message) -> None:
        """Step ``m`` into ``node`` directly (no faults), then deliver what follows."""
        self.core(node).step(m)
        self._after_step(node)
        self.deliver()

    def campaign(self, node: int) -> None:
        self.core(node).campaign()
        self._after_step(node)
        self.deliver()

    def propose(self, node: int, data: bytes) -> int:
        """Propose on ``node`` (raises what the core raises); returns the entry's index."""
        index = self.core(node).propose(data)
        self._after_step(node)
        self.deliver()
        return index

    def propose_batch(self, node: int, datas: Sequence[bytes]) -> list[int]:
        """Propose several commands as one batch on ``node``; returns their indexes."""
        indexes = self.core(node).propose_batch(datas)
        self._after_step(node)
        self.deliver()
        return indexes

    def process(self, node: int) -> None:
        """Handle ``node``'s pending Readies (after driving its core directly), deliver."""
        self._after_step(node)
        self.deliver()

    def tick(self, nodes: Iterable[int] | None = None, count: int = 1) -> None:
        """``count`` ticks: every live node (or ``nodes``) ticks once, then messages held
        back by delay rejoin the network and everything is delivered."""
        for _ in range(count):
            self.ticks += 1
            for node in sorted(self.nodes) if nodes is None else list(nodes):
                n = self.nodes[node]
                if n.core is None:
                    continue
                n.core.tick()
                self._after_step(node)
            if self.delayed:
                self.queue.extend(self.delayed)
                self.delayed = []
            self.deliver()

    def tick_until(self, cond: Callable[[], bool], max_ticks: int, what: str = "") -> int:
        """Tick until ``cond()`` holds; returns the ticks it took. Fails after ``max_ticks``."""
        for used in range(max_ticks + 1):
            if cond():
                return used
            if used < max_ticks:
                self.tick()
        raise AssertionError(
            f"{what or 'condition'} not reached within {max_ticks} ticks; " + self.describe()
        )

    def deliver(self) -> None:
        """Deliver until no message is in flight and no disk write is outstanding
        (delayed messages wait for the next tick)."""
        while True:
            pending = [n for n, nn in self.nodes.items() if nn.pending is not None] if self._writes_held else []
            if pending and self.crash_in_write and self.rng.random() < self.crash_in_write:
                self.crash(self.rng.choice(pending))
                continue
            if pending and (not self.queue or self.rng.random() < 0.3):
                self._complete_pending(self.rng.choice(pending))
                continue
            if not self.queue:
                return
            if self.reorder and len(self.queue) > 1:
                i = self.rng.randrange(len(self.queue))
                self.queue[i], self.queue[-1] = self.queue[-1], self.queue[i]
                m = self.queue.pop()
            else:
                m = self.queue.pop(0)
            self._deliver_one(m)

    # ---------------------------------------------------------------------- internals

    def _emit(self, msgs: Iterable[Message]) -> None:
        for m in msgs:
            self.sent[m.type] += 1
            self.sent_by[(m.from_, m.type)] += 1
            self.queue.append(m)

    def _lost(self, m: Message) -> bool:
        if m.type in self.ignored:
            return True
        fraction = self.drops.get((m.from_, m.to), 0.0)
        if fraction >= 1.0 or (fraction > 0.0 and self.rng.random() < fraction):
            return True
        if self.drop_rate and self.rng.random() < self.drop_rate:
            return True
        if self.msg_hook is not None and not self.msg_hook(m):
            return True
        return False

    def _deliver_one(self, m: Message) -> None:
        target = self.nodes.get(m.to)
        if target is None or target.core is None or self._lost(m):
            self._lost_message(m)
            return
        if self.delay_rate and self.rng.random() < self.delay_rate:
            self.delayed.append(m)
            return
        if self.dup_rate and self.rng.random() < self.dup_rate:
            self.queue.append(m)
        self.delivered[m.type] += 1
        if self.trace is not None:
            self.trace.append(m)
        target.core.step(m)
        self._after_step(m.to)
        if m.type == MT.SNAP:
            self._report_snapshot(m, failed=False)

    def _lost_message(self, m: Message) -> None:
        if m.type == MT.SNAP:
            self._report_snapshot(m, failed=True)  # Rule 3

    def _report_snapshot(self, m: Message, failed: bool) -> None:
        sender = self.nodes.get(m.from_)
        if sender is None or sender.core is None:
            return
        sender.core.report_snapshot(m.to, failed)
        self._after_step(m.from_)

    def _after_step(self, node: int) -> None:
        n = self.nodes[node]
        if n.core is None:
            return
        self._check_core(n)
        if not n.held:
            self._process(node)

    def _process(self, node: int) -> None:
        """Handle Readies of ``node`` until it has none, per the Ready contract. With
        ``async_persist`` a Ready may instead stay outstanding (its disk write "in
        progress") while the node keeps stepping messages (Rule 5)."""
        n = self.nodes[node]
        while n.core is not None and not n.held and n.pending is None and n.core.has_ready():
            rd = n.core.ready()
            self._emit(rd.messages)  # may leave before the disk write
            if self.async_persist and self.rng.random() < self.async_persist:
                n.pending = rd
                self._writes_held = True
                return
            self._complete(n, rd)

    def _complete(self, n: NetNode, rd: Ready) -> None:
        """The disk write of ``rd`` is done: persist, send, apply, advance."""
        core = n.core
        assert core is not None
        persist(n.storage, rd)
        if rd.hard_state is not None:
            self.checker.persisted(n.id, rd.hard_state.commit)
        if rd.snapshot is not None:
            self.checker.restored_snapshot(n.id, rd.snapshot, n.sm.applied)
            n.sm.restore(rd.snapshot)
        self._emit(rd.persisted_messages)  # only now: the disk holds what they promise
        for entry in rd.committed_entries:
            self._apply(n, entry)
        n.read_states.extend(rd.read_states)
        core.advance(rd)
        if rd.snapshot is not None:  # otherwise ``advance`` moves only what the next step's check sees
            self._check_core(n)
        self._maybe_compact(n)

    def _complete_pending(self, node: int) -> None:
        n = self.nodes[node]
        rd, n.pending = n.pending, None
        if rd is not None and n.core is not None:
            self._complete(n, rd)
            self._process(node)

    def _apply(self, n: NetNode, entry: Entry) -> None:
        expected = n.sm.applied + 1
        n.sm.apply(entry)
        self.checker.applied_entry(n.id, expected, entry, n.sm.digest)
        self.applied.setdefault(entry.index, entry)

    def _check_core(self, n: NetNode) -> None:
        core = n.core
        assert core is not None
        self.checker.check_node(n.id, core)
        if self.checker.fresh:
            self.checker.check_leaders({i: m.core for i, m in self.nodes.items() if m.core is not None})

    def _maybe_compact(self, n: NetNode) -> None:
        if not self.auto_compact or n.core is None:
            return
        snap_index = n.storage.snapshot().meta.index
        if n.sm.applied - snap_index >= self.auto_compact and n.sm.applied <= n.storage.last_index():
            self.compact(n.id)

    # ------------------------------------------------------------------------ queries

    def compact(self, node: int) -> int:
        """Snapshot ``node``'s state machine at its applied index and drop the log before
        it (as the server does). Returns the snapshot index."""
        n = self.nodes[node]
        core = self.core(node)
        index = n.sm.applied
        assert core.log.applied == index, (core.log.applied, index)
        self.checker.snapshot_taken(node, index, core.conf_state(), n.sm.conf)
        n.storage.create_snapshot(index, core.conf_state(), n.sm.snapshot_data())
        n.storage.compact(index)
        return index

    def leader(self) -> int | None:
        """The live node that leads the highest term, if any."""
        best: tuple[int, int] | None = None
        for node, n in self.nodes.items():
            if n.core is not None and n.core.role == Role.LEADER:
                if best is None or n.core.term > best[0]:
                    best = (n.core.term, node)
        return None if best is None else best[1]

    def leader_among(self, nodes: Iterable[int]) -> int | None:
        """A leader that every live node of ``nodes`` follows (and that is one of them)."""
        group = [n for n in nodes if self.nodes[n].alive]
        leads = {self.core(n).lead for n in group}
        if len(leads) != 1:
            return None
        lead = leads.pop()
        if lead not in group or self.core(lead).role != Role.LEADER:
            return None
        return lead

    def wait_leader(self, nodes: Iterable[int] | None = None, max_ticks: int = 200) -> int:
        """Tick until one leader is followed by all live ``nodes`` (default: all)."""
        group = list(self.nodes) if nodes is None else list(nodes)
        self.tick_until(lambda: self.leader_among(group) is not None, max_ticks, "a leader")
        lead = self.leader_among(group)
        assert lead is not None
        return lead

    def committed_on(self, index: int) -> list[int]:
        """Live nodes that applied ``index``."""
        return [n for n, nn in self.nodes.items() if nn.alive and nn.sm.applied >= index]

    def agree(self, data: bytes, expected: int | None = None, max_ticks: int = 300) -> int:
        """Like MIT 6.824's ``one()``: propose ``data`` on whichever node leads, retrying on
        leader changes, until at least ``expected`` nodes (default: all live ones) applied
        it. Returns its index."""
        need = len(self.alive()) if expected is None else expected
        deadline = self.ticks + max_ticks
        while self.ticks <= deadline:
            lead = self.leader()
            if lead is not None:
                try:
                    index = self.propose(lead, data)
                except ProposalDroppedError:  # not leader any more, transferring: retry
                    index = 0
                if index:
                    # Give this attempt up to two election timeouts.
                    for _ in range(4 * self.election_tick):
                        entry = self.applied.get(index)
                        if entry is not None and len(self.committed_on(index)) >= need:
                            if entry.data == data:
                                return index
                            break  # another entry won that index: retry
                        if self.ticks > deadline:
                            break
                        self.tick()
                    continue
            self.tick()
        raise AssertionError(f"{data!r} not agreed by {need} nodes in {max_ticks} ticks; " + self.describe())

    def log_of(self, node: int) -> list[tuple[int, int]]:
        """(index, term) of every entry in ``node``'s log."""
        core = self.core(node)
        return [(e.index, e.term) for e in core.log.all_entries()]

    def check_log_matching(self) -> None:
        """Log matching (§5.3): two logs with an entry of the same index and term are
        identical up to it."""
        logs = {}
        for node in self.alive():
            core = self.core(node)
            logs[node] = {e.index: e for e in core.log.all_entries()}
        nodes = sorted(logs)
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                common = sorted(set(logs[a]) & set(logs[b]), reverse=True)
                agreed = next((x for x in common if logs[a][x].term == logs[b][x].term), None)
                if agreed is None:
                    continue
                for x in common:
                    if x <= agreed and logs[a][x] != logs[b][x]:
                        raise AssertionError(
                            f"log matching: nodes {a} and {b} agree at {agreed} "
                            f"but differ at {x}: {logs[a][x]} vs {logs[b][x]}"
                        )

    def describe(self) -> str:
        parts = []
        for node, n in sorted(self.nodes.items()):
            if n.core is None:
                parts.append(f"{node}: down")
                continue
            c = n.core
            parts.append(
                f"{node}: {c.role.name} term={c.term} lead={c.lead} commit={c.log.committed} "
                f"last={c.log.last_index()} applied={n.sm.applied}"
            )
        return "[" + "; ".join(parts) + f"] at tick {self.ticks}"


__all__ = [
    "CompactedError", "InvariantViolation", "MsgHook", "NetNode", "Network", "StateMachine",
    "bootstrapped_storage", "crafted_storage", "state_at",
]
