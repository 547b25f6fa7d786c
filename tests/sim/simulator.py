"""A deterministic, seeded simulator for a cluster of RaftCores.

One ``random.Random(seed)`` decides everything: election jitter (each node's rng is drawn
from it), message delay, loss, duplication and reordering, partitions, pauses, crashes,
disk latency, snapshots, membership changes, client traffic. There is no wall clock:
time is an integer of simulator units, ``TICK`` units per Raft tick, and events run in
(time, sequence) order from a heap. The same seed gives the same run, event for event.

Each node is driven exactly as ``coord_server.raft.core`` documents:

Rule 1: one Ready outstanding. ``ready()`` is taken only after the previous one was
        advanced; ``messages`` are sent at once, then the disk write is scheduled.
Rule 2: the disk write (snapshot, entries, hard state into the node's MemoryStorage)
        happens at the PERSIST event; MemoryStorage holds only what was written there.
Rule 3: at the later APPLY event ``persisted_messages`` are sent, the snapshot and
        ``committed_entries`` are applied to the state machine, read states are served,
        and ``advance`` is called. A crash may fall during the write (a prefix of its
        records survives, as a torn WAL tail), between the write and APPLY, or anywhere
        else; it loses the core, its unstable entries, the outstanding Ready and the
        volatile state machine.
Rule 4: a restart builds a new core over the same MemoryStorage, the state machine
        restored from the storage's snapshot.
Rule 5: after each event the invariants (``invariants.Checker``) are checked for the node
        it touched; any violation raises ``InvariantViolation``.

A run is a faulty phase of ``profile.ticks`` ticks, then ``heal()`` (network, pauses and
crashes repaired) and ``check_liveness()``: a leader must appear and new commands must be
applied on every live member within a bounded number of ticks.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from coord_server.raft import (
    Config,
    ConfChange,
    ConfChangeType,
    MembershipError,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDroppedError,
    RaftCore,
    Ready,
    Role,
)

from .invariants import Checker, InvariantViolation
from .network import Network
from .profiles import MIXED, Profile
from .ready import persist
from .statemachine import StateMachine

MT = MessageType

# Event kinds: small ints, so traces compare and print the same in every process.
EV_WORLD, EV_TICK, EV_DELIVER, EV_PERSIST, EV_APPLY, EV_SNAP_STATUS, EV_UNREACHABLE, EV_RESTART = range(8)
# Trace-only action codes for what the world does.
(
    ACT_PROPOSE, ACT_READ, ACT_CRASH, ACT_RESTART, ACT_PARTITION, ACT_HEAL, ACT_LOSS,
    ACT_PAUSE, ACT_TRANSFER, ACT_CONF, ACT_SNAPSHOT, ACT_RETIRE, ACT_DROP, ACT_CAMPAIGN,
) = range(100, 114)

_NAMES = {
    EV_WORLD: "world", EV_TICK: "tick", EV_DELIVER: "deliver", EV_PERSIST: "persist",
    EV_APPLY: "apply", EV_SNAP_STATUS: "snap-status", EV_UNREACHABLE: "unreachable",
    EV_RESTART: "restart-due",
    ACT_PROPOSE: "propose", ACT_READ: "read-index", ACT_CRASH: "crash", ACT_RESTART: "restart",
    ACT_PARTITION: "partition", ACT_HEAL: "heal", ACT_LOSS: "loss", ACT_PAUSE: "pause",
    ACT_TRANSFER: "transfer", ACT_CONF: "conf-change", ACT_SNAPSHOT: "snapshot",
    ACT_RETIRE: "retire", ACT_DROP: "drop", ACT_CAMPAIGN: "campaign",
}

CoreFactory = Callable[[Config, MemoryStorage, random.Random, int], RaftCore]


class LivenessViolation(AssertionError):
    """After all faults healed, the cluster did not elect a leader or commit in time."""


class SimNode:
    """One simulated server: its disk (MemoryStorage) survives crashes, the rest does not."""

    __slots__ = (
        "id", "config", "storage", "rng", "core", "sm", "ready", "incarnation",
        "paused_until", "retired", "removing", "tick_period", "snapshot_every",
    )

    def __init__(self, node_id: int, config: Config, rng: random.Random, tick_period: int,
                 snapshot_every: int) -> None:
        self.id = node_id
        self.config = config
        self.storage = MemoryStorage()
        self.rng = rng
        """This node's election jitter; drawn from the simulator's rng."""
        self.core: RaftCore | None = None
        """None while crashed (or retired)."""
        self.sm = StateMachine()
        self.ready: Ready | None = None
        """The outstanding Ready (Rule 1)."""
        self.incarnation = 0
        """Bumped on every crash; events of an older incarnation are void."""
        self.paused_until = 0
        self.retired = False
        """Removed from the cluster and shut down for good."""
        self.removing = False
        """A removal was proposed: never add this id again (etcd refuses re-used ids too)."""
        self.tick_period = tick_period
        self.snapshot_every = snapshot_every


class Simulator:
    """A seeded cluster: ``Simulator(seed).run()`` plays one whole schedule.

    ``n_nodes`` defaults to 3 for even seeds and 5 for odd ones; ``profile`` says how often
    each fault happens; ``core_factory`` builds each core (tests pass broken variants);
    ``config`` overrides the core settings otherwise drawn per seed; ``record_trace`` keeps
    every event (the determinism test compares them). Scripted tests drive it by hand with
    ``run_until``, ``run_until_true``, ``campaign``, ``crash``, ``restart``, ``propose_at``,
    ``add_node``, ``change_membership`` and ``network``.
    """

    TICK = 10
    """Simulator time units per Raft tick."""
    LEADER_WITHIN = 200
    """Liveness: ticks after healing within which a leader must be elected (20 election
    timeouts: without PreVote, a candidate whose log is behind can keep resetting the
    others' timers for a few rounds)."""
    COMMIT_WITHIN = 200
    """Liveness: further ticks within which new commands must apply on every live member,
    plus one tick per entry the slowest member lags behind (with one entry per message
    and one message in flight, catching up takes a round trip per entry)."""

    def __init__(
        self,
        seed: int,
        n_nodes: int | None = None,
        profile: Profile = MIXED,
        core_factory: CoreFactory | None = None,
        config: dict[str, Any] | None = None,
        record_trace: bool = False,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.n_nodes = n_nodes if n_nodes is not None else default_size(seed)
        self.profile = profile
        self.core_factory: CoreFactory = core_factory or RaftCore
        self.checker = Checker(self._where)
        self.network = Network(self.rng, self.TICK)
        self.now = 0
        self.faults = True
        """False after ``heal()``: no more crashes in writes, no slow disks."""
        self.rebootstrap = True
        """A founding member restarted with empty storage bootstraps again (see restart)."""
        self._queue: list[tuple[int, int, int, int, int, Any]] = []
        self._seq = 0
        self.nodes: dict[int, SimNode] = {}
        self.cores: dict[int, RaftCore] = {}
        """The running cores by node id (crashed and retired nodes are absent)."""
        self.events = 0
        self.recent: deque[tuple[Any, ...]] = deque(maxlen=80)
        self.trace: list[tuple[Any, ...]] | None = [] if record_trace else None
        self._event: tuple[Any, ...] = ()
        self._next_command = 0
        self._next_read = 0
        self._pending_removals: list[tuple[int, int, int]] = []
        self._lingering: list[int] = []
        """Removed nodes left running until ``heal()``."""
        self.nodes_added = 0
        self.stats = {"snapshots_sent": 0, "snapshots_taken": 0, "crashes": 0,
                      "conf_changes": 0, "reads_served": 0, "leader_after_heal": 0,
                      "commit_after_heal": 0}

        self.config_params = self._draw_config(config or {})
        voters = list(range(1, self.n_nodes + 1))
        for node_id in voters:
            node = self._new_node(node_id)
            node.core = self._make_core(node)
            node.core.bootstrap(voters)
            self.cores[node_id] = node.core
            self.checker.node_started(node_id, node.core)
        for node_id in voters:
            self._pump(self.nodes[node_id])
        self._push(self.TICK, EV_WORLD, 0, 0, None)

    # ================================================================ set-up helpers

    def _draw_config(self, overrides: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        params: dict[str, Any] = {
            "election_tick": 10,
            "heartbeat_tick": rng.choice((1, 2, 3)),
            "pre_vote": rng.random() < 0.85,
            "check_quorum": rng.random() < 0.85,
            "max_inflight_msgs": rng.choice((1, 4, 256)),
            "max_entries_per_msg": rng.choice((1, 3, 64)),
            "max_bytes_per_msg": rng.choice((16, 1 << 20)),
            "max_uncommitted_bytes": rng.choice((0, 0, 0, 200)),
        }
        params.update(overrides)
        return params

    def _new_node(self, node_id: int) -> SimNode:
        rng = self.rng
        lo, hi = self.profile.snapshot_every
        node = SimNode(
            node_id,
            Config(id=node_id, **self.config_params),
            random.Random(rng.getrandbits(64)),
            tick_period=self.TICK + rng.choice((-1, 0, 0, 1)),  # clocks drift a little
            snapshot_every=rng.randint(lo, hi),
        )
        self.nodes[node_id] = node
        self._push(rng.randint(1, self.TICK), EV_TICK, node_id, node.incarnation, None)
        return node

    def _make_core(self, node: SimNode) -> RaftCore:
        snap = node.storage.snapshot()
        node.sm.restore(snap)
        return self.core_factory(node.config, node.storage, node.rng, snap.meta.index)

    # ==================================================================== event loop

    def _push(self, delay: int, kind: int, node_id: int, incarnation: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, kind, node_id, incarnation, payload))

    def run(self) -> Simulator:
        """The whole schedule: the faulty phase, healing, then the liveness check."""
        self.run_until(self.profile.ticks * self.TICK)
        self.heal()
        self.check_liveness()
        return self

    def run_until(self, end: int) -> None:
        """Process every event due at or before time ``end``."""
        queue = self._queue
        dispatch = self._dispatch
        pop = heapq.heappop
        while queue and queue[0][0] <= end:
            dispatch(pop(queue))
        self.now = max(self.now, end)

    def run_until_true(self, condition: Callable[[], Any], max_ticks: int) -> Any:
        """Process events one at a time until ``condition()`` is true (checked after each
        event); return its value, or None if ``max_ticks`` ticks passed first."""
        queue = self._queue
        end = self.now + max_ticks * self.TICK
        while queue and queue[0][0] <= end:
            self._dispatch(heapq.heappop(queue))
            result = condition()
            if result:
                return result
        return None

    def _dispatch(self, event: tuple[int, int, int, int, int, Any]) -> None:
        when, _, kind, node_id, incarnation, payload = event
        self.now = when
        self.events += 1
        if kind == EV_DELIVER:
            self._deliver(payload)
        elif kind == EV_TICK:
            self._tick(node_id, incarnation)
        elif kind == EV_RESTART:
            node = self.nodes[node_id]
            if node.incarnation == incarnation and node.core is None and not node.retired:
                self.restart(node)
        elif kind == EV_WORLD:
            if self.faults:
                self._note(EV_WORLD)
                self._world()
                self._push(self.TICK, EV_WORLD, 0, 0, None)
        else:
            node = self.nodes[node_id]
            if node.incarnation != incarnation or node.core is None:
                return
            if node.paused_until > when:
                self._defer(node, kind, payload)
                return
            if kind == EV_PERSIST:
                self._persist(node)
            elif kind == EV_APPLY:
                self._apply(node)
            elif kind == EV_SNAP_STATUS:
                self._note(kind, node_id, payload[0], int(payload[1]))
                node.core.report_snapshot(payload[0], failed=payload[1])
                self._after(node)
            elif kind == EV_UNREACHABLE:
                self._note(kind, node_id, payload)
                node.core.report_unreachable(payload)
                self._after(node)

    def _defer(self, node: SimNode, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(
            self._queue, (node.paused_until, self._seq, kind, node.id, node.incarnation, payload)
        )

    def _tick(self, node_id: int, incarnation: int) -> None:
        node = self.nodes[node_id]
        if node.incarnation != incarnation or node.core is None:
            return  # this node's clock stopped with its crash; restart starts a new one
        self._push(node.tick_period, EV_TICK, node_id, incarnation, None)
        if node.paused_until > self.now:
            return  # a paused process loses its ticks
        self._note(EV_TICK, node_id)
        node.core.tick()
        self._after(node)

    def _after(self, node: SimNode) -> None:
        """Take the next Ready if allowed (Rule 1), then check the invariants (Rule 5)."""
        if node.ready is None:
            self._pump(node)
        core = node.core
        if core is not None:
            self.checker.check_node(node.id, core)
        if self.checker.fresh:
            self.checker.check_leaders(self.cores)

    # ======================================================================== driver

    def _pump(self, node: SimNode) -> None:
        core = node.core
        if core is None or node.ready is not None or not core.has_ready():
            return
        rd = core.ready()
        node.ready = rd
        for m in rd.messages:
            self._send(m)
        rng = self.rng
        if self.faults and rng.random() < self.profile.crash_in_write / 2:
            self._torn_write(node, rd)
            self._crash(node, "during its disk write")
            return
        # (int(random() * n) rather than randint: this runs for every Ready.)
        if self.faults and rng.random() < self.profile.slow_disk:
            delay = self.TICK + int(rng.random() * 3 * self.TICK)
        else:
            delay = int(rng.random() * 4)
        self._push(delay, EV_PERSIST, node.id, node.incarnation, None)

    def _torn_write(self, node: SimNode, rd: Ready) -> None:
        """A crash during the disk write: a random proper prefix of its records survives,
        in the order the WAL writes them (snapshot, entries, hard state), as when a torn
        tail is cut off on recovery. Nothing of it was acknowledged."""
        records = (rd.snapshot is not None) + len(rd.entries) + (rd.hard_state is not None)
        if records <= 1:
            return
        cut = int(self.rng.random() * records)  # 0 .. records - 1 records survive
        self._note(EV_PERSIST, node.id, -cut)
        storage = node.storage
        if rd.snapshot is not None and cut:
            storage.apply_snapshot(rd.snapshot)
            cut -= 1
        if rd.entries[:cut]:
            storage.append(rd.entries[:cut])

    def _persist(self, node: SimNode) -> None:
        """Rule 2: the disk write of the outstanding Ready."""
        rd = node.ready
        assert rd is not None
        self._note(EV_PERSIST, node.id, len(rd.entries))
        persist(node.storage, rd)
        if rd.hard_state is not None:
            self.checker.persisted(node.id, rd.hard_state.commit)
        if self.faults and self.rng.random() < self.profile.crash_in_write / 2:
            self._crash(node, "after its disk write")
            return
        self._push(int(self.rng.random() * 2), EV_APPLY, node.id, node.incarnation, None)

    def _apply(self, node: SimNode) -> None:
        """Rule 3: send what needed the disk, apply, serve reads, advance."""
        rd = node.ready
        core = node.core
        assert rd is not None and core is not None
        self._note(EV_APPLY, node.id, len(rd.committed_entries))
        for m in rd.persisted_messages:
            self._send(m)
        checker = self.checker
        sm = node.sm
        if rd.snapshot is not None:
            checker.restored_snapshot(node.id, rd.snapshot, sm.applied)
            sm.restore(rd.snapshot)
        for entry in rd.committed_entries:
            expected = sm.applied + 1
            sm.apply(entry)
            checker.applied_entry(node.id, expected, entry, sm.digest)
        for rs in rd.read_states:
            checker.read_served(node.id, rs)
            self.stats["reads_served"] += 1
        core.advance(rd)
        node.ready = None
        self._maybe_snapshot(node)
        self._after(node)

    def _maybe_snapshot(self, node: SimNode) -> None:
        """The application snapshots its applied state now and then, and compacts."""
        storage = node.storage
        sm = node.sm
        snap_index = storage.snapshot().meta.index
        if sm.applied - snap_index < node.snapshot_every:
            return
        core = node.core
        assert core is not None
        conf = core.conf_state()
        self.checker.snapshot_taken(node.id, sm.applied, conf, sm.conf)
        storage.create_snapshot(sm.applied, conf, sm.snapshot_data())
        self.stats["snapshots_taken"] += 1
        keep = self.rng.randint(0, 4)
        compact_to = sm.applied - keep
        self._note(ACT_SNAPSHOT, node.id, sm.applied, compact_to)
        if compact_to > storage.first_index() - 1:
            storage.compact(compact_to)

    # ======================================================================= network

    def _send(self, m: Message) -> None:
        src, dst = m.from_, m.to
        delays = self.network.delays(src, dst)
        if not delays:
            self._note(ACT_DROP, src, dst, m.type)
            self._report_failure(m)
            return
        for delay in delays:
            self._push(delay, EV_DELIVER, dst, 0, m)

    def _report_failure(self, m: Message) -> None:
        """What the transport tells a sender about a message that did not arrive."""
        sender = self.nodes.get(m.from_)
        if sender is None or sender.core is None:
            return
        if m.type == MT.SNAP:
            self._push(1, EV_SNAP_STATUS, sender.id, sender.incarnation, (m.to, True))
        elif self.rng.random() < 0.1:
            self._push(1, EV_UNREACHABLE, sender.id, sender.incarnation, m.to)

    def _deliver(self, m: Message) -> None:
        node = self.nodes.get(m.to)
        core = node.core if node is not None else None
        if node is not None and core is not None and node.paused_until > self.now:
            self._defer(node, EV_DELIVER, m)
            return
        self._note(EV_DELIVER, m)  # (the message itself: immutable, formatted only if needed)
        if core is None or self.network.is_blocked(m.from_, m.to):
            self._report_failure(m)
            return
        if m.type == MT.SNAP:
            self.stats["snapshots_sent"] += 1
            sender = self.nodes[m.from_]
            if sender.core is not None:
                self._push(1, EV_SNAP_STATUS, sender.id, sender.incarnation, (m.to, False))
        core.step(m)
        self._after(node)  # type: ignore[arg-type]

    # ================================================================== world events

    def _world(self) -> None:
        p = self.profile
        rng = self.rng
        if rng.random() < p.propose:
            self.propose(rng.randint(1, 4))
        if rng.random() < p.read:
            self._read()
        if rng.random() < p.crash:
            live = self._live()
            if live:
                self._crash(rng.choice(live), "at random")
        if rng.random() < p.crash_leader:
            leader = self.leader()
            if leader is not None:
                self._crash(leader, "leader crash")
        if rng.random() < p.bounce:
            live = self._live()
            if live:
                node = rng.choice(live)
                self._crash(node, "bounced")
                # A supervisor restarts the process shortly (within a few ticks).
                self._push(rng.randint(1, 3 * self.TICK), EV_RESTART, node.id, node.incarnation, None)
        if rng.random() < p.restart:
            down = [n for n in self.nodes.values() if n.core is None and not n.retired]
            if down:
                self.restart(rng.choice(down))
        if rng.random() < p.partition:
            self._partition()
        if rng.random() < p.heal:
            self._note(ACT_HEAL)
            self.network.heal()
        if rng.random() < p.lossy:
            net = self.network
            net.drop = rng.choice((0.0, 0.0, 0.02, 0.1, 0.3))
            net.duplicate = rng.choice((0.0, 0.02, 0.1))
            net.long_delay = rng.choice((0.0, 0.02, 0.1))
            self._note(ACT_LOSS, int(net.drop * 100), int(net.duplicate * 100), int(net.long_delay * 100))
        if rng.random() < p.pause:
            live = self._live()
            if live:
                node = rng.choice(live)
                node.paused_until = self.now + rng.randint(1, 30) * self.TICK
                self._note(ACT_PAUSE, node.id, node.paused_until)
        if rng.random() < p.transfer:
            self._transfer()
        if rng.random() < p.membership:
            self._membership_change()
        if self._pending_removals:
            self._retire_removed()

    def _live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.core is not None]

    def leader(self) -> SimNode | None:
        """The running leader with the highest term, if any (an old one may linger)."""
        best: SimNode | None = None
        for node in self.nodes.values():
            core = node.core
            if core is not None and core.role == Role.LEADER:
                if best is None or core.term > best.core.term:  # type: ignore[union-attr]
                    best = node
        return best

    def propose(self, count: int) -> list[bytes]:
        """A client sends ``count`` new commands to a node it believes leads."""
        leaders = [n for n in self.nodes.values() if n.core is not None and n.core.role == Role.LEADER]
        live = leaders or self._live()
        if not live:
            return []
        node = self.rng.choice(live)
        datas = self._new_commands(count)
        self._propose_datas(node, datas)
        return datas

    def _read(self) -> None:
        live = self._live()
        if not live:
            return
        node = self.rng.choice(live)
        self._next_read += 1
        context = b"read-%d" % self._next_read
        self.checker.read_requested(context)
        self._note(ACT_READ, node.id, self._next_read)
        try:
            node.core.read_index(context)  # type: ignore[union-attr]
        except ProposalDroppedError:
            pass
        self._after(node)

    def crash(self, node_id: int) -> None:
        """Crash ``node_id`` now (scripted scenarios)."""
        self._crash(self.nodes[node_id], "scripted")

    def campaign(self, node_id: int) -> None:
        """Make ``node_id`` start an election now (scripted scenarios)."""
        node = self.nodes[node_id]
        assert node.core is not None
        self._note(ACT_CAMPAIGN, node_id)
        node.core.campaign()
        self._after(node)

    def _crash(self, node: SimNode, why: str) -> None:
        self._note(ACT_CRASH, node.id)
        self.stats["crashes"] += 1
        node.core = None
        node.ready = None
        node.incarnation += 1
        node.sm = StateMachine()
        node.paused_until = 0
        self.cores.pop(node.id, None)
        self.checker.node_stopped(node.id)

    def restart(self, node: SimNode) -> None:
        """Rule 4: a new core over the node's storage; the state machine from its snapshot.

        A founding member that crashed before its bootstrap entries reached the disk comes
        back empty and bootstraps again, as ``coord_server.node`` does on empty storage
        (with ``rebootstrap`` off it rejoins empty instead; see test_regressions).
        """
        self._note(ACT_RESTART, node.id)
        core = self._make_core(node)
        node.core = core
        if (self.rebootstrap and node.id <= self.n_nodes and core.term == 0
                and node.storage.last_index() == 0):
            core.bootstrap(list(range(1, self.n_nodes + 1)))
        self.cores[node.id] = core
        snap = node.storage.snapshot()
        if not snap.is_empty:
            self.checker.check_snapshot_digest(node.id, snap.meta.index, node.sm.digest)
        self._push(self.rng.randint(1, self.TICK), EV_TICK, node.id, node.incarnation, None)
        self.checker.node_started(node.id, core)
        self._after(node)

    def _partition(self) -> None:
        rng = self.rng
        ids = [n.id for n in self.nodes.values() if not n.retired]
        kind = rng.randrange(3)
        if kind == 0 and len(ids) > 1:
            rng.shuffle(ids)
            cut = rng.randint(1, len(ids) - 1)
            self.network.partition(ids[:cut], ids[cut:])
            self._note(ACT_PARTITION, 0, *sorted(ids[:cut]))
        elif kind == 1 and len(ids) > 1:
            for _ in range(rng.randint(1, 3)):
                src, dst = rng.sample(ids, 2)
                self.network.cut_one_way(src, dst)
                self._note(ACT_PARTITION, 1, src, dst)
        else:
            leader = self.leader()
            if leader is not None:
                self.network.partition([leader.id], [i for i in ids if i != leader.id])
                self._note(ACT_PARTITION, 2, leader.id)

    def _transfer(self) -> None:
        leader = self.leader()
        if leader is None:
            return
        core = leader.core
        assert core is not None
        others = sorted(core.voters - {leader.id})
        if not others:
            return
        target = self.rng.choice(others)
        self._note(ACT_TRANSFER, leader.id, target)
        core.transfer_leadership(target)
        self._after(leader)

    def _membership_change(self) -> None:
        """One single-server change through the current leader (thesis §4.1)."""
        leader = self.leader()
        if leader is None:
            return
        core = leader.core
        assert core is not None
        rng = self.rng
        voters, learners = core.voters, core.learners
        joining = [n.id for n in self.nodes.values()
                   if n.core is not None and n.id not in voters and n.id not in learners
                   and not n.removing and n.id > self.n_nodes]
        options = []
        if self.nodes_added < self.profile.max_nodes_added:
            options.append("add")
        if joining:
            options.append("retry-add")
        caught_up = [i for i in sorted(learners)
                     if i in core.progress and core.progress[i].match >= core.log.committed]
        if caught_up:
            options.append("promote")
        if len(voters) >= 3:
            options += ["remove", "demote"]
        if learners:
            options.append("remove-learner")
        if not options:
            return
        op = rng.choice(options)
        if op == "add":
            self.add_node()
        elif op == "retry-add":
            self.change_membership(ConfChangeType.ADD_LEARNER, rng.choice(joining))
        elif op == "promote":
            self.change_membership(ConfChangeType.ADD_NODE, rng.choice(caught_up))
        elif op == "remove":
            self.change_membership(ConfChangeType.REMOVE_NODE, rng.choice(sorted(voters)))
        elif op == "demote":
            self.change_membership(ConfChangeType.ADD_LEARNER, rng.choice(sorted(voters)))
        else:
            self.change_membership(ConfChangeType.REMOVE_NODE, rng.choice(sorted(learners)))

    def add_node(self) -> SimNode:
        """Start a new node with empty storage and no bootstrap (it waits to be fed by a
        leader) and propose it as a learner."""
        self.nodes_added += 1
        new_id = max(self.nodes) + 1
        node = self._new_node(new_id)
        node.core = self._make_core(node)
        self.cores[new_id] = node.core
        self.checker.node_started(new_id, node.core)
        self.change_membership(ConfChangeType.ADD_LEARNER, new_id)
        return node

    def change_membership(self, kind: ConfChangeType, node_id: int) -> int | None:
        """Propose one change at the current leader; its index, or None if refused."""
        leader = self.leader()
        if leader is None:
            return None
        core = leader.core
        assert core is not None
        self._note(ACT_CONF, leader.id, int(kind), node_id)
        try:
            index = core.propose_conf_change(ConfChange(kind, node_id))
        except (ProposalDroppedError, MembershipError):
            self._after(leader)
            return None
        self.stats["conf_changes"] += 1
        if kind == ConfChangeType.REMOVE_NODE:
            self.nodes[node_id].removing = True
            self._pending_removals.append((node_id, index, core.term))
        self._after(leader)
        return index

    def _retire_removed(self) -> None:
        """Once a removal is committed, shut the removed node down for good; or, half of
        the time, leave it running (it may not know it was removed, and must not disrupt
        the others: thesis §4.2.3) until ``heal()``."""
        committed = self.checker.committed
        still = []
        for node_id, index, term in self._pending_removals:
            known = committed.get(index)
            if known is None:
                still.append((node_id, index, term))
            elif known == term:
                if self.rng.random() < 0.5:
                    self._retire(self.nodes[node_id])
                else:
                    self._lingering.append(node_id)
        self._pending_removals = still

    def _retire(self, node: SimNode) -> None:
        if not node.retired:
            self._note(ACT_RETIRE, node.id)
            if node.core is not None:
                self._crash(node, "retired")
            node.retired = True

    # ==================================================================== liveness

    def heal(self) -> None:
        """End the faulty phase: the network heals, pauses end, crashed nodes restart."""
        self.faults = False
        self._note(ACT_HEAL)
        for node_id in self._lingering:
            self._retire(self.nodes[node_id])
        self.network.heal()
        self.network.calm()
        for node in self.nodes.values():
            node.paused_until = min(node.paused_until, self.now)
        for node in list(self.nodes.values()):
            if node.core is None and not node.retired:
                self.restart(node)

    def check_liveness(self) -> None:
        """A leader within LEADER_WITHIN ticks; then new commands applied on every live
        member within COMMIT_WITHIN more ticks."""
        start = self.now
        leader = self._wait_for(self.LEADER_WITHIN, self._stable_leader)
        if leader is None:
            raise LivenessViolation(
                f"no leader {self.LEADER_WITHIN} ticks after the faults healed "
                f"[{self._where()}]\n{self.describe_nodes()}"
            )
        self.stats["leader_after_heal"] = (self.now - start) // self.TICK
        start = self.now
        leader_core = leader.core
        assert leader_core is not None
        backlog = leader_core.log.last_index() - min(n.sm.applied for n in self.nodes.values()
                                                      if n.core is not None)
        within = self.COMMIT_WITHIN + backlog
        datas = self._new_commands(3, b"final")
        proposed_to: tuple[int, int] | None = None
        """(leader, term) that accepted the commands; None until one did."""

        def done() -> bool:
            nonlocal proposed_to
            applied = self.checker.applied_data
            current = self._stable_leader()
            missing = [d for d in datas if d not in applied]
            if missing:
                if current is not None:
                    core = current.core
                    assert core is not None
                    if (current.id, core.term) != proposed_to:
                        # Not proposed yet, refused, or perhaps lost with an old leader:
                        # the client sends them (again) to the leader it now sees.
                        if self._propose_datas(current, missing):
                            proposed_to = (current.id, core.term)
                return False
            if current is None:
                return False
            core = current.core
            assert core is not None
            last = max(applied[d] for d in datas)
            members = core.voters | core.learners
            return all(self.nodes[m].core is not None and self.nodes[m].sm.applied >= last
                       for m in members if m in self.nodes)

        if self._wait_for(within, done) is None:
            raise LivenessViolation(
                f"commands {datas} not applied on every live member {within} ticks after "
                f"a leader was elected [{self._where()}]\n{self.describe_nodes()}"
            )
        self.stats["commit_after_heal"] = (self.now - start) // self.TICK

    def _wait_for(self, ticks: int, condition: Callable[[], Any]) -> Any:
        deadline = self.now + ticks * self.TICK
        while self.now < deadline:
            result = condition()
            if result:
                return result
            self.run_until(self.now + self.TICK)
        return condition() or None

    def _stable_leader(self) -> SimNode | None:
        """A running leader whose term no running member exceeds."""
        leader = self.leader()
        if leader is None:
            return None
        term = leader.core.term  # type: ignore[union-attr]
        if any(c.term > term for c in self.cores.values()):
            return None
        return leader

    def _new_commands(self, count: int, prefix: bytes = b"cmd") -> list[bytes]:
        datas = []
        for _ in range(count):
            self._next_command += 1
            datas.append(b"%s-%d" % (prefix, self._next_command))
        self.checker.proposed.update(datas)
        return datas

    def propose_at(self, node_id: int, count: int = 1) -> bool:
        """A client sends ``count`` new commands to ``node_id``; whether it accepted them."""
        return self._propose_datas(self.nodes[node_id], self._new_commands(count))

    def _propose_datas(self, node: SimNode, datas: list[bytes]) -> bool:
        """Propose ``datas`` at ``node``; whether it accepted them."""
        self._note(ACT_PROPOSE, node.id, len(datas))
        try:
            node.core.propose_batch(datas)  # type: ignore[union-attr]
            accepted = True
        except ProposalDroppedError:
            accepted = False
        self._after(node)
        return accepted

    # ====================================================================== tracing

    def _note(self, kind: int, *values: Any) -> None:
        event = (self.now, kind, *values)
        self._event = event
        self.recent.append(event)
        if self.trace is not None:
            self.trace.append(event)

    def _where(self) -> str:
        return f"seed {self.seed}, t={self.now} (tick {self.now // self.TICK}), event {format_event(self._event)}"

    def describe_recent(self, count: int = 40) -> str:
        lines = [format_event(e) for e in list(self.recent)[-count:]]
        return "\n".join(lines)

    def describe_nodes(self) -> str:
        lines = []
        for node in self.nodes.values():
            core = node.core
            if core is None:
                lines.append(f"  node {node.id}: {'retired' if node.retired else 'down'}")
                continue
            st = core.status()
            lines.append(
                f"  node {node.id}: {st.role.name} term {st.term} vote {st.vote} lead {st.leader} "
                f"commit {st.commit} applied {st.applied} last {st.last_index} "
                f"first {st.first_index} voters {sorted(st.conf_state.voters)} "
                f"learners {sorted(st.conf_state.learners)} sm.applied {node.sm.applied}"
                f"{' paused' if node.paused_until > self.now else ''}"
            )
        return "\n".join(lines)

    def describe(self) -> str:
        """Configuration of this run, for failure reports."""
        return (f"seed {self.seed}: {self.n_nodes} nodes, profile {self.profile.name}, "
                f"config {self.config_params}")


def default_size(seed: int) -> int:
    """Even seeds run 3-node clusters, odd seeds 5-node clusters."""
    return 3 if seed % 2 == 0 else 5


def format_event(event: tuple[Any, ...]) -> str:
    if not event:
        return "(start)"
    when, kind, *values = event
    name = _NAMES.get(kind, str(kind))
    if kind == EV_DELIVER:
        (m,) = values
        return (f"t={when} deliver {MT(m.type).name} {m.from_}->{m.to} term={m.term} "
                f"index={m.index} log_term={m.log_term} commit={m.commit} "
                f"entries={len(m.entries)}{' reject' if m.reject else ''}")
    if kind == ACT_DROP:
        src, dst, mtype = values
        return f"t={when} drop {MT(mtype).name} {src}->{dst}"
    return f"t={when} {name} {' '.join(str(v) for v in values)}"


__all__ = ["InvariantViolation", "LivenessViolation", "Simulator", "SimNode", "default_size"]
