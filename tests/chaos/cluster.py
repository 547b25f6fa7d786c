"""coord-server processes for the chaos runner, every peer link through a fault proxy.

``ChaosCluster`` owns a pool of member slots (n1..nN, N = the most members the run may
have); the first ``initial`` found the cluster, the others wait for the membership
nemesis to add them. Every slot has its client address (its real ``--listen``) and, for
every other slot, a proxy port: member A is started with ``--peer-override B=<proxy A->B>``
for every B, including members that do not exist yet, so a joiner is reached through
its proxies too.

Everything is async (the proxies run on the same loop). Each slot is a
``tests.integration.harness.NodeProcess``: started, signalled and killed (by pid only,
dying with this process) by the same code as the integration tests' members.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from coord.v1 import cluster_pb2, cluster_pb2_grpc
from tests.integration.harness import HarnessError, NodeProcess, free_ports, leader_hint

from .proxy import Mesh
from .workloads import CHANNEL_OPTIONS

LEADER = cluster_pb2.RAFT_ROLE_LEADER


@dataclass
class Slot(NodeProcess):
    """A member slot: a harness NodeProcess (started, killed, paused by the same code as
    the integration tests') and what the chaos run knows about it."""

    port: int = 0
    state: str = "free"
    """``member`` (in the cluster, or joining: has data, should run) or ``free``."""
    reported: Any = None
    """The process whose unexpected exit was reported already."""


class ChaosCluster:
    def __init__(self, base_dir: Path, initial: int = 3, slots: int = 5, options: tuple[str, ...] = ()) -> None:
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.initial = initial
        self.options = list(options)
        names = [f"n{i + 1}" for i in range(slots)]
        ports = free_ports(slots + Mesh.ports_needed(slots))
        self.slots = {
            n: Slot(n, f"127.0.0.1:{ports[i]}", self.base_dir / n, self.base_dir / f"{n}.log", [], port=ports[i])
            for i, n in enumerate(names)
        }
        self.mesh = Mesh(names, {n: ("127.0.0.1", s.port) for n, s in self.slots.items()}, ports[slots:])
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.unexpected_exits: list[str] = []

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        await self.mesh.start()
        founders = list(self.slots)[: self.initial]
        initial = ",".join(f"{n}={self.slots[n].address}" for n in founders)
        for name in founders:
            slot = self.slots[name]
            slot.args = self._args(name, ["--initial-cluster", initial])
            slot.state = "member"
            self.start_node(name)

    def _args(self, name: str, membership: list[str]) -> list[str]:
        slot = self.slots[name]
        overrides = ",".join(self.mesh.overrides(name))
        return [
            "--name", name, "--data-dir", str(slot.data_dir), "--listen", slot.address,
            "--peer-override", overrides, *membership, *self.options,
        ]

    async def close(self) -> None:
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
        self._channels.clear()
        for slot in self.slots.values():
            slot.kill(timeout=10)
        await self.mesh.close()

    # -- processes ------------------------------------------------------------

    def start_node(self, name: str) -> None:
        slot = self.slots[name]
        if not slot.running:
            slot.launch(self.base_dir, by="chaos")

    async def kill(self, name: str) -> None:
        slot = self.slots[name]
        with contextlib.suppress(HarnessError):  # it exited on its own meanwhile
            slot.send(signal.SIGKILL)
        while slot.running:
            await asyncio.sleep(0.01)
        slot.paused = False

    def pause(self, name: str) -> None:
        slot = self.slots[name]
        if not slot.paused:
            with contextlib.suppress(HarnessError):
                slot.send(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        slot = self.slots[name]
        if slot.paused:
            with contextlib.suppress(HarnessError):
                slot.send(signal.SIGCONT)
        slot.paused = False

    async def wipe(self, name: str) -> None:
        """Kill and forget a slot: no process, no data (after its removal)."""
        await self.kill(name)
        slot = self.slots[name]
        shutil.rmtree(slot.data_dir, ignore_errors=True)
        slot.state = "free"
        slot.member_id = 0
        slot.args = []

    def check_processes(self) -> None:
        """Note members that exited without being killed (a crash is a finding)."""
        for slot in self.slots.values():
            if slot.proc is None or slot.reported is slot.proc:
                continue
            code = slot.proc.poll()
            if code is not None and code != -signal.SIGKILL:
                self.unexpected_exits.append(f"{slot.name} exited with status {code} (see {slot.log_path})")
                slot.reported = slot.proc

    def members(self) -> list[str]:
        return [n for n, s in self.slots.items() if s.state == "member"]

    def live(self) -> list[str]:
        return [n for n in self.members() if self.slots[n].live]

    def addresses(self) -> dict[str, str]:
        return {n: s.address for n, s in self.slots.items()}

    # -- RPCs -----------------------------------------------------------------

    def _channel(self, name: str) -> grpc.aio.Channel:
        if name not in self._channels:
            self._channels[name] = grpc.aio.insecure_channel(self.slots[name].address, options=CHANNEL_OPTIONS)
        return self._channels[name]

    async def _drop_channel(self, name: str) -> None:
        channel = self._channels.pop(name, None)
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()

    def stub(self, name: str) -> cluster_pb2_grpc.ClusterStub:
        return cluster_pb2_grpc.ClusterStub(self._channel(name))

    async def status(self, name: str, timeout: float = 1.0) -> cluster_pb2.ClusterStatusResponse | None:
        if not self.slots[name].live:
            return None
        try:
            st = await self.stub(name).Status(cluster_pb2.ClusterStatusRequest(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return None  # grpc.aio cancelled the call itself
        self.slots[name].member_id = st.header.member_id
        return st

    def name_of(self, member_id: int) -> str | None:
        for slot in self.slots.values():
            if slot.member_id == member_id and member_id:
                return slot.name
        return None

    async def statuses(self) -> dict[str, cluster_pb2.ClusterStatusResponse]:
        names = self.live()
        results = await asyncio.gather(*(self.status(n) for n in names))
        return {n: st for n, st in zip(names, results) if st is not None}

    async def leader(self) -> str | None:
        """The member claiming leadership in the highest term, if any."""
        best: tuple[int, str] | None = None
        for name, st in (await self.statuses()).items():
            if st.role == LEADER and (best is None or st.header.raft_term > best[0]):
                best = (st.header.raft_term, name)
        return best[1] if best else None

    async def wait_leader(self, timeout: float = 30.0) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            name = await self.leader()
            if name is not None:
                return name
            await asyncio.sleep(0.1)
        return None

    async def call_leader(self, method: str, request: Any, timeout: float = 10.0, attempt: float = 3.0) -> Any:
        """A Cluster RPC on the leader (following hints, retrying UNAVAILABLE); raises
        the last AioRpcError when ``timeout`` passes, or a definite one at once."""
        deadline = time.monotonic() + timeout
        target = await self.leader() or (self.live() or [None])[0]
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if target is None or not self.slots[target].live:
                live = self.live()
                if not live:
                    await asyncio.sleep(0.2)
                    continue
                target = live[int(time.monotonic() * 10) % len(live)]
            try:
                return await getattr(self.stub(target), method)(
                    request, timeout=max(0.1, min(attempt, deadline - time.monotonic()))
                )
            except grpc.aio.AioRpcError as err:
                last = err
                if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                hint = leader_hint(err)
                target = next((n for n, s in self.slots.items() if s.address == hint), None)
                if target is None:
                    await asyncio.sleep(0.1)
        if last is not None:
            raise last
        raise TimeoutError(f"{method}: no live member")

    async def member_list(self, timeout: float = 10.0) -> list[cluster_pb2.Member] | None:
        try:
            response = await self.call_leader(
                "MemberList", cluster_pb2.ClusterMemberListRequest(linearizable=True), timeout=timeout
            )
        except (grpc.aio.AioRpcError, TimeoutError):
            return None
        for m in response.members:
            if m.name in self.slots:
                self.slots[m.name].member_id = m.id
        return list(response.members)

    async def wait_caught_up(self, timeout: float = 60.0) -> str:
        """Wait until every running member has applied the leader's commit index; returns
        "" or a description of what was last seen."""
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            leader = await self.leader()
            statuses = await self.statuses()
            if leader is not None and leader in statuses:
                target = statuses[leader].commit_index
                lagging = [n for n in self.live() if n not in statuses or statuses[n].applied_index < target]
                if not lagging:
                    return ""
                seen = f"leader {leader} commit {target}; behind: " + ", ".join(
                    f"{n}@{statuses[n].applied_index if n in statuses else '?'}" for n in lagging
                )
            else:
                seen = "no leader; " + ", ".join(
                    f"{n}: role {st.role} term {st.header.raft_term} leader {self.name_of(st.leader) or st.leader}"
                    for n, st in statuses.items()
                )
            await asyncio.sleep(0.2)
        return seen or "no answer"
