"""Node: drives one RaftCore on the asyncio loop, with durable storage, the peer transport
and the replicated state machine.

One coroutine (``_run``) owns the Ready cycle; everything else (gRPC handlers, the ticker,
the transport's receivers) only steps the core and wakes that coroutine. The cycle:

1. hand every proposal queued since the last cycle to the core as one batch (group
   commit: proposals that arrive while the disk is busy share the next fsync; a lazy
   one waits briefly for company, ``submit``);
2. start one ReadIndex round for every linearizable read queued since the last cycle;
3. take a Ready; send ``messages`` (the leader's appends go out while its own fsync runs,
   Raft thesis §10.2.1; its COMMITs wait briefly for an append to carry them,
   commit_notices.py); persist snapshot + entries + hard state with one fsync, off the
   event loop; only then send ``persisted_messages``;
4. apply committed entries in order, resolving proposals by (index, term), and release
   reads whose read point is applied; ``advance``.

Rule 1: nothing a peer or client is told depends on data that is not yet fsynced.
Rule 2: the state machine only changes here, in log order.
Rule 3: a proposal's future resolves when the entry at its index is applied: with the
        result if that entry is ours (same term), with Unavailable if another leader's
        entry replaced it (then ours was never committed and a retry is safe).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from coord.raft.v1 import command_pb2
from coord_server.clock import LOOP_CLOCK, Clock
from coord_server.commit_notices import CommitNotices
from coord_server.errors import CoordError, FailedPrecondition, NotFound, Stopping, Unavailable
from coord_server.forwards import Forwarder
from coord_server.leaderless import Leaderless
from coord_server.lease_timer import LeaseTimers
from coord_server.proposals import LAZY_PROPOSAL_DELAY, ProposalQueue
from coord_server.read_waits import ReadWaits
from coord_server.snapshotter import SnapshotAbandoned, write_snapshot
from coord_server.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    EntryType,
    MembershipError,
    Message,
    MessageType,
    ProposalDroppedError,
    RaftCore,
    Ready,
    Role,
    Storage,
)
from coord_server.raft.errors import SnapshotOutOfDateError
from coord_server.state import StateMachine
from coord_server.storage.errors import StorageWriteError

if TYPE_CHECKING:
    from coord_server.metrics import NodeMetrics

__all__ = ["LAZY_PROPOSAL_DELAY", "DurableLog", "Node", "NodeConfig", "Transport"]
log = logging.getLogger("coord.node")


CATCH_UP_TICKS = 2
"""A ticker that wakes more than this many ticks late does not tick for the time it
missed: it ticks once and goes on from now. The member was stalled (its process got
no CPU, or its loop was busy) and could not have heard a heartbeat meanwhile: counting
that time towards an election timeout would make a follower campaign because of its
own stall (README "Timing"). The Raft clock so runs slow on a starved member, which
delays only that member's own campaign."""


LOST_LEADER_SECONDS = 0.3
"""How soon (randomised up to twice) a follower campaigns once its connection from the
leader broke: a leader whose process died is replaced in well under a second, while a
leader that is alive but stalled keeps its connections and gets the whole election
timeout (README "Timing"). Long enough for a leader that only replaced its stream to
send its next heartbeat on the new one."""


class DurableLog(Storage, Protocol):
    """The core's read-only Storage plus the writes the node makes (DiskStorage)."""

    async def save_async(
        self, hard_state: Any, entries: list[Any], snapshot: Any = None, *, sync: bool = True
    ) -> None: ...

    async def write_snapshot_async(self, index: int, conf_state: Any, data: bytes) -> Any: ...

    async def record_snapshot_async(self, snapshot: Any) -> Any: ...

    async def compact_async(self, index: int) -> None: ...


class Transport(Protocol):
    def send(self, messages: list[Message]) -> None: ...

    async def forward(self, to: int, kind: int, payload: bytes, timeout: float | None) -> bytes: ...

    def set_address(self, node_id: int, address: str) -> None: ...

    def remove_peer(self, node_id: int) -> None: ...


