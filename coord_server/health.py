"""grpc.health.v1 for a member: SERVING only while it can serve clients.

Probes (the Dockerfile HEALTHCHECK, Kubernetes, ``coordctl endpoint health``) ask health
and nothing else, so they need no token (health is OPEN in coord_server/auth/rules.py)
and learn nothing but one status. The overall status ("") and that of every public
service are SERVING while the member

- runs (its node has not failed: a storage error stops it),
- is a member (a voter or learner of the configuration it applied; a removed member,
  or a joiner not yet caught up, is NOT_SERVING), and
- knows a leader (without one no write and no linearizable read can succeed).

coord.raft.v1.Raft is SERVING while the process runs: peers reach it with or without a
leader. The status is re-evaluated every ``INTERVAL`` seconds and set on change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from grpc_health.v1 import health, health_pb2

from coord_server.auth.rules import Access, SERVICE_RULES

if TYPE_CHECKING:
    from coord_server.node import Node

log = logging.getLogger("coord.health")

INTERVAL = 0.1
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
ALWAYS_SERVING = ("coord.raft.v1.Raft",)


def can_serve(node: Node) -> tuple[bool, str]:
    """Whether ``node`` can serve clients now, and if not, why."""
    if node.failed is not None:
        return False, "the member has failed"
    core = node.core
    if node.id not in core.voters and node.id not in core.learners:
        return False, "not a member of the cluster (removed, or not caught up yet)"
    if not node.leader_id:
        return False, "no leader"
    return True, ""


class HealthServicer(health.aio.HealthServicer):
    """grpc's servicer, NOT_SERVING until told otherwise (grpc's starts SERVING), with
    List (grpc's answers UNIMPLEMENTED and logs an error)."""

    def __init__(self) -> None:
        super().__init__()
        # grpc's servicer keeps the statuses in _server_status, which its stubs do not declare.
        self._server_status[""] = NOT_SERVING  # type: ignore[attr-defined]

    async def List(self, request: Any, context: Any) -> Any:
        statuses = self._server_status.items()  # type: ignore[attr-defined]  # (see __init__)
        # types-grpcio-health-checking predates List: its health_pb2 stub has no HealthListResponse.
        return health_pb2.HealthListResponse(  # type: ignore[attr-defined]
            statuses={name: health_pb2.HealthCheckResponse(status=status) for name, status in statuses}
        )


class MemberHealth:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.servicer = HealthServicer()
        self._services: list[str] = []
        self._serving: bool | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, registries: Mapping[str, Any]) -> None:
        """Start tracking every public service the ``registries`` (RecordingServer per
        port) serve."""
        names = {name for registry in registries.values() for name in registry.services()}
        self._services = sorted(n for n in names if SERVICE_RULES.get(n) is Access.PUBLIC)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="health")

    async def _run(self) -> None:
        for name in ALWAYS_SERVING:
            await self.servicer.set(name, SERVING)
        while True:
            serving, why = can_serve(self.node)
            if serving != self._serving:
                if self._serving is not None:
                    log.info("health: %s", "SERVING" if serving else f"NOT_SERVING ({why})")
                self._serving = serving
                status = SERVING if serving else NOT_SERVING
                for name in ("", *self._services):
                    await self.servicer.set(name, status)
            await asyncio.sleep(INTERVAL)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.servicer.enter_graceful_shutdown()
