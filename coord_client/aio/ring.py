"""RingView: a local copy of a consistent-hash ring, kept current through Ring.Watch, that
answers lookups without a round trip.

    async with client.ring_view("cache") as ring:
        ring.lookup("user:42")          # ["cache-b"]: member ids, as Ring.Lookup orders them
        ring.lookup_members("user:42", 2)

Rule 1: placements are computed by ``coord_client.hashring.HashRing``, the very module the
        server's Lookup uses, from the members and settings Watch sends, so a local lookup
        equals the server's Lookup at the same ring version, key by key.
Rule 2: the view is replaced whole: a lookup sees one version, never a mix. A ring with
        many points (over LARGE_RING) is built in a worker thread.
Rule 3: the watch is reopened, with ``after_version`` set to the version held, on the
        leader named by ``coord-leader`` or the next endpoint when its member fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import grpc.aio

from coord.v1 import ring_pb2

from .. import errors
from .._transport import Backoff
from coord_common.hashring import HashRing, point_count
from ..types import RingMember, RingState, _ring_state

if TYPE_CHECKING:
    from .._transport import Transport

__all__ = ["RingView"]

log = logging.getLogger("coord_client.ring")

LARGE_RING = 50_000
"""Rings with more points than this are built off the event loop."""


def build_ring(state: RingState) -> HashRing:
    return HashRing([(m.id, m.weight) for m in state.members], int(state.hash_mode), state.vnodes)


class RingView:
    """A live local copy of ring ``name``; see the module docstring. ``start()`` (or
    ``async with``) loads the current state before returning."""

    def __init__(self, transport: Transport, name: str, *, timeout: float | None = None) -> None:
        if not name:
            raise errors.InvalidArgument("a ring needs a name")
        self._transport = transport
        self.name = name
        self._timeout = timeout
        self.state = RingState(name, 0)
        """The ring as of ``version``: settings and members."""
        self._ring = HashRing([])
        self._members: dict[str, RingMember] = {}
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._callbacks: list[Callable[[RingState], None]] = []
        self._error: BaseException | None = None
        self.reconnects = 0

    def __repr__(self) -> str:
        return f"RingView({self.name!r}, version={self.version}, members={len(self._members)})"

    @property
    def version(self) -> int:
        """The version held; 0 while the ring does not exist."""
        return self.state.version

    @property
    def members(self) -> dict[str, RingMember]:
        """Member id -> member, as of ``version``."""
        return dict(self._members)

    @property
    def ring(self) -> HashRing:
        """The HashRing of ``version`` (immutable; safe to keep)."""
        return self._ring

    # -- lookups (no I/O) --------------------------------------------------------------

    def lookup(self, key: bytes | str, n: int = 1) -> list[str]:
        """The ids of the first ``n`` distinct members for ``key``, in preference order
        (all members when the ring has fewer; [] for an empty ring)."""
        return self._ring.lookup(key, n)

    def lookup_members(self, key: bytes | str, n: int = 1) -> list[RingMember]:
        """As ``lookup``, with each member's address, weight and lease."""
        ring, members = self._ring, self._members
        return [members[m] for m in ring.lookup(key, n)]

    def on_change(self, callback: Callable[[RingState], None]) -> None:
        """Call ``callback(state)`` on the event loop after every new version."""
        self._callbacks.append(callback)

    async def wait_for_version(self, version: int, timeout: float | None = None) -> RingState:
        """Wait until the view holds ``version`` or a later one."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: self.version >= version or self._error is not None)
        if self._error is not None and self.version < version:
            raise self._error
        return self.state

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> RingView:
        if self._task is None:
            first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._task = asyncio.get_running_loop().create_task(self._follow(first), name=f"coord-ring-{self.name}")
            try:
                async with asyncio.timeout(self._transport.timeout if self._timeout is None else self._timeout):
                    await asyncio.shield(first)
            except TimeoutError:
                await self.close()
                raise errors.DeadlineExceeded(f"could not load ring {self.name!r} in time") from None
            except BaseException:
                await self.close()
                raise
        return self

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    async def __aenter__(self) -> RingView:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _apply(self, state: RingState) -> None:
        if point_count([m.weight for m in state.members], int(state.hash_mode), state.vnodes) > LARGE_RING:
            ring = await asyncio.to_thread(build_ring, state)
        else:
            ring = build_ring(state)
        self._ring, self._members, self.state = ring, {m.id: m for m in state.members}, state
        for callback in self._callbacks:
            try:
                callback(state)
            except Exception:  # noqa: BLE001
                log.exception("on_change callback of ring %r failed", self.name)
        async with self._changed:
            self._changed.notify_all()

    async def _follow(self, first: asyncio.Future[None]) -> None:
        transport = self._transport
        backoff = Backoff()
        while True:
            address = transport.pick()
            request = ring_pb2.RingWatchRequest(ring=self.name, after_version=self.version)
            call = transport.stubs(address).ring.Watch(request)
            hint = ""
            try:
                async for response in call:
                    transport.succeeded(address)
                    backoff.reset()
                    state = _ring_state(
                        self.name, response.version,
                        response.settings if response.HasField("settings") else None, response.members,
                    )
                    if state.version >= self.version or not first.done():
                        await self._apply(state)
                    if not first.done():
                        first.set_result(None)
            except grpc.aio.AioRpcError as err:
                if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                    error = errors.error_from_rpc(err)
                    self._error = error
                    if not first.done():
                        first.set_exception(error)
                    async with self._changed:
                        self._changed.notify_all()
                    return
                hint = errors.leader_hint(err)
            except asyncio.CancelledError:
                call.cancel()
                raise
            except Exception as err:  # noqa: BLE001 - reported to start(), then retried
                log.exception("ring view %r failed", self.name)
                if not first.done():
                    first.set_exception(err)
                    return
            finally:
                call.cancel()
            self.reconnects += 1
            if not transport.failed(address, hint):
                await asyncio.sleep(backoff.next())