@dataclass(frozen=True)
class NodeConfig:
    """Runtime settings of one node. Times are in seconds."""

    node_id: int
    cluster_id: int
    name: str = "default"
    client_address: str = ""
    tick_interval: float = 0.02
    """One core tick. Heartbeats and election timeouts are whole numbers of ticks."""
    heartbeat_ticks: int = 5
    """Ticks between heartbeats: 5 x 20 ms = 100 ms (DESIGN.md default)."""
    election_ticks: int = 15
    """Base election timeout in ticks, randomised up to twice. The server passes
    settings.election_ms (1,000 ms by default, settings.py says why); this default,
    15 x 20 ms = 300 ms, serves in-process tests."""
    lost_leader_ticks: int = 15
    """Ticks (randomised up to twice) after which a follower campaigns once its
    connection from the leader broke (RaftCore.leader_lost): LOST_LEADER_SECONDS."""
    snapshot_entries: int = 100_000
    """Take a snapshot after this many applied entries since the last one."""
    snapshot_catchup_entries: int = 5_000
    """Entries kept in the log behind a snapshot, so a slightly slow follower catches up
    from the log rather than with a whole snapshot."""
    max_batch: int = 1024
    """Most proposals handed to the core in one batch."""
    peer_overrides: dict[str, str] = field(default_factory=dict)
    """Member name -> the address to send its peer traffic to instead of the advertised
    one (settings.peer_overrides: fault proxies in tests, NAT)."""
    client_tls: bool = False
    """Client ports serve TLS: a member does not relay a client's call to another member's
    client port (it holds no client credentials) but names it in ``coord-leader``."""

    @property
    def election_timeout(self) -> float:
        return self.tick_interval * self.election_ticks


