"""The seeded simulator for the REAL member: coord_server's Node, with its RaftCore, the
real StateMachine and the real DiskStorage, on a loop with virtual time (simloop.py), a
simulated disk (simdisk.py) and a simulated network, all drawn from one seed.

Unlike simulator.py, which drives bare RaftCores and re-implements persist and apply,
this runs node.py's own Ready loop: group commit, inline small saves and the writer
thread, applying committed entries while the disk writes the new ones, held COMMIT
notices, lazy and forwarded proposals, ReadIndex rounds.

Rule 1: one ``random.Random(seed)`` draws everything (settings, delays, faults, client
        operations); the loop's time is virtual, so one seed is one run.
Rule 2: after every step of the loop the invariants hold (invariants.Checker: election
        safety, log matching, leader completeness, committed entries never lost, the
        commit rule); every entry reaches a state machine in index order, the same entry
        at one index everywhere, and only what a client proposed (``_watch_state``).
Rule 3: client results are linearizable (a write is acknowledged once; a read that starts
        after a write was acknowledged sees it), and after the faults heal every member
        converges to the same state (``finish``).
Rule 4: a member whose fsync failed stops: it sends nothing afterwards (``FsyncGate``),
        whether or not the failure was reported to it.
        The world then treats it as crashed (an operator restarts it on a healthy disk).
Rule 5: a crash loses the member's unsynced writes (a torn last write included) and
        everything in memory; a restart recovers from the directory as coord-server does.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from coord.raft.v1 import command_pb2, raft_pb2
from coord.raft.v1 import raft_pb2 as peer_pb2  # noqa: F401 - the Message type lives here
from coord.v1 import kv_pb2
from coord_server.errors import CoordError, Unavailable
from coord_server.node import Node, NodeConfig
from coord_server.raft import Message, Role
from coord_server.storage import DiskStorage
from coord_server.storage.errors import StorageWriteError
from coord_server.transport import codec

from .invariants import Checker, InvariantViolation
from .simdisk import ProcessDead, SimDisk, SimExecutor, SimFileIO
from .simloop import SimLoop

CLUSTER_ID = 0x5EED


class LinearizabilityViolation(InvariantViolation):
    """A client saw a result no sequential order of the operations explains."""


class OverBudget(RuntimeError):
    """A run took more loop steps than ``NodeWorld.max_steps`` (not a violation)."""


class FsyncGate(InvariantViolation):
    """A member went on after a failed fsync (Rule 4)."""


@dataclass
class Member:
    id: int
    info: command_pb2.MemberInfo
    path: str
    disk: SimDisk
    node: Node | None = None
    io: SimFileIO | None = None
    storage: DiskStorage | None = None
    incarnation: int = 0
    failed_at: float | None = None
    """Virtual time at which this incarnation's fsync failed (Rule 4)."""
    sent_after_failure: int = 0


@dataclass
class Plan:
    """What one seed draws for the run."""

    n: int
    max_batch: int
    snapshot_entries: int
    segment_size: int
    latency: float
    faulty_seconds: float
    fsync_failures: bool
    settings: dict[str, Any] = field(default_factory=dict)


