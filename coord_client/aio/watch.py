"""KV watches as async iterators that survive member failures.

    async with client.watch("jobs/", prefix=True) as events:
        async for event in events:
            print(event.type.name, event.key, event.value, event.revision)

Rule 1: ``revision`` is the revision up to which every event has been received (the
        header revision of the last response, watch.proto); the next event is at least
        ``revision + 1``.
Rule 2: when the stream fails (member killed, member lost its leader, member stopping,
        or the member cancelled a watcher that read too slowly), the watch is recreated
        on the leader named by ``coord-leader`` or the next endpoint, from
        ``revision + 1``. Events are delivered once, in revision order: anything at or
        below ``revision`` that a new stream repeats is dropped. No gap, no duplicate.
Rule 3: when the revision to resume from was compacted away, iteration raises
        :class:`~coord_client.errors.Compacted` with the oldest revision still
        available; read the current state and watch again from there.
Rule 4: the first stream must be created within the call's timeout; once running, the
        watch reconnects for as long as it takes (``reconnect_timeout`` bounds it).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from coord.v1 import kv_pb2

from .. import errors
from .._transport import Backoff
from ..types import Event, _event

if TYPE_CHECKING:
    from .._transport import Transport

__all__ = ["Watch"]

log = logging.getLogger("coord_client.watch")

_RECONNECT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
_WATCH_ID = 1


class Watch:
    """An async iterator of :class:`~coord_client.types.Event`; see the module docstring.
    Close it with ``cancel()`` (or ``async with``)."""

    def __init__(
        self,
        transport: Transport,
        key: bytes,
        range_end: bytes = b"",
        *,
        start_revision: int = 0,
        prev_kv: bool = False,
        no_put: bool = False,
        no_delete: bool = False,
        progress_notify: bool = False,
        timeout: float | None = None,
        reconnect_timeout: float | None = None,
    ) -> None:
        self._transport = transport
        self.key = key
        self.range_end = range_end
        self._start = start_revision
        self._prev_kv = prev_kv
        self._filters: list[Any] = []
        if no_put:
            self._filters.append(kv_pb2.WATCH_FILTER_TYPE_NO_PUT)
        if no_delete:
            self._filters.append(kv_pb2.WATCH_FILTER_TYPE_NO_DELETE)
        self._progress_notify = progress_notify
        self._timeout = timeout
        self._reconnect_timeout = reconnect_timeout
        self.revision = max(0, start_revision - 1)
        """Every event up to this revision has been received (Rule 1)."""
        self._started = False
        self._call: Any = None
        self._address = ""
        self._buffer: collections.deque[Event] = collections.deque()
        self._closed = False
        self.reconnects = 0
        """How many times the stream was recreated (Rule 2)."""

    def __repr__(self) -> str:
        return f"Watch(key={self.key!r}, range_end={self.range_end!r}, revision={self.revision})"

    # -- iteration ---------------------------------------------------------------------

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            if self._call is None:
                await self._open()
                continue
            try:
                response = await self._call.read()
            except asyncio.CancelledError:
                if self._closed:  # cancel() from elsewhere cancelled the stream
                    raise StopAsyncIteration from None
                raise
            except grpc.aio.AioRpcError as err:
                self._drop_stream()
                if self._closed:
                    raise StopAsyncIteration from None
                if err.code() not in _RECONNECT:
                    raise errors.error_from_rpc(err) from None
                log.info("watch stream to %s failed (%s); resuming from revision %d", self._address, err.code().name, self.revision + 1)
                self._transport.failed(self._address, errors.leader_hint(err))
                continue
            if response is grpc.aio.EOF:
                self._drop_stream()
                if not self._closed:
                    self._transport.failed(self._address)
                continue
            self._take(response)
        return self._buffer.popleft()

    async def start(self) -> Watch:
        """Create the watcher now (iteration does it otherwise): after this returns, no
        change is missed. Raises when the first stream cannot be created in time."""
        if self._call is None and not self._closed:
            await self._open()
        return self

    async def cancel(self) -> None:
        """Stop watching; iteration ends."""
        self._closed = True
        self._drop_stream()

    aclose = cancel

    async def __aenter__(self) -> Watch:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.cancel()

    # -- the stream --------------------------------------------------------------------

    def _drop_stream(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _take(self, response: kv_pb2.WatchResponse) -> None:
        if response.canceled:
            self._drop_stream()
            if response.compacted_revision:
                self._closed = True
                raise errors.Compacted(
                    f"watch of {errors.shown(self.key)} cannot resume from revision {self.revision + 1}: "
                    f"history before {response.compacted_revision} was compacted",
                    compacted_revision=response.compacted_revision,
                )
            if self._closed:
                return
            # Cancelled by the member (a slow reader, a stopping member): Rule 2.
            log.info("watch of %s cancelled by %s (%s); resuming", errors.shown(self.key), self._address, response.cancel_reason)
            return
        for pb in response.events:
            event = _event(pb)
            if event.revision > self.revision:
                self._buffer.append(event)
        last = self._buffer[-1].revision if self._buffer else 0
        self.revision = max(self.revision, response.header.revision, last)

    async def _open(self) -> None:
        transport = self._transport
        if not self._started:
            deadline = transport.deadline(self._timeout)
        elif self._reconnect_timeout is not None:
            deadline = time.monotonic() + self._reconnect_timeout
        else:
            deadline = float("inf")
        backoff = Backoff()
        while not self._closed:
            address = transport.pick()
            call = transport.stubs(address).kv.Watch()
            create = kv_pb2.WatchCreateRequest(
                key=self.key,
                range_end=self.range_end,
                start_revision=self.revision + 1 if self._started or self._start else 0,
                prev_kv=self._prev_kv,
                filters=self._filters,
                progress_notify=self._progress_notify,
                watch_id=_WATCH_ID,
            )
            hint = ""
            try:
                attempt = max(0.01, min(transport.attempt_timeout, deadline - time.monotonic()))
                async with asyncio.timeout(attempt):
                    await call.write(kv_pb2.WatchRequest(create_request=create))
                    response = await call.read()
                if not isinstance(response, kv_pb2.WatchResponse):
                    raise errors.Unavailable(f"{address} closed the watch stream")
                if not response.created:
                    raise errors.InternalError(f"{address} answered a watch creation with {response}")
            except grpc.aio.AioRpcError as err:
                call.cancel()
                if err.code() not in _RECONNECT:
                    raise errors.error_from_rpc(err) from None
                hint = errors.leader_hint(err)
            except (TimeoutError, errors.Unavailable):
                call.cancel()
            except BaseException:
                call.cancel()
                raise
            else:
                if response.canceled:
                    call.cancel()
                    if response.compacted_revision:
                        self._closed = True
                        raise errors.Compacted(
                            f"cannot watch {errors.shown(self.key)} from revision {create.start_revision}: history before "
                            f"{response.compacted_revision} was compacted",
                            compacted_revision=response.compacted_revision,
                        )
                    raise errors.InvalidArgument(response.cancel_reason or "the watch was refused")
                self._call = call
                self._address = address
                if self._started:
                    self.reconnects += 1
                self._started = True
                transport.succeeded(address)
                self.revision = max(self.revision, response.header.revision)
                return
            if time.monotonic() >= deadline:
                what = "create" if not self._started else "resume"
                raise errors.Unavailable(f"could not {what} the watch of {errors.shown(self.key)}: no member answered in time")
            if not transport.failed(address, hint):
                await asyncio.sleep(min(backoff.next(), max(0.0, deadline - time.monotonic())))
