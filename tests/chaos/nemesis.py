"""Nemeses: the faults a chaos run injects, chosen and scheduled from the run's seed.

Every fault heals itself at the end of its duration; ``heal_all`` undoes anything left
(resumes paused members, restarts killed ones, heals every link). Faults:

    kill, kill-leader, kill-majority, kill-all    SIGKILL, then restart on the same data
    pause, pause-leader                           SIGSTOP for longer than an election
                                                  timeout, then SIGCONT
    partition-halves                              a random minority | majority split
    partition-leader                              the leader alone
    partition-bridge                              two sides that only one member sees
    partition-oneway                              a member's outbound (or inbound) links
    slow                                          every link delayed (tens to hundreds of ms)
    flaky                                         random links stalled and released, fast
    transfer                                      TransferLeadership to a random voter
    membership                                    add a learner (a new process that joins),
                                                  promote a learner, or remove a member,
                                                  while another fault is going on

Partitions either ``cut`` (connections reset, new ones refused) or ``stall`` (bytes held,
as with dropped packets) the links, chosen by the seed too.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from coord.v1 import cluster_pb2

from .cluster import ChaosCluster

WEIGHTS = {
    "kill": 2, "kill-leader": 2, "kill-majority": 1, "kill-all": 1,
    "pause": 1, "pause-leader": 2,
    "partition-halves": 2, "partition-leader": 2, "partition-bridge": 1, "partition-oneway": 1,
    "slow": 1, "flaky": 1, "transfer": 1, "membership": 2,
}


@dataclass
class FaultRecord:
    kind: str
    start: float
    end: float = 0.0
    detail: str = ""
    notes: list[str] = field(default_factory=list)


class Nemesis:
    def __init__(self, cluster: ChaosCluster, rng: random.Random, election_s: float = 0.3,
                 weights: dict[str, int] | None = None, max_voters: int = 5, min_voters: int = 3) -> None:
        self.cluster = cluster
        self.rng = rng
        self.election_s = election_s
        self.weights = weights or WEIGHTS
        self.max_voters = max_voters
        self.min_voters = min_voters
        self.log: list[FaultRecord] = []
        self.notes: list[str] = []

    # -- schedule -----------------------------------------------------------------

    async def run(self, until: float, quiet: tuple[float, float] = (1.0, 3.0), length: tuple[float, float] = (2.0, 7.0)) -> None:
        kinds = list(self.weights)
        weights = [self.weights[k] for k in kinds]
        while True:
            await asyncio.sleep(self.rng.uniform(*quiet))
            left = until - time.monotonic()
            if left < 1.0:
                return
            kind = self.rng.choices(kinds, weights)[0]
            duration = min(self.rng.uniform(*length), max(1.0, left - 0.5))
            record = FaultRecord(kind, time.monotonic())
            self.log.append(record)
            try:
                await getattr(self, "_" + kind.replace("-", "_"))(record, duration)
            except Exception as err:  # noqa: BLE001 - a nemesis step that could not run is noted
                record.notes.append(f"{type(err).__name__}: {err}")
                self.heal_links()
                await self.restore_processes()
            record.end = time.monotonic()
            self.cluster.check_processes()

    def heal_links(self) -> None:
        self.cluster.mesh.heal()

    async def restore_processes(self) -> None:
        for name in self.cluster.members():
            slot = self.cluster.slots[name]
            if slot.paused:
                self.cluster.resume(name)
            if not slot.running:
                self.cluster.start_node(name)

    async def heal_all(self) -> None:
        self.heal_links()
        await self.restore_processes()

    # -- helpers --------------------------------------------------------------------

    async def _leader_or_random(self) -> str:
        leader = await self.cluster.leader()
        if leader is not None:
            return leader
        live = self.cluster.live() or self.cluster.members()
        return self.rng.choice(live)

    def _mode(self) -> str:
        return self.rng.choice(["cut", "stall"])

    async def _sleep(self, duration: float) -> None:
        await asyncio.sleep(duration)

    async def _kill_then_restart(self, record: FaultRecord, victims: list[str], duration: float) -> None:
        record.detail = " ".join(victims)
        for name in victims:
            await self.cluster.kill(name)
        await self._sleep(duration)
        for name in victims:
            if self.cluster.slots[name].state == "member":
                self.cluster.start_node(name)

    # -- process faults ---------------------------------------------------------------

    async def _kill(self, record: FaultRecord, duration: float) -> None:
        await self._kill_then_restart(record, [self.rng.choice(self.cluster.live() or self.cluster.members())], duration)

    async def _kill_leader(self, record: FaultRecord, duration: float) -> None:
        await self._kill_then_restart(record, [await self._leader_or_random()], duration)

    async def _kill_majority(self, record: FaultRecord, duration: float) -> None:
        members = self.cluster.members()
        victims = self.rng.sample(members, len(members) // 2 + 1)
        await self._kill_then_restart(record, victims, duration)

    async def _kill_all(self, record: FaultRecord, duration: float) -> None:
        await self._kill_then_restart(record, self.cluster.members(), min(duration, self.rng.uniform(0.5, 3.0)))

    async def _pause_node(self, record: FaultRecord, name: str, duration: float) -> None:
        if self.rng.random() < 0.5:
            # Short: past an election (a new leader commits writes meanwhile) but within
            # the clients' attempt timeout, so requests queued at the paused member are
            # answered when it wakes up still believing it leads.
            duration = self.rng.uniform(2 * self.election_s, 5 * self.election_s)
        duration = max(duration, 2 * self.election_s)
        record.detail = f"{name} for {duration:.1f}s"
        self.cluster.pause(name)
        try:
            await self._sleep(duration)
        finally:
            self.cluster.resume(name)

    async def _pause(self, record: FaultRecord, duration: float) -> None:
        await self._pause_node(record, self.rng.choice(self.cluster.live() or self.cluster.members()), duration)

    async def _pause_leader(self, record: FaultRecord, duration: float) -> None:
        await self._pause_node(record, await self._leader_or_random(), duration)

    # -- network faults ---------------------------------------------------------------

    async def _partitioned(self, record: FaultRecord, groups: list[list[str]], duration: float, mode: str | None = None) -> None:
        mode = mode or self._mode()
        record.detail = " | ".join(" ".join(g) for g in groups) + f" ({mode})"
        self.cluster.mesh.partition(groups, mode)
        try:
            await self._sleep(duration)
        finally:
            self.heal_links()

    async def _partition_halves(self, record: FaultRecord, duration: float) -> None:
        members = self.cluster.members()
        self.rng.shuffle(members)
        k = self.rng.randint(1, len(members) // 2)
        await self._partitioned(record, [sorted(members[:k]), sorted(members[k:])], duration)

    async def _partition_leader(self, record: FaultRecord, duration: float) -> None:
        leader = await self._leader_or_random()
        others = sorted(n for n in self.cluster.members() if n != leader)
        await self._partitioned(record, [[leader], others], duration)

    async def _partition_bridge(self, record: FaultRecord, duration: float) -> None:
        members = self.cluster.members()
        self.rng.shuffle(members)
        bridge, rest = members[0], members[1:]
        half = max(1, len(rest) // 2)
        await self._partitioned(record, [sorted(rest[:half]), sorted(rest[half:])], duration)
        record.detail += f" bridge {bridge}"

    async def _partition_oneway(self, record: FaultRecord, duration: float) -> None:
        target = await self._leader_or_random() if self.rng.random() < 0.5 else self.rng.choice(self.cluster.members())
        outbound = self.rng.random() < 0.5
        mode = self._mode()
        record.detail = f"{target} {'cannot send' if outbound else 'cannot receive'} ({mode})"
        self.cluster.mesh.isolate(target, mode, inbound=not outbound, outbound=outbound)
        try:
            await self._sleep(duration)
        finally:
            self.heal_links()

    async def _slow(self, record: FaultRecord, duration: float) -> None:
        delay = self.rng.choice([0.01, 0.03, 0.06, 0.1, 0.15])
        record.detail = f"every link +{delay * 1000:.0f}ms each way"
        for link in self.cluster.mesh.links.values():
            link.set(link.mode, delay=delay)
        try:
            await self._sleep(duration)
        finally:
            self.heal_links()

    async def _flaky(self, record: FaultRecord, duration: float) -> None:
        links = list(self.cluster.mesh.links.values())
        record.detail = "random links stalled and released every 0.1-0.5s"
        end = time.monotonic() + duration
        try:
            while time.monotonic() < end:
                for link in links:
                    link.set("stall" if self.rng.random() < 0.3 else "ok")
                await asyncio.sleep(self.rng.uniform(0.1, 0.5))
        finally:
            self.heal_links()

    # -- cluster operations -------------------------------------------------------------

    async def _transfer(self, record: FaultRecord, duration: float) -> None:
        listing = await self.cluster.member_list()
        leader = await self.cluster.leader()
        if listing is None or leader is None:
            record.detail = "skipped: no leader"
            return
        voters = [m for m in listing if not m.is_learner and m.name != leader]
        if not voters:
            record.detail = "skipped: no other voter"
            return
        target = self.rng.choice(voters)
        record.detail = f"{leader} -> {target.name}"
        try:
            await self.cluster.call_leader(
                "TransferLeadership", cluster_pb2.ClusterTransferLeadershipRequest(target_id=target.id), timeout=5.0
            )
        except grpc.aio.AioRpcError as err:
            record.notes.append(f"transfer: {err.code().name}: {err.details()}")

    async def _membership(self, record: FaultRecord, duration: float) -> None:
        listing = await self.cluster.member_list()
        if listing is None:
            record.detail = "skipped: no member list"
            return
        names = {m.name for m in listing}
        learners = [m for m in listing if m.is_learner]
        voters = [m for m in listing if not m.is_learner]
        free = [n for n, s in self.cluster.slots.items() if s.state == "free" and n not in names]
        actions: list[tuple[str, Callable[[], Awaitable[str]]]] = []
        if free and len(listing) < len(self.cluster.slots):
            actions.append(("add", lambda: self._add(self.rng.choice(free))))
        if learners and len(voters) < self.max_voters:
            actions.append(("promote", lambda: self._promote(self.rng.choice(learners))))
        if learners or len(voters) > self.min_voters:
            pool = learners + (voters if len(voters) > self.min_voters else [])
            actions.append(("remove", lambda: self._remove(self.rng.choice(pool))))
        if not actions:
            record.detail = "skipped: nothing to change"
            return
        action, run = self.rng.choice(actions)
        # The change runs during another fault (not a kill: the members must stay).
        background = self.rng.choice(["pause", "partition-oneway", "slow", "flaky", "partition-halves", None])
        sub = FaultRecord(background or "none", time.monotonic())
        task = None
        if background is not None:
            task = asyncio.create_task(getattr(self, "_" + background.replace("-", "_"))(sub, duration))
        try:
            outcome = await run()
        finally:
            if task is not None:
                await task
        record.detail = f"{action}: {outcome}; during {background or 'no other fault'} {sub.detail}"
        await self._reconcile(record)

    async def _add(self, name: str) -> str:
        slot = self.cluster.slots[name]
        via = (await self.cluster.leader()) or self.rng.choice(self.cluster.live())
        slot.args = self.cluster._args(name, ["--join", self.cluster.slots[via].address])
        slot.state = "member"
        self.cluster.start_node(name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listing = await self.cluster.member_list(timeout=3)
            if listing is not None and any(m.name == name for m in listing):
                if self.rng.random() < 0.5:
                    return f"{name} joined as a learner, then " + await self._promote(next(m for m in listing if m.name == name))
                return f"{name} joined as a learner"
            if not slot.running:
                break
            await asyncio.sleep(0.3)
        return f"{name} did not join"

    async def _promote(self, member: cluster_pb2.Member) -> str:
        deadline = time.monotonic() + 20
        last = ""
        while time.monotonic() < deadline:
            try:
                await self.cluster.call_leader("MemberPromote", cluster_pb2.ClusterMemberPromoteRequest(id=member.id), timeout=5)
                return f"{member.name} promoted"
            except grpc.aio.AioRpcError as err:
                last = f"{err.code().name}: {err.details()}"
                if err.code() == grpc.StatusCode.FAILED_PRECONDITION and "already a voter" in (err.details() or ""):
                    return f"{member.name} promoted"
                if err.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    break
            await asyncio.sleep(0.5)
        return f"{member.name} not promoted ({last})"

    async def _remove(self, member: cluster_pb2.Member) -> str:
        deadline = time.monotonic() + 15
        while True:
            try:
                await self.cluster.call_leader("MemberRemove", cluster_pb2.ClusterMemberRemoveRequest(id=member.id), timeout=10)
                break
            except grpc.aio.AioRpcError as err:
                # Right after an election the new leader refuses changes until its first
                # entry is applied ("another membership change is still being applied").
                if err.code() == grpc.StatusCode.FAILED_PRECONDITION and "still" in (err.details() or "") \
                        and time.monotonic() < deadline:
                    await asyncio.sleep(0.3)
                    continue
                return f"{member.name} removal failed ({err.code().name}: {err.details()})"
        if member.name in self.cluster.slots:
            await self.cluster.wipe(member.name)
        return f"{member.name} removed"

    async def _reconcile(self, record: FaultRecord) -> None:
        """Make the slots agree with the member list: a slot not in it is wiped."""
        listing = await self.cluster.member_list(timeout=10)
        if listing is None:
            record.notes.append("could not read the member list to reconcile")
            return
        names = {m.name for m in listing}
        for name, slot in self.cluster.slots.items():
            if slot.state == "member" and name not in names:
                record.notes.append(f"{name} is not a member: wiped")
                await self.cluster.wipe(name)
