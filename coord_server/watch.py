"""WatchHub: the member's watchers, fed by the state machine, served over KV.Watch streams.

Every Watch stream (``serve``) carries any number of watchers. The hub listens to the state
machine (``StateMachine.add_listener``), which calls it synchronously with each applied
revision's events, and queues each watcher's share on its stream; the stream's writer
sends the queue in order.

Rule 1: one ordered queue per stream. Creation acknowledgements, events, progress
        notifications and cancellations of all the stream's watchers go through it in the
        order they happened, so a watcher's "created" precedes its events, its events come
        in revision order, a progress notification follows every event it covers, and its
        "canceled" is its last response.
Rule 2: no gaps, no duplicates. A watcher that starts in the past gets its history
        (``events_since``) queued and is registered for live events in the same
        synchronous step, with no await in between, so no revision is applied in the
        gap. When a snapshot replaces the state (``Node.add_state_listener``), every
        watcher is caught up from the new state's history, from the revision after the
        last one the hub dispatched, before the hub listens to the new state; a watcher
        whose next revision was compacted away is cancelled with compacted_revision.
Rule 3: every response holds whole revisions: all events of one revision go in one
        response. Consecutive revisions of one watcher are merged up to
        ``max_response_bytes``; a single larger revision is sent whole.
Rule 4: bounded memory. Live events queued for a watcher and not yet written count
        against ``max_pending_events`` / ``max_pending_bytes``; a watcher that would pass
        either (its client reads too slowly) is cancelled with a cancel_reason that names
        the revision to resume from, after the events already queued, instead of
        buffering without bound. History replays are bounded by the kept history and do
        not count.
Rule 5: header.revision of a response is the revision up to which the watcher has
        received every event once it has processed that response (watch.proto).
Rule 6: a stream ends with UNAVAILABLE when the member has had no leader for
        ``leaderless_timeout`` seconds (its events would silently stop) or stops.
Rule 7: memory per watcher stays small (etcd's watch-memory target is under 1 KB per
        watching, at O(100k) watchers): a key's only watcher sits in the index itself
        (a set only from the second), and a single-key watcher holds no span, and no
        clock unless it asked for progress notifications.
Rule 8: the housekeeping tick visits only the watchers that asked for progress
        notifications: scanning 30,000 watchers of a member three times a second held its
        loop for milliseconds each time, in every event's latency.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from coord.v1 import common_pb2, kv_pb2
from coord_server.errors import CoordError, ResourceExhausted, Stopping, Unavailable
from coord_server.state import keys as keyspan
from coord_server.errors import Compacted, CoordError
from coord_server.state.limits import MAX_KEY_BYTES

if TYPE_CHECKING:
    from coord_server.node import Node

log = logging.getLogger("coord.watch")

_PUT = common_pb2.EVENT_TYPE_PUT
_DELETE = common_pb2.EVENT_TYPE_DELETE
_FILTERS = {kv_pb2.WATCH_FILTER_TYPE_NO_PUT, kv_pb2.WATCH_FILTER_TYPE_NO_DELETE}

DEFAULT_PROGRESS_INTERVAL = 600.0
"""Idle time after which a progress_notify watcher gets a progress notification (about
every 10 minutes, as etcd and watch.proto say)."""
DEFAULT_MAX_PENDING_EVENTS = 10_000
DEFAULT_MAX_PENDING_BYTES = 64 << 20
DEFAULT_MAX_RESPONSE_BYTES = 1 << 20


def _event_size(e: common_pb2.Event) -> int:
    return e.ByteSize() + 8


class _Watcher:
    __slots__ = (
        "id", "stream", "key", "range_end", "span", "single", "start_revision", "prev_kv",
        "no_put", "no_delete", "progress_notify", "pending_events", "pending_bytes",
        "last_sent", "canceled",
    )

    def __init__(self, stream: _Stream, watch_id: int, req: kv_pb2.WatchCreateRequest, start: int) -> None:
        self.id = watch_id
        self.stream = stream
        self.key = req.key
        self.single = not req.range_end
        # Rule 7: a single-key watcher keeps no range, no span and no clock of its own.
        self.range_end = req.range_end if not self.single else b""
        self.span = keyspan.span(req.key, req.range_end) if not self.single else None
        self.start_revision = start
        self.prev_kv = req.prev_kv
        self.no_put = kv_pb2.WATCH_FILTER_TYPE_NO_PUT in req.filters
        self.no_delete = kv_pb2.WATCH_FILTER_TYPE_NO_DELETE in req.filters
        self.progress_notify = req.progress_notify
        self.pending_events = 0
        self.pending_bytes = 0
        self.last_sent = time.monotonic() if req.progress_notify else 0.0
        self.canceled = False

    def select(self, events: list[common_pb2.Event]) -> list[common_pb2.Event]:
        """The events this watcher wants, of those already known to concern its keys."""
        if not (self.no_put or self.no_delete):
            return events
        return [e for e in events if not ((self.no_put and e.type == _PUT) or (self.no_delete and e.type == _DELETE))]


@dataclass(slots=True)
class _Batch:
    """The events of one revision for one watcher, waiting on its stream."""

    watcher: _Watcher
    events: list[common_pb2.Event]
    upto: int
    """header.revision once this batch is delivered (Rule 5)."""
    counted: bool
    size: int = 0


@dataclass(slots=True)
class _Control:
    watcher: _Watcher | None
    response: kv_pb2.WatchResponse
    end_with: BaseException | None = None
    """Instead of a response: end the stream with this error, after what precedes it."""


@dataclass(eq=False)
class _Stream:
    queue: deque[_Batch | _Control] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    watchers: dict[int, _Watcher] = field(default_factory=dict)
    progress: dict[int, _Watcher] = field(default_factory=dict)
    """The watchers that asked for progress notifications (Rule 8)."""
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    failure: BaseException | None = None

    def push(self, item: _Batch | _Control) -> None:
        self.queue.append(item)
        self.wake.set()

    def fail(self, error: BaseException) -> None:
        if self.failure is None:
            self.failure = error
        self.wake.set()


class WatchHub:
    """The watchers of one member. Create once per node, before serving."""

    def __init__(
        self,
        node: Node,
        *,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        max_pending_events: int = DEFAULT_MAX_PENDING_EVENTS,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        leaderless_timeout: float | None = None,
    ) -> None:
        self.node = node
        self.progress_interval = progress_interval
        self.max_pending_events = max_pending_events
        self.max_pending_bytes = max_pending_bytes
        self.max_response_bytes = max_response_bytes
        self.max_watchers_per_stream = 0
        """Watchers one stream may hold; past it the stream ends with RESOURCE_EXHAUSTED
        (0: no limit; set by the server from --max-watches-per-stream)."""
        self.leaderless_timeout = (
            leaderless_timeout if leaderless_timeout is not None else 3 * node.config.election_timeout
        )
        self._streams: set[_Stream] = set()
        self._by_key: dict[bytes, _Watcher | set[_Watcher]] = {}
        """Single-key watchers by key: the watcher itself while it is the key's only one,
        a set from the second on (Rule 7)."""
        self._ranges: set[_Watcher] = set()
        self._state: Any = node.state
        self._listening = False
        self._ticker: asyncio.Task[None] | None = None
        self._leaderless_since: float | None = None
        self._closed = False
        node.add_state_listener(self._on_state_replaced)

    # ------------------------------------------------------------------ state machine side

    def _listen(self, on: bool) -> None:
        """Listen to the state machine only while some watcher exists: it builds events
        only for listeners, which costs every write something. Every event up to
        ``state.revision`` has been dispatched whenever the hub listens, since listeners
        run inside ``apply``."""
        if on and not self._listening:
            self._state.add_listener(self._on_events)
        elif not on and self._listening:
            self._state.remove_listener(self._on_events)
        self._listening = on

    def _on_events(self, revision: int, events: list[common_pb2.Event]) -> None:
        wanted: dict[_Watcher, list[common_pb2.Event]] = {}
        by_key, ranges = self._by_key, self._ranges
        for e in events:
            k = e.kv.key
            ws = by_key.get(k)
            if ws is not None:
                if isinstance(ws, _Watcher):
                    wanted.setdefault(ws, []).append(e)
                else:
                    for w in ws:
                        wanted.setdefault(w, []).append(e)
            for w in ranges:
                if keyspan.contains(w.span, k):  # type: ignore[arg-type]  # a range watcher has one
                    wanted.setdefault(w, []).append(e)
        for w, evs in wanted.items():
            if revision >= w.start_revision:
                self._deliver(w, revision, w.select(evs), counted=True)

    def _on_state_replaced(self, state: Any) -> None:
        """Rule 2: catch every watcher up from the new state, then follow it."""
        old = self._state
        listening = self._listening
        self._listen(False)
        self._state = state
        after = old.revision
        for w in list(self._all_watchers()):
            start = max(w.start_revision, after + 1)
            try:
                events = state.events_since(start, w.key, w.range_end)
            except Compacted as err:
                self._cancel(w, f"the watcher's next revision {start} was compacted while the member "
                                f"installed a snapshot", compacted_revision=err.compact_revision)
                continue
            self._replay(w, events, state.revision, counted=False)
        self._listen(listening and bool(self._by_key or self._ranges))

    def _all_watchers(self) -> list[_Watcher]:
        out = list(self._ranges)
        for ws in self._by_key.values():
            if isinstance(ws, _Watcher):
                out.append(ws)
            else:
                out.extend(ws)
        return out

    # ------------------------------------------------------------------ delivery

    def _deliver(self, w: _Watcher, revision: int, events: list[common_pb2.Event], counted: bool) -> None:
        if not events or w.canceled:
            return
        size = sum(_event_size(e) for e in events)
        if counted:
            if (w.pending_events + len(events) > self.max_pending_events
                    or w.pending_bytes + size > self.max_pending_bytes):
                self._cancel(
                    w,
                    f"the watcher fell too far behind ({w.pending_events} events, {w.pending_bytes} bytes "
                    f"not yet read by the client); watch again from revision {revision}",
                )
                return
            w.pending_events += len(events)
            w.pending_bytes += size
        w.stream.push(_Batch(w, events, revision, counted, size))

    def _replay(self, w: _Watcher, events: list[common_pb2.Event], current: int, counted: bool) -> None:
        """Queue ``events`` (several revisions, in order) for ``w``, one batch per revision;
        the last batch covers everything up to ``current``."""
        group: list[common_pb2.Event] = []
        rev = 0
        for e in events:
            r = e.kv.mod_revision
            if group and r != rev:
                self._deliver(w, rev, w.select(group), counted)
                group = []
            rev = r
            group.append(e)
        if group:
            self._deliver(w, current, w.select(group), counted)

    def _register(self, w: _Watcher) -> None:
        if w.single:
            by_key = self._by_key
            ws = by_key.get(w.key)
            if ws is None:
                by_key[w.key] = w
            elif isinstance(ws, _Watcher):
                by_key[w.key] = {ws, w}
            else:
                ws.add(w)
        else:
            self._ranges.add(w)
        self._listen(True)

    def _unregister(self, w: _Watcher) -> None:
        if w.single:
            by_key = self._by_key
            ws = by_key.get(w.key)
            if ws is w:
                del by_key[w.key]
            elif ws is not None and not isinstance(ws, _Watcher):
                ws.discard(w)
                if len(ws) == 1:
                    by_key[w.key] = next(iter(ws))
        else:
            self._ranges.discard(w)
        w.stream.watchers.pop(w.id, None)
        w.stream.progress.pop(w.id, None)
        if not (self._by_key or self._ranges):
            self._listen(False)

    def _cancel(self, w: _Watcher, reason: str, compacted_revision: int = 0) -> None:
        """Stop ``w``; its "canceled" response follows whatever is queued for it."""
        if w.canceled:
            return
        w.canceled = True
        self._unregister(w)
        response = kv_pb2.WatchResponse(
            watch_id=w.id, canceled=True, cancel_reason=reason, compacted_revision=compacted_revision
        )
        w.stream.push(_Control(w, response))

    def _header(self, revision: int) -> common_pb2.ResponseHeader:
        node = self.node
        return common_pb2.ResponseHeader(
            cluster_id=node.config.cluster_id, member_id=node.config.node_id,
            revision=revision, raft_term=node.core.term,
        )

    # ------------------------------------------------------------------ requests

    def _create(self, stream: _Stream, req: kv_pb2.WatchCreateRequest) -> None:
        state = self._state
        current = state.revision
        if req.watch_id < 0:
            self._refuse(stream, -1, f"watch_id must not be negative, got {req.watch_id}")
            return
        if req.watch_id:
            watch_id = req.watch_id
            if watch_id in stream.watchers:
                self._refuse(stream, watch_id, f"watch_id {watch_id} is already in use on this stream")
                return
        else:
            watch_id = next(stream.ids)
            while watch_id in stream.watchers:
                watch_id = next(stream.ids)
        if self.max_watchers_per_stream and len(stream.watchers) >= self.max_watchers_per_stream:
            # In the stream's order (Rule 1): the acknowledgements queued before go out first.
            stream.push(_Control(None, kv_pb2.WatchResponse(), end_with=ResourceExhausted(
                f"this Watch stream holds {len(stream.watchers)} watchers, the limit "
                f"(--max-watches-per-stream); cancel watchers or open another stream"
            )))
            return
        reason = _invalid(req)
        if reason:
            self._refuse(stream, watch_id, reason)
            return
        start = req.start_revision if req.start_revision > 0 else current + 1
        history: list[common_pb2.Event] = []
        if start <= current:
            try:
                history = state.events_since(start, req.key, req.range_end)
            except Compacted as err:
                self._refuse(stream, watch_id, str(err), compacted_revision=err.compact_revision)
                return
            except CoordError as err:
                self._refuse(stream, watch_id, err.message)
                return
        w = _Watcher(stream, watch_id, req, start)
        stream.watchers[watch_id] = w
        if w.progress_notify:
            stream.progress[watch_id] = w
        created = kv_pb2.WatchResponse(watch_id=watch_id, created=True)
        created.header.revision = min(start - 1, current)
        stream.push(_Control(w, created))
        if history:
            self._replay(w, history, current, counted=False)
        self._register(w)

    def _refuse(self, stream: _Stream, watch_id: int, reason: str, compacted_revision: int = 0) -> None:
        response = kv_pb2.WatchResponse(
            watch_id=watch_id, created=True, canceled=True, cancel_reason=reason,
            compacted_revision=compacted_revision,
        )
        response.header.revision = self._state.revision
        stream.push(_Control(None, response))

    def _cancel_request(self, stream: _Stream, watch_id: int) -> None:
        w = stream.watchers.get(watch_id)
        if w is None:
            response = kv_pb2.WatchResponse(
                watch_id=watch_id, canceled=True, cancel_reason=f"no watcher with id {watch_id} on this stream"
            )
            stream.push(_Control(None, response))
            return
        self._cancel(w, "")

    def _progress(self, stream: _Stream, watchers: list[_Watcher] | None = None) -> None:
        """A progress notification for ``watchers`` (default: all on the stream). Every
        event up to the dispatched revision is queued ahead of it (Rule 1)."""
        targets = list(stream.watchers.values()) if watchers is None else watchers
        # The revision now, not when the response is written: later events may be queued
        # between the two, after this response.
        header = common_pb2.ResponseHeader(revision=self._state.revision)
        if watchers is None and not targets:
            stream.push(_Control(None, kv_pb2.WatchResponse(header=header, watch_id=-1)))
            return
        for w in targets:
            stream.push(_Control(w, kv_pb2.WatchResponse(header=header, watch_id=w.id)))

    def _handle(self, stream: _Stream, req: kv_pb2.WatchRequest) -> None:
        which = req.WhichOneof("request_union")
        if which == "create_request":
            self._create(stream, req.create_request)
        elif which == "cancel_request":
            self._cancel_request(stream, req.cancel_request.watch_id)
        elif which == "progress_request":
            self._progress(stream)
        # An empty request (an unknown member of the union, from a newer client) is ignored.

    # ------------------------------------------------------------------ streams

    async def serve(self, request_iterator: AsyncIterator[kv_pb2.WatchRequest], context: Any) -> None:
        """Serve one Watch stream until the client ends it; raises CoordError (e.g.
        Unavailable) for a stream error."""
        if self._closed:
            raise Stopping("the member is stopping")
        stream = _Stream()
        self._streams.add(stream)
        self._ensure_ticker()
        reader = asyncio.create_task(self._read(stream, request_iterator))
        try:
            while True:
                await stream.wake.wait()
                stream.wake.clear()
                if stream.failure is not None:
                    raise stream.failure
                while stream.queue:
                    head = stream.queue[0]
                    if isinstance(head, _Control) and head.end_with is not None:
                        raise head.end_with
                    await context.write(self._next_response(stream))
                    if stream.failure is not None:
                        raise stream.failure
        finally:
            reader.cancel()
            self._streams.discard(stream)
            for w in list(stream.watchers.values()):
                w.canceled = True
                self._unregister(w)

    async def _read(self, stream: _Stream, request_iterator: AsyncIterator[kv_pb2.WatchRequest]) -> None:
        try:
            async for req in request_iterator:
                self._handle(stream, req)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the client went away, or a bug
            if not isinstance(exc, (grpc.aio.AioRpcError, grpc.aio.UsageError, CoordError)):  # CoordError: a refusal
                log.exception("watch stream reader failed")
            stream.fail(exc if isinstance(exc, CoordError) else Unavailable(f"the watch stream broke: {exc}"))
        # The client half-closed: the watchers it created go on until it cancels the call.

    def _next_response(self, stream: _Stream) -> kv_pb2.WatchResponse:
        item = stream.queue.popleft()
        now = time.monotonic()
        if isinstance(item, _Control):
            response = item.response
            response.header.CopyFrom(self._header(response.header.revision))
            if item.watcher is not None and item.watcher.progress_notify:
                item.watcher.last_sent = now
            return response
        w = item.watcher
        response = kv_pb2.WatchResponse(watch_id=w.id)
        size = 0
        upto = item.upto
        while True:
            response.events.extend(item.events)
            size += item.size
            upto = item.upto
            if item.counted:
                w.pending_events -= len(item.events)
                w.pending_bytes -= item.size
            nxt = stream.queue[0] if stream.queue else None
            if not (isinstance(nxt, _Batch) and nxt.watcher is w and size + nxt.size <= self.max_response_bytes):
                break
            stream.queue.popleft()
            item = nxt
        if not w.prev_kv:
            for e in response.events:
                e.ClearField("prev_kv")
        response.header.CopyFrom(self._header(upto))
        if w.progress_notify:
            w.last_sent = now
        return response

    # ------------------------------------------------------------------ housekeeping

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick_loop(), name="watch-hub")

    async def _tick_loop(self) -> None:
        interval = max(0.01, min(1.0, self.progress_interval / 4, self.leaderless_timeout / 3))
        while self._streams and not self._closed:
            await asyncio.sleep(interval)
            try:
                self.tick(time.monotonic())
            except Exception:  # noqa: BLE001 - never let housekeeping die silently
                log.exception("watch hub tick failed")

    def tick(self, now: float) -> None:
        """Progress notifications for idle watchers; end the streams of a member that lost
        its leader (Rule 6) or stopped."""
        node = self.node
        if node.failed is not None:
            self._fail_all(Stopping(f"the member stopped: {node.failed}"))
            return
        if node.leader_id:
            self._leaderless_since = None
        elif self._leaderless_since is None:
            self._leaderless_since = now
        elif now - self._leaderless_since >= self.leaderless_timeout:
            self._fail_all(Unavailable("the member has no leader; watch through another member"))
            return
        for stream in list(self._streams):
            if stream.queue:
                continue  # not idle: the client has responses to read
            idle = [
                w for w in stream.progress.values()
                if not w.canceled and now - w.last_sent >= self.progress_interval
            ]
            if idle:
                for w in idle:
                    w.last_sent = now
                self._progress(stream, idle)

    def _fail_all(self, error: CoordError) -> None:
        for stream in list(self._streams):
            stream.fail(error)

    async def close(self) -> None:
        """End every stream with UNAVAILABLE (the member is stopping)."""
        self._closed = True
        self._fail_all(Stopping("the member is stopping"))
        if self._ticker is not None:
            self._ticker.cancel()

    @property
    def watcher_count(self) -> int:
        return sum(len(s.watchers) for s in self._streams)


def _invalid(req: kv_pb2.WatchCreateRequest) -> str:
    """Why a create request is refused, or ""."""
    if not req.key:
        return "key must not be empty"
    if len(req.key) > MAX_KEY_BYTES:
        return f"key is {len(req.key)} bytes; the limit is {MAX_KEY_BYTES}"
    if len(req.range_end) > MAX_KEY_BYTES:
        return f"range_end is {len(req.range_end)} bytes; the limit is {MAX_KEY_BYTES}"
    if req.start_revision < 0:
        return f"start_revision must not be negative, got {req.start_revision}"
    for f in req.filters:
        if f not in _FILTERS:
            return f"unknown or unspecified watch filter {f}"
    return ""
