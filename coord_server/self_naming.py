"""A member that etcd's MemberAdd added (without a name) names itself once it runs.

etcd adds a member by its peer URL alone; the new member joins (``--join``) by adopting
that entry, which needs no commit: with a voter added and one other voter down, the
cluster commits nothing until the new member runs, so it must be able to start first.
Once it runs, this task asks the cluster to complete the entry with the member's name
and client address (ClusterService Rule 5, a MemberAdd naming it), as an etcd member
publishes its own attributes after it starts. It retries until the name is in the
applied member table, also after a restart, and stops for good once it is (every member
named at its start, founder or joiner, stops at the first look).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("coord.self_naming")


class SelfNaming:
    """Completes this member's entry through ``name_me`` while it has no name."""

    def __init__(self, node: Any, name_me: Callable[[], Awaitable[Any]], interval: float = 1.0) -> None:
        self.node = node
        self.name_me = name_me
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="self-naming")

    def _named(self) -> bool | None:
        """Whether this member's entry has a name; None while no entry is applied here."""
        node = self.node
        for member in node.state.members():
            if member.id == node.id:
                return bool(member.name)
        return None

    async def _run(self) -> None:
        while True:
            named = self._named()
            if named:
                return
            if named is not None and self.node.leader_id:
                try:
                    await self.name_me()
                    log.info("named this member in the cluster's member table")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - retried: the cluster may lack a quorum yet
                    log.info("naming this member failed (%s); retrying", exc)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
