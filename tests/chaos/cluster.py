"""coord-server processes for the chaos runner, every peer link through a fault proxy.

``ChaosCluster`` owns a pool of member slots (n1..nN, N = the most members the run may
have); the first ``initial`` found the cluster, the others wait for the membership
nemesis to add them. Every slot has its client address (its real ``--listen``) and, for
every other slot, a proxy port: member A is started with ``--peer-override B=<proxy A->B>``
for every B, including members that do not exist yet, so a joiner is reached through
its proxies too.

Everything is async (the proxies run on the same loop); processes are plain Popen
children, killed by pid only, and asked to die with this process (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from coord.v1 import cluster_pb2, cluster_pb2_grpc
from tests.integration.harness import free_ports

from .proxy import Mesh
from .spawn import spawn
from .workloads import CHANNEL_OPTIONS, leader_hint

LEADER = cluster_pb2.RAFT_ROLE_LEADER


@dataclass
class Slot:
    name: str
    port: int
    data_dir: Path
    log_path: Path
    args: list[str]
    state: str = "free"
    """``member`` (in the cluster, or joining: has data, should run) or ``free``."""
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    member_id: int = 0
    starts: int = 0
    reported: Any = None
    """The process whose unexpected exit was reported already."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def live(self) -> bool:
        return self.running and not self.paused


class ChaosCluster:
    def __init__(self, base_dir: Path, initial: int = 3, slots: int = 5, options: tuple[str, ...] = ()) -> None:
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.initial = initial
        self.options = list(options)
        names = [f"n{i + 1}" for i in range(slots)]
        ports = free_ports(slots + Mesh.ports_needed(slots))
        self.slots = {
            n: Slot(n, ports[i], self.base_dir / n, self.base_dir / f"{n}.log", [])
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
            if slot.proc is not None and slot.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    slot.proc.wait(timeout=10)
        await self.mesh.close()

    # -- processes ------------------------------------------------------------

    def start_node(self, name: str) -> None:
        slot = self.slots[name]
        if slot.running:
            return
        slot.starts += 1
        with open(slot.log_path, "ab") as log:
            log.write(f"---- chaos: start #{slot.starts} of {name}: {' '.join(slot.args)}\n".encode())
            log.flush()
            slot.proc = spawn(
                [sys.executable, "-m", "coord_server.cli", *slot.args],
                cwd=self.base_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        slot.paused = False

    async def kill(self, name: str) -> None:
        slot = self.slots[name]
        if slot.proc is None or slot.proc.poll() is not None:
            return
        os.kill(slot.proc.pid, signal.SIGKILL)
        while slot.proc.poll() is None:
            await asyncio.sleep(0.01)
        slot.paused = False

    def pause(self, name: str) -> None:
        slot = self.slots[name]
        if slot.running and not slot.paused:
            os.kill(slot.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            slot.paused = True

    def resume(self, name: str) -> None:
        slot = self.slots[name]
        if slot.running and slot.paused:
            os.kill(slot.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
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
