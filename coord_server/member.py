"""The member as the services see it: a typed face over the node and its hubs.

``Member`` is everything a service (coord_server/services, coord_server/etcd, the auth
checks) may ask of the member it runs on: its identity and settings, who leads, the
applied state, a way to propose and to wait for a read point, the leader's lease clocks,
forwarding to the leader, and the hubs that feed waiting calls. It is built once in
server.py (``NodeMember``) and handed to every service.

Rule 1: services hold a ``Member``, never the ``Node``: the Raft core, the storage and
        the transport stay behind this face (tests/test_layers.py fails on a service that
        reaches for them, mypy --strict on one that asks for anything not listed here).
Rule 2: everything here is either a read of applied or advisory status (it may change at
        the next await) or goes through the node's Ready loop (proposals, read points,
        membership changes); nothing bypasses the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from coord.raft.v1 import command_pb2

if TYPE_CHECKING:
    from coord_server.coord_hub import CoordHub
    from coord_server.lease_timer import LeaseTimers
    from coord_server.node import Node, NodeConfig
    from coord_server.raft import ConfChange
    from coord_server.raft.core import Status
    from coord_server.raft.messages import ConfState
    from coord_server.state import StateMachine
    from coord_server.watch import WatchHub


@dataclass(frozen=True)
class StorageStatus:
    """What Cluster.Status reports of this member's disk."""

    snapshot_index: int
    snapshot_term: int
    log_bytes: int
    snapshot_bytes: int


class Proposer(Protocol):
    """The two calls a batcher of proposals and read points needs."""

    def submit(self, data: bytes, timeout: float | None = None, *, lazy: bool = False) -> asyncio.Future[Any]: ...

    def read_barrier_future(self) -> asyncio.Future[None]: ...


class Batcher(Protocol):
    """Unary writes and read points sharing batches (services/unary_batch.py)."""

    def submit(self, data: bytes, timeout: float) -> asyncio.Future[Any]: ...

    def read_barrier(self, timeout: float) -> asyncio.Future[Any]: ...


class Member(Proposer, Protocol):
    """What a service may ask of the member it runs on (module rules)."""

    # ---------------------------------------------------------------- identity, settings

    @property
    def id(self) -> int: ...

    @property
    def config(self) -> NodeConfig: ...

    @property
    def peers_authenticated(self) -> bool:
        """Whether this member's peer service admits only authenticated peers (Auth.Enable
        refuses otherwise)."""
        ...

    # ---------------------------------------------------------------- status (advisory)

    @property
    def is_leader(self) -> bool: ...

    @property
    def leader_id(self) -> int: ...

    def leader_address(self) -> str: ...

    def address_of(self, node_id: int) -> str: ...

    @property
    def term(self) -> int: ...

    @property
    def commit_index(self) -> int: ...

    @property
    def applied_index(self) -> int: ...

    @property
    def failed(self) -> BaseException | None: ...

    @property
    def stopping(self) -> bool: ...

    def raft_status(self) -> Status: ...

    def conf_state(self) -> ConfState: ...

    def storage_status(self) -> StorageStatus: ...

    def transfer_target(self) -> int | None:
        """The most up-to-date other voter (by its acknowledged index), on a leader."""
        ...

    def learner_caught_up(self, node_id: int, slack: int = 100) -> bool: ...

    # ---------------------------------------------------------------- applied state

    @property
    def state(self) -> StateMachine:
        """The state machine as applied on this member (replaced by a snapshot install:
        read it again after an await rather than keeping it)."""
        ...

    # ---------------------------------------------------------------- writes

    def propose(self, command: command_pb2.Command, timeout: float | None = None) -> Awaitable[command_pb2.CommandResult]: ...

    def propose_local(self, data: bytes) -> Awaitable[command_pb2.CommandResult]: ...

    def propose_local_many(self, datas: list[bytes]) -> Awaitable[list[command_pb2.CommandResult]]: ...

    def propose_conf_change(self, change: ConfChange) -> Awaitable[int]: ...

    def transfer_leadership(self, target: int) -> None: ...

    def forward(self, to: int, kind: int, payload: bytes, timeout: float | None) -> Awaitable[bytes]:
        """Send a request of ``kind`` to member ``to`` (the leader) over the peer link."""
        ...

    # ---------------------------------------------------------------- reads

    def read_barrier(self) -> Awaitable[None]: ...

    def wait_applied(self, index: int) -> Awaitable[None]: ...

    def applied_future(self, index: int) -> asyncio.Future[None]: ...

    # ---------------------------------------------------------------- leases (leader)

    @property
    def lease_timers(self) -> LeaseTimers: ...

    def lease_remaining(self, lease_id: int) -> float | None: ...

    def leadership_confirmed(self) -> asyncio.Future[None]:
        """Resolved once a quorum round begun after the call confirmed this member's
        leadership, without waiting for the apply (read_waits.py Rule 5): renewals."""
        ...

    # ---------------------------------------------------------------- hubs

    @property
    def watch_hub(self) -> WatchHub: ...

    @property
    def coord_hub(self) -> CoordHub: ...

    @property
    def unary_batcher(self) -> Batcher: ...