class NodeWorld:
    """One seeded run of real members; ``run()`` plays it and raises on a violation."""

    def __init__(self, seed: int, *, node_class: type[Node] = Node, fsync_failures: bool | None = None,
                 faulty_seconds: float | None = None, storage_hook: Any = None, n: int | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        rng = self.rng
        self.node_class = node_class
        self.storage_hook = storage_hook
        self.plan = Plan(
            n=n or rng.choice((3, 3, 5)),
            max_batch=rng.choice((1, 4, 1024)),
            snapshot_entries=rng.choice((25, 60, 100_000)),
            segment_size=rng.choice((4096, 16384, 1 << 20)),
            latency=rng.choice((0.0002, 0.001, 0.004)),
            faulty_seconds=faulty_seconds if faulty_seconds is not None else rng.uniform(2.0, 4.0),
            fsync_failures=fsync_failures if fsync_failures is not None else rng.random() < 0.3,
        )
        self.loop = SimLoop()
        self.max_steps = 60_000
        """Loop steps a run may take (``OverBudget`` beyond): a seed whose schedule makes
        the members crawl costs at most this much."""
        self.checker = Checker(self._where)
        self.root = tempfile.mkdtemp(prefix=f"coord-sim-{seed}-")
        self.members: dict[int, Member] = {}
        for i in range(1, self.plan.n + 1):
            info = command_pb2.MemberInfo(id=i, name=f"n{i}", peer_address=f"sim-peer-{i}", client_address=f"sim-{i}")
            self.members[i] = Member(i, info, os.path.join(self.root, f"n{i}"), SimDisk(random.Random(rng.random())))
            self.members[i].disk.latency = self.plan.latency
        self.blocked: set[tuple[int, int]] = set()
        self.loss = 0.0
        self.acked: dict[bytes, tuple[bytes, float]] = {}
        """key -> (value, virtual time the put was acknowledged)."""
        self.applied_data: dict[int, bytes] = {}
        """Rule 2: index -> the command data some state machine applied there."""
        self.counts = {"puts": 0, "acked": 0, "reads": 0, "reads_checked": 0, "crashes": 0,
                       "fsync_failures": 0, "stopped": 0, "partitions": 0, "slow_disks": 0}
        self.recent: deque[str] = deque(maxlen=40)
        self.max_puts = 400
        """Client writes per run (keeps a run's cost bounded whatever the seed draws)."""
        self.violation: InvariantViolation | None = None
        """The first violation found where raising would not reach the test (a timer, the
        node's own loop); ``_check`` raises it."""
        self._next_key = 0
        self._stop_faults = False
        self._clients_stop = False

    # ------------------------------------------------------------------ running

    def run(self) -> NodeWorld:
        self.loop.after_step = self._check
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self._teardown()
        return self

    def _teardown(self) -> None:
        for m in self.members.values():
            if m.io is not None and not m.io.dead and m.node is not None:
                self._kill(m)
        tasks = asyncio.all_tasks(self.loop)
        for t in tasks:
            t.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()
        shutil.rmtree(self.root, ignore_errors=True)

    async def _main(self) -> None:
        for m in self.members.values():
            self._start(m)
        clients = [asyncio.ensure_future(self._client(c)) for c in range(self.rng.choice((2, 4, 8)))]
        faults = asyncio.ensure_future(self._faults())
        await asyncio.sleep(self.plan.faulty_seconds)
        self._stop_faults = True
        await faults
        self._heal_all()
        self._clients_stop = True
        await asyncio.gather(*clients)
        await self.finish()

    def fail(self, violation: InvariantViolation) -> None:
        if self.violation is None:
            self.violation = violation
        raise violation

    def _where(self) -> str:
        return f"seed {self.seed}, t={self.loop.time():.4f}, step {self.loop.steps}"

    def describe(self) -> str:
        p = self.plan
        return (f"seed {self.seed}: {p.n} members, max_batch {p.max_batch}, snapshot every "
                f"{p.snapshot_entries}, segment {p.segment_size}, disk {p.latency * 1000:.1f} ms, "
                f"{p.faulty_seconds:.1f} s of faults, fsync failures {p.fsync_failures}; {self.counts}")

    # ------------------------------------------------------------------ members

    def _start(self, m: Member) -> None:
        m.incarnation += 1
        m.failed_at = None
        m.node = None
        io = SimFileIO(m.disk, self.loop, m.path)
        latency = lambda d=m.disk: d.latency * (0.5 + self.rng.random())  # noqa: E731
        try:
            storage = DiskStorage(
                m.path, CLUSTER_ID, segment_size=self.plan.segment_size, io=io,
                executor=SimExecutor(self.loop, io, latency),
                snapshot_executor=SimExecutor(self.loop, io, lambda d=m.disk: 4 * d.latency),
                clock=self.loop.time, timer=self.loop.time,
            )
        except Exception as err:
            raise InvariantViolation(f"member {m.id} cannot recover its directory: {err} [{self._where()}]") from err
        m.io = io
        if self.storage_hook is not None:
            self.storage_hook(storage)
        m.storage = storage
        config = NodeConfig(node_id=m.id, cluster_id=CLUSTER_ID, name=m.info.name, client_address=m.info.client_address,
                            snapshot_entries=self.plan.snapshot_entries, snapshot_catchup_entries=10,
                            max_batch=self.plan.max_batch)
        bootstrap = {o.id: o.info for o in self.members.values()}
        node = self.node_class(config, storage, SimTransport(self, m, m.incarnation), bootstrap_members=bootstrap,
                               rng=random.Random(self.rng.random()))
        m.node = node
        self._watch_state(m, node)
        self.checker.node_started(m.id, node.core)
        self.loop.create_task(node.start())

    def _watch_state(self, m: Member, node: Node) -> None:
        """Rule 2 at the state machine itself: every apply, in order, agreed, proposed."""

        def watch(state: Any) -> None:
            apply, apply_change = state.apply, state.apply_member_change

            def violated(what: str) -> None:
                self.fail(InvariantViolation(f"{what} [{self._where()}]"))

            def in_order(index: int) -> None:
                if index != state.applied_index + 1:
                    violated(f"member {m.id} applied entry {index} after {state.applied_index}")

            def checked_apply(index: int, data: bytes) -> Any:
                in_order(index)
                seen = self.applied_data.setdefault(index, data)
                if seen != data:
                    violated(f"state machine safety: member {m.id} applied other data at {index}")
                if data and data not in self.checker.proposed:
                    violated(f"member {m.id} applied a command at {index} no client proposed")
                return apply(index, data)

            def checked_change(index: int, *args: Any) -> Any:
                in_order(index)
                return apply_change(index, *args)

            state.apply, state.apply_member_change = checked_apply, checked_change

        watch(node.state)
        node.add_state_listener(watch)

    def _kill(self, m: Member) -> None:
        """The process dies (Rule 5): its tasks stop, unsynced writes are lost."""
        node, storage, io = m.node, m.storage, m.io
        assert node is not None and storage is not None and io is not None
        node._stopping = True
        for task in [*node._tasks, node._snapshot_task, *node._forwarder._tasks]:
            if task is not None:
                task.cancel()
        m.disk.crash(io)
        root = os.path.realpath(m.path) + os.sep
        for fd in {storage._lock_fd, *storage._wal._readers.values()}:
            try:
                if os.readlink(f"/proc/self/fd/{fd}").startswith(root):
                    os.close(fd)
            except OSError:
                pass
        self.checker.node_stopped(m.id)

    def crash(self, m: Member) -> None:
        self.counts["crashes"] += 1
        self.recent.append(f"{self.loop.time():.4f} crash n{m.id}")
        self._kill(m)

    def alive(self) -> list[Member]:
        return [m for m in self.members.values()
                if m.node is not None and m.io is not None and not m.io.dead and m.failed_at is None]

    def _check(self) -> None:
        """Rule 2 and Rule 4, after every loop step."""
        if self.violation is not None:
            raise self.violation
        if self.loop.steps > self.max_steps:
            raise OverBudget(f"{self.describe()}: more than {self.max_steps} loop steps")
        cores = {}
        for m in self.members.values():
            if m.io is None or m.io.dead or m.node is None:
                continue
            node = m.node
            if node.failed is not None and m.failed_at is None:
                m.failed_at = self.loop.time()
                self.counts["stopped"] += 1
                self.recent.append(f"{m.failed_at:.4f} n{m.id} stopped: {node.failed}")
                if not isinstance(node.failed, StorageWriteError):
                    raise InvariantViolation(f"member {m.id} stopped on {node.failed!r} [{self._where()}]")
            self.checker.check_node(m.id, node.core)
            cores[m.id] = node.core
        self.checker.check_leaders(cores)

    # ------------------------------------------------------------------ network

    def deliver_later(self, src: Member, incarnation: int, m: Message) -> None:
        dst = self.members.get(m.to)
        if dst is None or (src.id, m.to) in self.blocked or self.rng.random() < self.loss:
            if m.type.name == "SNAP":
                self.loop.call_later(0.01, self._snapshot_status, src, incarnation, m.to, True)
            return
        data = codec.message_to_pb(m).SerializeToString()
        delay = self.rng.uniform(0.0001, 0.002) if self.rng.random() > 0.02 else self.rng.uniform(0.01, 0.1)
        self.loop.call_later(delay, self._deliver, src, incarnation, dst, dst.incarnation, data, m.type.name == "SNAP")

    def _deliver(self, src: Member, src_inc: int, dst: Member, dst_inc: int, data: bytes, snap: bool) -> None:
        ok = (dst.incarnation == dst_inc and dst.io is not None and not dst.io.dead and dst.node is not None
              and (src.id, dst.id) not in self.blocked)
        if ok:
            assert dst.node is not None
            dst.node.step(codec.message_from_pb(raft_pb2.Message.FromString(data)))
        if snap:
            self._snapshot_status(src, src_inc, dst.id, not ok)

    def _snapshot_status(self, src: Member, incarnation: int, to: int, failed: bool) -> None:
        if src.incarnation == incarnation and src.node is not None and src.io is not None and not src.io.dead:
            src.node.report_snapshot(to, failed)

    async def forward(self, src: Member, to: int, payload: bytes, timeout: float | None) -> bytes:
        dst = self.members[to]
        await asyncio.sleep(self.rng.uniform(0.0001, 0.002))
        if (src.id, to) in self.blocked or dst.node is None or dst.io is None or dst.io.dead:
            await asyncio.sleep(timeout or 1.0)
            raise Unavailable("the leader did not answer")
        items = list(raft_pb2.ForwardBatch.FromString(payload).items)
        results = await asyncio.wait_for(dst.node.propose_local_many(items), timeout)
        await asyncio.sleep(self.rng.uniform(0.0001, 0.002))
        if (to, src.id) in self.blocked:
            raise Unavailable("the answer was lost")
        return raft_pb2.ForwardBatch(items=[r.SerializeToString() for r in results]).SerializeToString()

    # ------------------------------------------------------------------ faults

    async def _faults(self) -> None:
        rng = self.rng
        down: list[tuple[float, Member]] = []
        while not self._stop_faults:
            await asyncio.sleep(rng.uniform(0.02, 0.25))
            now = self.loop.time()
            for due, m in list(down):
                if due <= now:
                    down.remove((due, m))
                    self._restart(m)
            for m in self.members.values():
                if m.failed_at is not None and m.io is not None and not m.io.dead:
                    self._kill(m)  # Rule 4: the stopped member is restarted later
                    down.append((now + rng.uniform(0.1, 0.5), m))
            r = rng.random()
            alive = self.alive()
            leaders = [m for m in alive if m.node is not None and m.node.is_leader]
            if r < 0.15 and len(alive) > self.plan.n // 2:
                # Half the crashes hit the leader: its unsynced appends are the riskiest.
                m = rng.choice(leaders) if leaders and rng.random() < 0.5 else rng.choice(alive)
                self.crash(m)
                down.append((now + rng.uniform(0.05, 0.8), m))
            elif r < 0.3:
                self._partition()
            elif r < 0.4:
                self.blocked.clear()
                self.recent.append(f"{now:.4f} heal")
            elif r < 0.5 and alive:
                m = rng.choice(alive)
                m.disk.latency = rng.choice((0.02, 0.08))
                self.counts["slow_disks"] += 1
                self.loop.call_later(rng.uniform(0.1, 0.6), self._disk_recovers, m)
            elif r < 0.56 and alive and self.plan.fsync_failures:
                m = rng.choice(alive)
                m.disk.fail_next_fsync = True
                self.counts["fsync_failures"] += 1
                self.recent.append(f"{now:.4f} fsync will fail on n{m.id}")
            elif r < 0.62:
                self.loss = rng.choice((0.0, 0.0, 0.02, 0.1))
        for _, m in down:
            self._restart(m)

    def _disk_recovers(self, m: Member) -> None:
        m.disk.latency = self.plan.latency

    def _partition(self) -> None:
        ids = list(self.members)
        self.rng.shuffle(ids)
        cut = self.rng.randrange(1, len(ids))
        self.blocked = {(a, b) for a in ids[:cut] for b in ids[cut:]} | {(b, a) for a in ids[:cut] for b in ids[cut:]}
        self.counts["partitions"] += 1
        self.recent.append(f"{self.loop.time():.4f} partition {ids[:cut]} | {ids[cut:]}")

    def _restart(self, m: Member) -> None:
        if m.io is not None and not m.io.dead:
            return
        m.disk.latency = self.plan.latency
        m.disk.fail_next_fsync = False
        self.recent.append(f"{self.loop.time():.4f} restart n{m.id}")
        self._start(m)

    def _heal_all(self) -> None:
        self.blocked.clear()
        self.loss = 0.0
        for m in self.members.values():
            m.disk.fail_next_fsync = False
            m.disk.latency = self.plan.latency
            if m.failed_at is not None and m.io is not None and not m.io.dead:
                self._kill(m)
            if m.io is None or m.io.dead:
                self._start(m)

    # ------------------------------------------------------------------ clients

    async def _client(self, c: int) -> None:
        rng = self.rng
        while not self._clients_stop:
            if self.counts["puts"] >= self.max_puts:
                await asyncio.sleep(0.05)
                continue
            alive = self.alive()
            if not alive:
                await asyncio.sleep(0.05)
                continue
            m = rng.choice(alive)
            if self.acked and rng.random() < 0.3:
                await self._read(m)
            else:
                await self._put(m)

    async def _put(self, m: Member) -> None:
        key = b"k%d" % self._next_key
        self._next_key += 1
        value = b"v-" + key
        command = command_pb2.Command(put=kv_pb2.PutRequest(key=key, value=value))
        self.checker.proposed.add(command.SerializeToString())
        self.counts["puts"] += 1
        node = m.node
        assert node is not None
        try:
            result = await asyncio.wait_for(node.propose(command, timeout=1.0), 1.5)
        except (CoordError, asyncio.TimeoutError, ProcessDead):
            return  # outcome unknown to the client
        if result.WhichOneof("result") == "put":
            self.acked[key] = (value, self.loop.time())
            self.counts["acked"] += 1

    async def _read(self, m: Member) -> None:
        key = self.rng.choice(sorted(self.acked)[-50:])
        value, _ = self.acked[key]
        node, incarnation = m.node, m.incarnation
        assert node is not None
        self.counts["reads"] += 1
        try:
            await asyncio.wait_for(node.read_barrier(), 1.5)
        except (CoordError, asyncio.TimeoutError, ProcessDead):
            return
        if m.incarnation != incarnation or m.io is None or m.io.dead:
            return
        got = node.state.range(kv_pb2.RangeRequest(key=key))
        self.counts["reads_checked"] += 1
        if [kv.value for kv in got.kvs] != [value]:
            raise LinearizabilityViolation(
                f"member {m.id} read {key!r} as {[kv.value for kv in got.kvs]} after its put of {value!r} was "
                f"acknowledged [{self._where()}]"
            )

    # ------------------------------------------------------------------ the end

    async def finish(self, within: float = 20.0) -> None:
        """Rule 3: after healing, a put commits and every member converges."""
        deadline = self.loop.time() + within
        final = None
        while final is None:
            if self.loop.time() > deadline:
                raise InvariantViolation(f"liveness: no put committed within {within} s of healing [{self._where()}]")
            leaders = [m for m in self.alive() if m.node is not None and m.node.core.role == Role.LEADER]
            if not leaders:
                await asyncio.sleep(0.05)
                continue
            command = command_pb2.Command(put=kv_pb2.PutRequest(key=b"final", value=b"%d" % self.seed))
            self.checker.proposed.add(command.SerializeToString())
            node = leaders[0].node
            assert node is not None
            try:
                final = await asyncio.wait_for(node.propose(command), 1.0)
            except (CoordError, asyncio.TimeoutError):
                continue
            target = node.applied_index
        while not all(m.node is not None and m.node.applied_index >= target for m in self.alive()):
            if self.loop.time() > deadline:
                raise InvariantViolation(f"liveness: members did not apply {target} in time [{self._where()}]")
            await asyncio.sleep(0.02)
        for m in self.alive():
            assert m.node is not None
            got = {kv.key: kv.value for kv in m.node.state.range(kv_pb2.RangeRequest(key=b"k", range_end=b"l")).kvs}
            for key, (value, _) in self.acked.items():
                if got.get(key) != value:
                    raise LinearizabilityViolation(
                        f"acknowledged put {key!r}={value!r} is {got.get(key)!r} on member {m.id} [{self._where()}]"
                    )


class SimTransport:
    """The node's Transport over the world's network."""

    def __init__(self, world: NodeWorld, member: Member, incarnation: int) -> None:
        self.world = world
        self.member = member
        self.incarnation = incarnation

    def _alive(self) -> bool:
        m = self.member
        return m.incarnation == self.incarnation and m.io is not None and not m.io.dead

    def send(self, messages: list[Message]) -> None:
        if not self._alive():
            return
        if self.member.io is not None and self.member.io.failed_fsync:
            self.world.fail(FsyncGate(f"member {self.member.id} sent {[m.type.name for m in messages]} after "
                                      f"its fsync failed [{self.world._where()}]"))
        for m in messages:
            self.world.deliver_later(self.member, self.incarnation, m)

    async def forward(self, to: int, kind: int, payload: bytes, timeout: float | None) -> bytes:
        return await self.world.forward(self.member, to, payload, timeout)

    def set_address(self, node_id: int, address: str) -> None:
        pass

    def remove_peer(self, node_id: int) -> None:
        pass