class Node:
    """One coord member. Create, ``await start()``, serve, ``await stop()``."""

    def __init__(
        self,
        config: NodeConfig,
        storage: DurableLog,
        transport: Transport,
        bootstrap_members: dict[int, command_pb2.MemberInfo] | None = None,
        known_members: dict[int, command_pb2.MemberInfo] | None = None,
        rng: random.Random | None = None,
        clock: Clock = LOOP_CLOCK,
    ) -> None:
        """``bootstrap_members``: found a new cluster of these members (only used when the
        storage is empty). ``known_members``: addresses to start with (a joining member's
        view of the cluster, before its log tells it). ``clock``: time and timers (the
        simulator passes its own)."""
        self.config = config
        self.id = config.node_id
        self.storage = storage
        self.transport = transport
        self.clock = clock
        self._commit_notices = CommitNotices(lambda messages: self.transport.send(messages), clock=clock)
        snapshot = storage.snapshot()
        if snapshot.is_empty:
            self.state = StateMachine()
        else:
            self.state = StateMachine.restore(snapshot.data)
        self._snapshot_index = snapshot.meta.index
        self._applied_index = snapshot.meta.index
        """The last index applied to ``state`` (ahead of the core's until ``advance``)."""
        raft_config = Config(
            id=config.node_id,
            election_tick=config.election_ticks,
            heartbeat_tick=config.heartbeat_ticks,
            pre_vote=True,
            check_quorum=True,
        )
        self.core = RaftCore(raft_config, storage, rng or random.Random(), applied=snapshot.meta.index)
        if bootstrap_members and storage.last_index() == 0 and self.core.term == 0:
            contexts = {nid: info.SerializeToString() for nid, info in bootstrap_members.items()}
            self.core.bootstrap(sorted(bootstrap_members), contexts)
        self._addresses: dict[int, str] = {}
        for nid, info in {**(known_members or {}), **(bootstrap_members or {})}.items():
            self._learn_member(nid, info)
        for member in self.state.members():
            self._learn_member(member.id, member)
        self._wake = asyncio.Event()
        self.proposals = ProposalQueue(clock, self._wake.set, config.max_batch)
        self._forwarder = Forwarder(clock, lambda: self.core.lead, transport.forward)
        self._leaderless = Leaderless(clock, 2 * config.election_timeout)
        from coord_server.leader_log import LeaderLog

        self._leader_log = LeaderLog(self)
        self._reads = ReadWaits(config.node_id)
        self._term_first_index = 0
        self._term_first_index_term = 0
        """The term ``_term_first_index`` belongs to (set with it in ``_on_soft_state``)."""
        self._expiry: asyncio.Future[Any] | None = None
        self._expiry_since = 0.0
        """This leadership's first entry (its empty entry); lease renewals wait until it is applied."""
        self._state_listeners: list[Callable[[StateMachine], None]] = []
        self.lease_timers = LeaseTimers(clock.time)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._solo_campaign = False
        self._fatal: BaseException | None = None
        self._snapshot_task: asyncio.Task[Any] | None = None
        self._ready_busy = False
        """The Ready cycle is waiting (for the disk): the ticker sends heartbeats itself."""
        # Members snapshot at different indexes (an offset of up to 1/8 of the interval,
        # from the member id): writing a snapshot loads a member's disk and CPU,
        # better not all at once.
        self._snapshot_offset = config.node_id % max(1, config.snapshot_entries // 8)
        self.metrics: NodeMetrics | None = None
        """Set by the server when metrics are on; every hook below is skipped when None."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        # A one-member cluster need not wait an election timeout: campaign as soon as its
        # membership is applied (the first Ready applies the bootstrap entries).
        self._solo_campaign = self.core.voters == {self.id} or self.core.log.committed > self.core.log.applied
        # A member that boots has heard no leader: its first timeout runs from one tick to
        # one base timeout (etcd's initial election tick advance) rather than 1x-2x of it,
        # so a cluster that starts together elects within about half a second, not 1-2 s.
        # A restarted member of a live cluster hears the leader's heartbeat (every
        # heartbeat interval) first, and PreVote keeps one that did not from disrupting it.
        self.core.election_elapsed = max(self.core.election_elapsed, self.config.election_ticks - 1)
        self._wake.set()
        self._tasks = [
            asyncio.create_task(self._run(), name=f"raft-ready-{self.id}"),
            asyncio.create_task(self._ticker(), name=f"raft-tick-{self.id}"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        self._commit_notices.drop()
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        if self._snapshot_task is not None:
            self._tasks.append(self._snapshot_task)
            self._snapshot_task = None
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._fail_all(Stopping("the node is stopping"))

    @property
    def stopping(self) -> bool:
        """``stop`` was called, or the Ready loop failed: no new request is taken."""
        return self._stopping

    @property
    def failed(self) -> BaseException | None:
        """The error that stopped the Ready loop (a storage failure), if any."""
        return self._fatal

    def fail(self, err: BaseException) -> None:
        """Stop serving on a storage failure found outside the Ready loop (a snapshot
        file found corrupt as it is sent to a follower): as the loop does on its own."""
        if self._fatal is None:
            self._fatal = err
            log.critical("node %#x stops: %s", self.id, err)
        self._stopping = True
        self._wake.set()
        self._fail_all(Unavailable(f"the node failed: {err}"))

    # ------------------------------------------------------------------ status

    @property
    def is_leader(self) -> bool:
        return self.core.role == Role.LEADER

    @property
    def applied_index(self) -> int:
        """The last log index applied to the state machine."""
        return self._applied_index

    @property
    def pending_proposals(self) -> int:
        """Proposals of this node waiting for their entry to be applied (metrics)."""
        return self.proposals.in_flight

    @property
    def leader_id(self) -> int:
        return self.core.lead

    def leader_address(self) -> str:
        return self._addresses.get(self.core.lead, "") if self.core.lead else ""

    def address_of(self, node_id: int) -> str:
        return self._addresses.get(node_id, "")

    def add_state_listener(self, fn: Callable[[StateMachine], None]) -> None:
        """Call ``fn(new_state)`` whenever the state machine is replaced by a snapshot."""
        self._state_listeners.append(fn)

    # ------------------------------------------------------------------ stepping

    def step(self, m: Message) -> None:
        """A message from a peer (the transport calls this)."""
        if self._stopping:
            return
        if m.to != self.id:
            return
        if m.type == MessageType.HEARTBEAT_RESP and self.metrics is not None:
            self.metrics.on_heartbeat_acked(m.from_)
        try:
            self.core.step(m)
        except ProposalDroppedError:
            pass  # e.g. a forwarded ReadIndex reaching a node that just lost its leader
        self._wake.set()

    def report_unreachable(self, node_id: int) -> None:
        self.core.report_unreachable(node_id)

    def peer_link_lost(self, node_id: int) -> None:
        """The stream on which ``node_id`` sent us its messages broke (the transport calls
        this). From the leader, it most likely died: campaign soon (RaftCore.leader_lost)."""
        if not self._stopping and node_id == self.core.lead:
            self.core.leader_lost(node_id, self.config.lost_leader_ticks)
            self._wake.set()

    def report_snapshot(self, node_id: int, failed: bool) -> None:
        self.core.report_snapshot(node_id, failed)
        self._wake.set()

    async def _ticker(self) -> None:
        interval = self.config.tick_interval
        # Only a stall of a heartbeat interval or more stops the lease clocks: shorter
        # delays are ordinary load, and counting them would let leases age slower than
        # real time (the total is capped too: lease_timer.py Rule 7).
        stall = interval * self.config.heartbeat_ticks
        clock = self.clock
        next_at = clock.time()
        while not self._stopping:
            next_at += interval
            delay = next_at - clock.time()
            if delay < -interval * CATCH_UP_TICKS:
                next_at = clock.time()  # this member was stalled: that time is not counted
                if -delay >= stall:  # renewals may wait unread meanwhile (lease_timer.py Rule 7)
                    self.lease_timers.postpone(-delay)
            await asyncio.sleep(max(0.0, delay))
            self.core.tick()
            if self._ready_busy and self.core.msgs:
                self._send_now()
            if self._leaderless:
                self._leaderless.expire()
            if self.is_leader and self.lease_timers.active and self._expiry_done():
                expired = self.lease_timers.expired()
                if expired:
                    self._expiry = self._propose_internal(
                        command_pb2.Command(lease_expire=command_pb2.LeaseExpire(ids=expired))
                    )
                    self._expiry_since = clock.time()
            self._wake.set()

    # ------------------------------------------------------------------ proposals

    async def propose(self, command: command_pb2.Command, timeout: float | None = None) -> command_pb2.CommandResult:
        """Replicate and apply ``command`` on the leader; forwarded when this node follows.

        Raises Unavailable (nothing applied; retry); when the caller's deadline passes
        first, the outcome is unknown to it (the gRPC layer answers DEADLINE_EXCEEDED).
        Domain errors come back inside the CommandResult.
        """
        result = await self.submit(command.SerializeToString(), timeout)
        assert isinstance(result, command_pb2.CommandResult)
        return result

    def submit(self, data: bytes, timeout: float | None = None, *, lazy: bool = False) -> asyncio.Future[Any]:
        """``propose`` without a coroutine: a future of the CommandResult for serialized
        command ``data`` (the Pipeline service submits many per batch this way).

        ``lazy``: nobody waits for this entry to commit soon (an Acquire that will queue
        behind a held lock); on the leader it waits up to LAZY_PROPOSAL_DELAY to share
        the next proposal's entry batch, so its own round of appends, acknowledgements
        and fsyncs is not on the path of a lock handoff."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._dispatch_submit(data, fut, timeout, lazy)
        return fut

    def _dispatch_submit(self, data: bytes, fut: asyncio.Future[Any], timeout: float | None, lazy: bool = False) -> None:
        if fut.done():
            return
        if self._stopping:
            fut.set_exception(Stopping("the node is stopping"))
        elif self.is_leader:
            if lazy:
                self.proposals.add_lazy(data, fut)
                return
            self.proposals.add(data, fut)
            self._wake.set()
        elif self.core.lead == 0:
            self._leaderless.park(fut, lambda: self._dispatch_submit(data, fut, timeout))
        else:
            self._forwarder.add(data, fut, timeout)

    async def propose_local_many(self, datas: list[bytes]) -> list[command_pb2.CommandResult]:
        """Propose several serialized commands together (a follower's forwarded batch);
        each outcome is a CommandResult, a failure becoming its ``error``."""
        loop = asyncio.get_running_loop()
        if self._stopping or not self.is_leader:
            raise Unavailable("this node is not the leader", self.leader_address())
        futures = [loop.create_future() for _ in datas]
        for data, fut in zip(datas, futures):
            self.proposals.add(data, fut)
        self._wake.set()
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        results = []
        for outcome in outcomes:
            if isinstance(outcome, command_pb2.CommandResult):
                results.append(outcome)
            else:
                error = outcome if isinstance(outcome, CoordError) else Unavailable(str(outcome))
                results.append(command_pb2.CommandResult(error=error.to_proto()))
        return results

    async def propose_local(self, data: bytes) -> command_pb2.CommandResult:
        """Propose serialized command ``data`` on this node, which must lead."""
        if self._stopping:
            raise Stopping("the node is stopping")
        if not self.is_leader:
            raise Unavailable("this node is not the leader", self.leader_address())
        result = await self.submit(data)
        assert isinstance(result, command_pb2.CommandResult)
        return result

    def _propose_internal(self, command: command_pb2.Command) -> asyncio.Future[Any]:
        """A leader-originated command whose outcome nobody awaits (lease expiry)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_consume_exception)
        self.proposals.add(command.SerializeToString(), fut)
        return fut

    def _expiry_done(self) -> bool:
        """One LeaseExpire entry in flight at a time: an expiry storm (100,000 leases at
        once) is revoked as fast as the cluster applies it, never faster, so the entries
        do not pile up ahead of clients' writes. One that has not applied within an
        election timeout no longer holds the next back (a lost proposal; lease_timer.py
        reports its leases again)."""
        fut = self._expiry
        return (
            fut is None or fut.done() or self.clock.time() - self._expiry_since > self.config.election_timeout
        )

    def _flush_proposals(self) -> None:
        for batch in self.proposals.batches(self.is_leader):
            try:
                indexes = self.core.propose_batch([data for data, _ in batch])
            except ProposalDroppedError as err:
                failure = Unavailable(str(err), self._addresses.get(err.leader, ""))
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(failure)
                if self.metrics is not None:
                    self.metrics.proposals_failed.inc(len(batch))
                continue
            if self.metrics is not None and indexes:
                self.metrics.on_proposed(indexes[-1])
            self.proposals.proposed(indexes, self.core.term, batch)

    # ------------------------------------------------------------------ membership

    async def propose_conf_change(self, change: ConfChange) -> int:
        """Propose one membership change on the leader; returns once it is applied."""
        if not self.is_leader:
            raise Unavailable("membership changes go through the leader", self.leader_address())
        try:
            index = self.core.propose_conf_change(change)
        except MembershipError as err:
            raise FailedPrecondition(str(err)) from None
        except ProposalDroppedError as err:
            raise FailedPrecondition(str(err)) from None
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.proposals.wait_for(index, self.core.term, fut)
        self._wake.set()
        await fut
        return index

    def transfer_leadership(self, target: int) -> None:
        if target not in self.core.voters:
            raise NotFound(f"member {target:#x} is not a voting member")
        self.core.transfer_leadership(target)
        self._wake.set()

    def learner_caught_up(self, node_id: int, slack: int = 100) -> bool:
        """Whether a learner's log is within ``slack`` entries of the leader's. A learner
        that never acknowledged anything (match 0) has not caught up, however short the
        log: promoting it would add a voter that cannot vote."""
        pr = self.core.progress.get(node_id)
        return pr is not None and pr.match > 0 and pr.match + slack >= self.core.log.last_index()

    # ------------------------------------------------------------------ reads

    async def read_barrier(self) -> None:
        """Return once this node's state reflects every write committed before the call
        (ReadIndex, Raft thesis §6.4). Concurrent callers share one quorum round."""
        await self.read_barrier_future()

    def read_barrier_future(self) -> asyncio.Future[None]:
        """``read_barrier`` without a coroutine."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._dispatch_read(fut)
        return fut

    def leadership_confirmed(self) -> asyncio.Future[None]:
        """A future resolved once a quorum round begun after the call has confirmed the
        leadership this member knows and the first entry of its term is applied, without
        waiting for the read point (read_waits.py Rule 5): lease renewals, which read the
        leader's clocks only."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._stopping or not self.is_leader:
            fut.set_exception(Unavailable("not the leader", self.leader_address()))
        elif not self.lease_timers.active or self._term_first_index_term != self.core.term:
            # The core just became leader (a message from the transport) and the Ready
            # loop has not yet set this term's floor nor started the lease clocks.
            fut.set_exception(Unavailable("leadership is starting; retry", self.leader_address()))
        else:
            self._reads.add(fut, apply_floor=self._term_first_index)
            self._wake.set()
        return fut

    def _dispatch_read(self, fut: asyncio.Future[None]) -> None:
        if fut.done():
            return
        if self._stopping:
            fut.set_exception(Stopping("the node is stopping"))
        elif self.core.lead == 0:
            self._leaderless.park(fut, lambda: self._dispatch_read(fut))
        else:
            self._reads.add(fut)
            self._wake.set()

    async def wait_applied(self, index: int) -> None:
        if self._applied_index >= index:
            return
        await self.applied_future(index)

    def applied_future(self, index: int) -> asyncio.Future[None]:
        """A future resolved once this member has applied ``index`` (already resolved
        when it has)."""
        return self._reads.applied_future(index, self._applied_index)

    def _start_read_round(self) -> None:
        self._reads.start_round(
            self.core.read_index,
            lambda err: Unavailable(str(err), self._addresses.get(getattr(err, "leader", 0), "")),
            ProposalDroppedError,
        )


    # ------------------------------------------------------------------ leases

    def lease_remaining(self, lease_id: int) -> float | None:
        if not self.is_leader:
            raise Unavailable("lease clocks live on the leader", self.leader_address())
        return self.lease_timers.remaining(lease_id)

    # ------------------------------------------------------------------ the Ready cycle

    async def _run(self) -> None:
        try:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                self._flush_proposals()
                self._start_read_round()
                while self.core.has_ready() and not self._stopping:
                    await self._handle_ready(self.core.ready())
                    if self.core.log.has_next_committed_entries():
                        await asyncio.sleep(0)  # a bounded apply batch: let the loop run between two
                    self._flush_proposals()
                    self._start_read_round()
                if self._snapshot_task is not None and self._snapshot_task.done():
                    await self._maybe_snapshot()
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # a storage failure: stop serving rather than lie
            self._fatal = err
            log.critical("node %#x stops: %s", self.id, err, exc_info=True)
            self._stopping = True
            self._fail_all(Unavailable(f"the node failed: {err}"))

    def _send_now(self) -> None:
        """Send what a leader may send before persisting (heartbeats, appends) while the
        Ready cycle waits for the disk: a slow fsync (a busy disk, a snapshot being
        written) must not silence the heartbeats, or the followers elect another leader."""
        messages, self.core.msgs = self.core.msgs, []
        messages = self._commit_notices.filter(messages)
        if messages:
            self.transport.send(messages)

    async def _handle_ready(self, rd: Ready) -> None:
        self._ready_busy = True
        try:
            await self._handle_ready_now(rd)
        finally:
            self._ready_busy = False

    async def _handle_ready_now(self, rd: Ready) -> None:
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state.role, rd.soft_state.leader)
        elif self.is_leader and self._term_first_index_term != self.core.term:
            # Deposed and elected again between two Ready cycles (no soft-state change):
            # the new term still needs its floor and fresh lease clocks.
            self._on_soft_state(self.core.role, self.core.lead)
        messages = self._commit_notices.filter(rd.messages) if rd.messages else rd.messages
        if messages:
            self.transport.send(messages)
        if rd.snapshot is None:
            # Committed entries are durable here already (Ready contract): apply them while
            # the disk writes the new ones, rather than after (one fsync less per request).
            if rd.committed_entries:
                self._apply(rd.committed_entries)
            if rd.read_states:
                self._reads.release(rd.read_states, self._applied_index)
        if rd.hard_state is not None or rd.entries or rd.snapshot is not None:
            # A Ready that only moves the commit index needs no fsync (must_sync False):
            # the commit index is an optimisation, never required for safety.
            if messages:
                # A leader's appends were just handed to the peer tasks: let them write
                # before this member syncs its own copy, which a small save does on the
                # loop (disk.py INLINE_SYNC_BELOW). Sending it to the writer thread
                # instead held this Ready, so the next proposals and the next commit's
                # apply, for the 0.6 ms round trip. Contended lock handoffs 240 -> 265/s
                # (mean of 6 alternating pairs; 5 of 6 won), puts at 64 3,366 -> 3,693/s.
                await asyncio.sleep(0)
            if self.metrics is not None and rd.must_sync:
                started = time.perf_counter()
                await self.storage.save_async(rd.hard_state, rd.entries, rd.snapshot, sync=True)
                self.metrics.fsync_seconds.observe(time.perf_counter() - started)
            else:
                await self.storage.save_async(rd.hard_state, rd.entries, rd.snapshot, sync=rd.must_sync)
        if rd.persisted_messages:
            self.transport.send(rd.persisted_messages)
        if rd.snapshot is not None:
            # A snapshot replaces the state machine: restore it (once it is on disk) before
            # applying the entries that follow it.
            self._restore_snapshot(rd.snapshot)
            if rd.committed_entries:
                self._apply(rd.committed_entries)
            if rd.read_states:
                self._reads.release(rd.read_states, self._applied_index)
        self.core.advance(rd)
        self.proposals.advanced()
        if self._solo_campaign and self.core.log.applied >= self.core.log.committed:
            self._solo_campaign = False
            if self.core.voters == {self.id} and not self.is_leader:
                self.core.campaign()
        self._reads.wake(self._applied_index)
        await self._maybe_snapshot()

    def _on_soft_state(self, role: Role, leader: int) -> None:
        self._leader_log.changed(role, leader)
        if self.metrics is not None:
            self.metrics.on_leader(leader, role)
        if leader != 0 and self._leaderless:
            self._leaderless.retry_all()
        if role == Role.LEADER:
            # At or after this term's first entry (become_leader appended it): read_waits Rule 5.
            self._term_first_index = self.core.log.last_index()
            self._term_first_index_term = self.core.term
            timeout = self.config.election_timeout
            self.lease_timers.start(self.state.lease_ids(), extension=timeout, max_postpone=timeout)
        else:
            self.lease_timers.stop()
            self._commit_notices.drop()
            # ReadIndex rounds of a lost leadership will never complete: fail them now so
            # clients retry at once rather than at their deadline.
            self._reads.fail_rounds(Unavailable("leadership changed; retry", self._addresses.get(leader, "")))

    def _apply(self, entries: list[Any]) -> None:
        for entry in entries:
            result: Any = None
            if entry.type == EntryType.CONF_CHANGE:
                change = ConfChange.decode(entry.data)
                self.state.apply_member_change(entry.index, int(change.type), change.node_id, change.context)
                self._on_member_change(change)
            else:
                result = self.state.apply(entry.index, entry.data)
                if result is not None and self.lease_timers.active:
                    self._track_leases(entry.data, result)
            overtaken = self.proposals.applied(entry.index, entry.term, result, entry.type == EntryType.CONF_CHANGE)
            if overtaken and self.metrics is not None:
                self.metrics.proposals_failed.inc()
        self._applied_index = entries[-1].index
        if self.metrics is not None:
            self.metrics.on_applied(len(entries), self._applied_index)
        self._reads.wake(self._applied_index)

    def _track_leases(self, data: bytes, result: command_pb2.CommandResult) -> None:
        which = result.WhichOneof("result")
        if which == "lease_grant":
            self.lease_timers.granted(result.lease_grant.id, result.lease_grant.ttl)
        elif which in ("lease_revoke", "lease_expire"):
            command = command_pb2.Command()
            command.ParseFromString(data)
            if which == "lease_revoke":
                self.lease_timers.revoked(command.lease_revoke.id)
            else:
                for lease_id in command.lease_expire.ids:
                    self.lease_timers.revoked(lease_id)

    def _on_member_change(self, change: ConfChange) -> None:
        if change.type == ConfChangeType.REMOVE_NODE:
            if change.node_id != self.id:
                self.transport.remove_peer(change.node_id)
            return
        if change.context:
            info = command_pb2.MemberInfo()
            try:
                info.ParseFromString(change.context)
            except Exception:
                return
            self._learn_member(change.node_id, info)

    def _learn_member(self, node_id: int, info: Any) -> None:
        address = info.client_address or info.peer_address
        if address:
            self._addresses[node_id] = address
        if node_id != self.id and info.peer_address:
            peer_address = self.config.peer_overrides.get(info.name, info.peer_address) if info.name else info.peer_address
            self.transport.set_address(node_id, peer_address)

    def _restore_snapshot(self, snapshot: Any) -> None:
        self.state = StateMachine.restore(snapshot.data)
        self._snapshot_index = snapshot.meta.index
        self._applied_index = snapshot.meta.index
        # Proposals at indexes the snapshot covers will never be applied here one by one:
        # another leader's entries took those places, so ours were not committed (Rule 3).
        overtaken = self.proposals.overtaken_up_to(snapshot.meta.index)
        if overtaken and self.metrics is not None:
            self.metrics.proposals_failed.inc(overtaken)
        for info in self.state.members():
            self._learn_member(info.id, info)
        for fn in self._state_listeners:
            fn(self.state)
        if self.metrics is not None:
            self.metrics.snapshots.labels("leader").inc()

    async def _maybe_snapshot(self) -> None:
        """Snapshot every ``snapshot_entries`` applied entries (plus this member's offset).
        The state's image is taken here, at a consistent point; it is encoded and written
        in the background (snapshotter.py) while the log goes on (a large state takes long to write), and the
        snapshot is recorded and the log compacted at the first Ready after that."""
        task = self._snapshot_task
        if task is not None:
            if not task.done():
                return
            self._snapshot_task = None
            try:
                written = task.result()
            except (StorageWriteError, SnapshotOutOfDateError, SnapshotAbandoned) as err:
                # Only the file failed; nothing refers to it. The log keeps growing until
                # the next attempt succeeds (a failing disk also fails the log's fsync).
                log.error("snapshot not taken: %s", err)
                self._snapshot_index = self.core.log.applied
                return
            try:
                await self.storage.record_snapshot_async(written)
            except SnapshotOutOfDateError:
                return  # a newer snapshot was installed from the leader meanwhile
            self._snapshot_index = written.meta.index
            if self.metrics is not None:
                self.metrics.snapshots.labels("local").inc()
            compact_to = written.meta.index - self.config.snapshot_catchup_entries
            if compact_to > self.storage.first_index():
                await self.storage.compact_async(compact_to)
            return
        applied = self.core.log.applied
        if applied - self._snapshot_index < self.config.snapshot_entries + self._snapshot_offset:
            return
        # The state's image is taken now; it is written chunk by chunk (snapshotter.py).
        task = asyncio.get_running_loop().create_task(
            write_snapshot(self.state, self.storage, applied, self.core.conf_state()), name=f"raft-snapshot-{self.id}"
        )
        task.add_done_callback(lambda _: self._wake.set())
        self._snapshot_task = task

    def _fail_all(self, error: CoordError) -> None:
        self.proposals.fail_all(error)
        self._leaderless.fail_all(error)
        self._forwarder.fail_all(error)
        self._reads.fail_all(error)


def _consume_exception(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()