class NodeMember:
    """The ``Member`` of one ``Node``, with the hubs built for it (server.py)."""

    def __init__(
        self,
        node: Node,
        watch_hub: WatchHub,
        coord_hub: CoordHub,
        batcher: Callable[[Proposer], Batcher],
        *,
        peers_authenticated: bool = True,
    ) -> None:
        """``batcher``: makes the unary batcher over this member (services.UnaryBatcher)."""
        self._node = node
        # What never changes is a plain attribute, and the node's own calls are bound
        # once: the services' hot paths read them on every request.
        self.id = node.id
        self.config = node.config
        self.peers_authenticated = peers_authenticated
        self.lease_timers = node.lease_timers
        self.watch_hub = watch_hub
        self.coord_hub = coord_hub
        self.submit = node.submit
        self.read_barrier_future = node.read_barrier_future
        self.read_barrier = node.read_barrier
        self.leadership_confirmed = node.leadership_confirmed
        self.propose = node.propose
        self.applied_future = node.applied_future
        self.unary_batcher = batcher(self)

    # status

    @property
    def is_leader(self) -> bool:
        return self._node.is_leader

    @property
    def leader_id(self) -> int:
        return self._node.leader_id

    def leader_address(self) -> str:
        return self._node.leader_address()

    def address_of(self, node_id: int) -> str:
        return self._node.address_of(node_id)

    @property
    def term(self) -> int:
        return self._node.core.term

    @property
    def commit_index(self) -> int:
        return self._node.core.log.committed

    @property
    def applied_index(self) -> int:
        return self._node.applied_index

    @property
    def failed(self) -> BaseException | None:
        return self._node.failed

    @property
    def stopping(self) -> bool:
        return self._node.stopping

    def raft_status(self) -> Status:
        return self._node.core.status()

    def conf_state(self) -> ConfState:
        return self._node.core.conf_state()

    def storage_status(self) -> StorageStatus:
        storage = self._node.storage
        snapshot = storage.snapshot()
        usage = getattr(storage, "disk_usage", None)
        if usage is not None:
            sizes = usage()
            log_bytes, snapshot_bytes = sizes.get("wal_bytes", 0), sizes.get("snapshot_bytes", 0)
        else:  # an in-memory log: the sizes of what it holds
            log_bytes, snapshot_bytes = 0, len(snapshot.data or b"")
        return StorageStatus(snapshot.meta.index, snapshot.meta.term, log_bytes, snapshot_bytes)

    def transfer_target(self) -> int | None:
        return transfer_target(self._node)

    def learner_caught_up(self, node_id: int, slack: int = 100) -> bool:
        return self._node.learner_caught_up(node_id, slack)

    # applied state

    @property
    def state(self) -> StateMachine:
        return self._node.state

    # writes

    def propose_local(self, data: bytes) -> Awaitable[command_pb2.CommandResult]:
        return self._node.propose_local(data)

    def propose_local_many(self, datas: list[bytes]) -> Awaitable[list[command_pb2.CommandResult]]:
        return self._node.propose_local_many(datas)

    def propose_conf_change(self, change: ConfChange) -> Awaitable[int]:
        return self._node.propose_conf_change(change)

    def transfer_leadership(self, target: int) -> None:
        self._node.transfer_leadership(target)

    def forward(self, to: int, kind: int, payload: bytes, timeout: float | None) -> Awaitable[bytes]:
        return self._node.transport.forward(to, kind, payload, timeout)

    # reads

    def wait_applied(self, index: int) -> Awaitable[None]:
        return self._node.wait_applied(index)

    # leases

    def lease_remaining(self, lease_id: int) -> float | None:
        return self._node.lease_remaining(lease_id)


def transfer_target(node: Node) -> int | None:
    """The voter other than ``node`` whose log is furthest along (by the leader's view of
    its acknowledged index): the one to hand leadership to. None when there is none."""
    status = node.core.status()
    candidates = [
        (p.match, nid) for nid, p in status.progress.items()
        if nid != node.id and nid in status.conf_state.voters
    ]
    return max(candidates)[1] if candidates else None
