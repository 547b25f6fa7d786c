"""Peer-to-peer transport over gRPC: the coord.raft.v1 Raft service, both sides.

Sending (``PeerTransport``): one long-lived client stream per peer (``Raft.Send``), fed by
a bounded queue. Everything queued while the previous write was in flight goes out as one
envelope (batching on the wire). Delivery is best effort, as Raft expects: when a stream
breaks the queue is dropped, the core is told the peer is unreachable, and the stream is
reopened with backoff. Snapshots go through ``Raft.InstallSnapshot`` in chunks, and the
outcome is reported to the core.

With ``credentials`` (peer mutual TLS, coord_server/tls.py) every channel is a TLS channel
presenting this member's peer certificate and trusting only the peer CA. Every call
carries ``metadata``: this member's id and the cluster's peer secret (peer_auth.py).

Forwarding (``PeerTransport.forward``): a follower relays client requests to the leader
over one long-lived ``Raft.Forward`` stream per peer, requests and answers matched by id
(``_ForwardStream``). A stream that breaks fails its open requests with its status
(UNAVAILABLE: the client retries; a write may have been applied, as with any lost
answer) and is reopened by the next request.

Receiving (``RaftPeerService``): the peer guard has admitted the caller (peer_auth.py);
each message must come from the member its certificate names (when verified); checks
the cluster id (refusals name no id: the caller may be a stranger), decodes and steps each message
into the node; ``Forward`` hands follower-relayed client requests to a callback, each
request concurrently, and answers each as it completes.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc

from coord.raft.v1 import raft_pb2, raft_pb2_grpc
from coord_server.errors import Code, CoordError, DeadlineExceeded, Unavailable, error_of
from coord_server.status import code_of
from coord_server.raft import LOCAL_TYPES, Message, MessageType
from coord_server.storage.errors import StorageCorruptError

from .codec import DecodeError, message_from_pb, message_to_pb
from .peer_auth import PEER_CLAIM

FOREIGN_CLUSTER = "the peer belongs to another cluster"
NOT_YOUR_MESSAGE = "a message from another member than the one the peer certificate names"

log = logging.getLogger("coord.transport")

MAX_MESSAGE_BYTES = 64 << 20
"""gRPC message size limit between peers (an envelope carries many entries)."""
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]
RECONNECT_OPTIONS = [
    # Reach a restarted peer again within a second: gRPC's default reconnect backoff grows
    # towards 120 s while the peer is down, and meanwhile the leader cannot send to it
    # (found by tests/chaos: a follower down for 30 s caught up only 16 s after restarting).
    # At most 250 ms: a restarted member learns the leader only once the leader's channel
    # reconnects, and with 1,000 ms that was up to a second of every restart (a refused
    # connection on a dead peer's port costs next to nothing to retry).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 250),
]
"""Options of the channels to peers (on top of CHANNEL_OPTIONS)."""
SERVER_OPTIONS = [
    *CHANNEL_OPTIONS,
    # Accept the peers' keepalive pings (every 10 s, even without calls); with gRPC's
    # defaults the server answers them with GOAWAY "too_many_pings" and drops the link.
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]
"""Options of a member's gRPC server, which carries the peer service."""
OLD_CHANNEL_GRACE = 60.0
"""Seconds a peer channel replaced by a certificate reload stays open for its calls."""
MAX_SEND_BACKOFF = 0.25
"""Longest pause (seconds) before a peer's stream is opened again after it broke (as the
channel's reconnect backoff above: a restarted member is reached within it)."""
SNAPSHOT_CHUNK_BYTES = 1 << 20
ENVELOPE_BYTES = 8 << 20
"""Soft limit on one envelope's entry data; a larger backlog goes in several envelopes."""


class _Peer:
    """The sending side of one peer link."""

    def __init__(self, transport: PeerTransport, node_id: int, address: str) -> None:
        self.transport = transport
        self.node_id = node_id
        self.address = address
        self.queue: list[Message] = []
        self.wake = asyncio.Event()
        self.channel: grpc.aio.Channel | None = None
        self.channel_credentials: grpc.ChannelCredentials | None = None
        self.task = asyncio.create_task(self._run(), name=f"peer-send-{node_id:x}")
        self.snapshot_task: asyncio.Task[None] | None = None
        self.forwards = _ForwardStream(self)

    def stub(self) -> raft_pb2_grpc.RaftAsyncStub:
        """A stub for a new call. After the peer certificate was reloaded, a new channel
        with the new credentials; calls open on the old one finish there, and it is
        closed after ``OLD_CHANNEL_GRACE``."""
        credentials = self.transport.credentials
        if self.channel is not None and self.channel_credentials is not credentials:
            old, self.channel = self.channel, None
            loop = asyncio.get_running_loop()
            loop.call_later(OLD_CHANNEL_GRACE, lambda: loop.create_task(old.close()))
        if self.channel is None:
            options = CHANNEL_OPTIONS + RECONNECT_OPTIONS
            self.channel_credentials = credentials
            if credentials is None:
                self.channel = grpc.aio.insecure_channel(self.address, options=options)
            else:
                self.channel = grpc.aio.secure_channel(self.address, credentials, options=options)
        return raft_pb2_grpc.RaftStub(self.channel)

    def enqueue(self, m: Message) -> None:
        if len(self.queue) >= self.transport.max_queue:
            return  # the peer is not keeping up; Raft resends what matters
        self.queue.append(m)
        self.wake.set()

    async def _run(self) -> None:
        backoff = 0.05
        call = None
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                batch = self._take_batch()
                envelope = raft_pb2.RaftEnvelope(
                    cluster_id=self.transport.cluster_id,
                    messages=[message_to_pb(m) for m in batch],
                )
                try:
                    if call is not None and self.channel_credentials is not self.transport.credentials:
                        await _retire(call)  # a reloaded certificate: go on over a new channel
                        call = None
                    if call is None:
                        call = self.stub().Send(metadata=self.transport.metadata)
                    await call.write(envelope)
                    backoff = 0.05
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError, ConnectionError) as err:
                    if call is not None:
                        call.cancel()
                    call = None
                    self.queue.clear()
                    log.debug("peer %x at %s unreachable: %s", self.node_id, self.address, err)
                    self.transport.on_unreachable(self.node_id)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_SEND_BACKOFF)

    def _take_batch(self) -> list[Message]:
        size = 0
        for i, m in enumerate(self.queue):
            size += sum(len(e.data) for e in m.entries)
            if size > ENVELOPE_BYTES and i > 0:
                batch, self.queue = self.queue[:i], self.queue[i:]
                return batch
        batch, self.queue = self.queue, []
        return batch

    def send_snapshot(self, m: Message) -> None:
        if self.snapshot_task is not None and not self.snapshot_task.done():
            return  # one snapshot at a time; the core waits for its status
        self.snapshot_task = asyncio.create_task(self._send_snapshot(m))

    async def _send_snapshot(self, m: Message) -> None:
        """Stream ``m``'s snapshot, then report how it went: every way this can end,
        the core hears of it (but when the transport closes), or it would keep the
        follower waiting for the snapshot (no more replication to it) until the next
        leader. A snapshot file found corrupt stops the member (DESIGN.md)."""
        assert m.snapshot is not None
        snapshot = m.snapshot
        digest = hashlib.sha256()
        cluster_id = self.transport.cluster_id
        failed = True
        # What stopped the pieces mid-stream: grpc.aio then cancels the call, and
        # awaiting it raises CancelledError, not this error.
        broken: BaseException | None = None
        try:
            # Read, checked and hashed piece by piece off the loop (a stored snapshot is
            # a file of hundreds of MB for a large store: storage/snapshot.py
            # FileSnapshot): the first piece goes out at once, the whole is never held.
            total, pieces = await asyncio.to_thread(_snapshot_pieces, snapshot)

            def advance() -> bytes | None:
                nonlocal broken
                try:
                    piece = next(pieces, None)
                except Exception as err:
                    broken = err
                    raise
                if piece is not None:
                    digest.update(piece)
                return piece

            async def chunks() -> AsyncIterator[raft_pb2.SnapshotChunk]:
                yield raft_pb2.SnapshotChunk(
                    cluster_id=cluster_id, message=message_to_pb(m, with_snapshot_data=False),
                    total_size=total, offset=0, done=not total, checksum=digest.digest() if not total else b"",
                )
                offset = 0
                piece = await asyncio.to_thread(advance)
                while piece is not None:
                    # One piece ahead: the file's checksum is verified when its last piece
                    # has been read, before the chunk that says "done" goes out.
                    following = await asyncio.to_thread(advance)
                    last = following is None
                    yield raft_pb2.SnapshotChunk(
                        cluster_id=cluster_id, offset=offset, data=piece, done=last,
                        checksum=digest.digest() if last else b"", total_size=total,
                    )
                    offset += len(piece)
                    piece = following

            await self.stub().InstallSnapshot(
                chunks(), timeout=max(30.0, total / (1 << 20)), metadata=self.transport.metadata
            )
            failed = False
        except StorageCorruptError as err:  # its head is bad, or the file is missing
            broken = err
        except grpc.aio.AioRpcError as err:
            if broken is None:
                log.warning("sending a snapshot to %x failed: %s", self.node_id, err.details())
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if broken is None and task is not None and task.cancelling():
                raise  # this peer is closed (the finally still reports, unless all close)
        except Exception as err:  # noqa: BLE001 - reported below like any failure
            broken = err
        finally:
            if isinstance(broken, StorageCorruptError):
                log.critical("snapshot %d is corrupt, not sent to %x: %s", snapshot.meta.index, self.node_id, broken)
                self.transport.on_corrupt(broken)
            elif broken is not None:
                log.error("sending snapshot %d to %x failed: %r", snapshot.meta.index, self.node_id, broken)
            if not self.transport.closed:
                self.transport.on_snapshot_status(self.node_id, failed)

    async def close(self) -> None:
        self.task.cancel()
        if self.snapshot_task is not None:
            self.snapshot_task.cancel()
        self.forwards.close()
        if self.channel is not None:
            await self.channel.close()


def _snapshot_pieces(snapshot: Any) -> tuple[int, Iterator[bytes]]:
    """A snapshot's length and its data in SNAPSHOT_CHUNK_BYTES pieces: read from its
    file when it has one (checked as read), else sliced from memory (the simulator's)."""
    pieces = getattr(snapshot, "pieces", None)
    if pieces is not None:
        return pieces(SNAPSHOT_CHUNK_BYTES)  # type: ignore[no-any-return]
    data = snapshot.data
    return len(data), (data[at : at + SNAPSHOT_CHUNK_BYTES] for at in range(0, len(data), SNAPSHOT_CHUNK_BYTES))


class _ForwardStream:
    """The follower's side of ``Raft.Forward`` to one peer: requests written in order
    (one write at a time, as grpc.aio requires), answers read by one task and matched by
    id. Opened on first use; after a failure the next request opens a new stream."""

    def __init__(self, peer: _Peer) -> None:
        self.peer = peer
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.call: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.write_lock = asyncio.Lock()

    async def request(self, kind: int, payload: bytes, timeout: float | None) -> bytes:
        request_id = next(self.ids)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        request = raft_pb2.ForwardRequest(
            cluster_id=self.peer.transport.cluster_id, kind=kind, payload=payload,  # type: ignore[arg-type]
            id=request_id, timeout_ms=max(1, int(timeout * 1000)) if timeout is not None else 0,
        )
        try:
            async with asyncio.timeout(timeout):
                async with self.write_lock:
                    call = self._open()
                    # Registered on the stream it is written to: a break of an earlier
                    # stream must not fail a request that this one carries.
                    self.pending[request_id] = fut
                    try:
                        await call.write(request)
                    except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError, ConnectionError) as err:
                        self._broken(call, _rpc_failure(err))
                    except asyncio.CancelledError:
                        # The deadline passed (or the caller went away) in the middle of a
                        # write, which a stalled leader never takes: the stream is closed,
                        # so that the next request opens another rather than queue behind.
                        # (This request leaves with the cancellation, not the failure.)
                        self.pending.pop(request_id, None)
                        self._broken(call, Unavailable("a write to the leader did not complete; retry"))
                        raise
                return await fut
        except (asyncio.TimeoutError, TimeoutError):
            raise DeadlineExceeded("the deadline passed before the leader answered the forwarded request") from None
        finally:
            self.pending.pop(request_id, None)

    def _open(self) -> Any:
        if self.call is not None and self.peer.channel_credentials is not self.peer.transport.credentials:
            # A reloaded certificate: new requests go over a new stream on a new channel;
            # the old stream is half-closed, so the leader answers what it carries and
            # ends it (its reader then finds it is no longer the current one).
            old, self.call = self.call, None
            asyncio.get_running_loop().create_task(_retire(old))
        if self.call is None:
            self.call = self.peer.stub().Forward(metadata=self.peer.transport.metadata)
            self.reader = asyncio.get_running_loop().create_task(
                self._read(self.call), name=f"peer-forward-{self.peer.node_id:x}"
            )
        return self.call

    async def _read(self, call: Any) -> None:
        failure: CoordError = Unavailable("the leader ended the forwarding stream; retry")
        try:
            async for response in call:
                fut = self.pending.get(response.id)
                if fut is None or fut.done():
                    continue  # its caller gave up (deadline)
                if response.code == 0:
                    fut.set_result(response.payload)
                else:
                    fut.set_exception(forwarded_error(response.code, response.message, response.leader))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError, ConnectionError) as err:
            failure = _rpc_failure(err)
        finally:  # also when the call was cancelled under the read (CancelledError)
            self._broken(call, failure)

    def _broken(self, call: Any, failure: CoordError) -> None:
        """``call`` failed or ended: fail the requests waiting on it; the next request
        opens a new stream."""
        if self.call is not call:
            return
        self.call = None
        call.cancel()
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(failure)

    def close(self) -> None:
        if self.call is not None:
            self._broken(self.call, Unavailable("the link to the leader closed; retry"))
        if self.reader is not None:
            self.reader.cancel()


async def _retire(call: Any) -> None:
    """Half-close a client stream that is being replaced; its answers still arrive."""
    try:
        await call.done_writing()
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError, ConnectionError):
        pass


class PeerTransport:
    """Sends the core's messages to peers; the node wires in the two report callbacks."""

    def __init__(
        self,
        cluster_id: int,
        on_unreachable: Callable[[int], None],
        on_snapshot_status: Callable[[int, bool], None],
        max_queue: int = 8192,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
        on_corrupt: Callable[[StorageCorruptError], None] = lambda err: None,
    ) -> None:
        self.cluster_id = cluster_id
        self.on_corrupt = on_corrupt
        """Called when a local snapshot file is found corrupt as it is sent: the member
        must stop (DESIGN.md: corruption stops the node)."""
        self.closed = False
        self.credentials = credentials
        """TLS credentials of the peer channels (None: insecure channels)."""
        self.metadata = metadata
        """Sent with every peer call: who this member is, the peer secret (peer_auth.py)."""
        self.on_unreachable = on_unreachable
        self.on_snapshot_status = on_snapshot_status
        self.max_queue = max_queue
        self._addresses: dict[int, str] = {}
        self._peers: dict[int, _Peer] = {}
        self.on_heartbeat_sent: Callable[[int], None] | None = None
        """Called with the peer's id for each heartbeat sent (metrics: peer round trips)."""

    def set_credentials(self, credentials: grpc.ChannelCredentials) -> None:
        """New TLS credentials (a reloaded peer certificate) for every call opened from now on."""
        self.credentials = credentials

    def set_address(self, node_id: int, address: str) -> None:
        if self._addresses.get(node_id) == address:
            return
        self._addresses[node_id] = address
        old = self._peers.pop(node_id, None)
        if old is not None:
            asyncio.get_running_loop().create_task(old.close())

    def remove_peer(self, node_id: int) -> None:
        self._addresses.pop(node_id, None)
        peer = self._peers.pop(node_id, None)
        if peer is not None:
            asyncio.get_running_loop().create_task(peer.close())

    def _peer(self, node_id: int) -> _Peer | None:
        peer = self._peers.get(node_id)
        if peer is None:
            address = self._addresses.get(node_id)
            if address is None:
                return None
            peer = self._peers[node_id] = _Peer(self, node_id, address)
        return peer

    def send(self, messages: list[Message]) -> None:
        on_heartbeat = self.on_heartbeat_sent
        for m in messages:
            peer = self._peer(m.to)
            if peer is None:
                continue  # an unknown peer: nothing to do but let Raft retry later
            if m.type == MessageType.SNAP:
                peer.send_snapshot(m)
            else:
                peer.enqueue(m)
                if m.type == MessageType.HEARTBEAT and on_heartbeat is not None:
                    on_heartbeat(m.to)

    async def forward(self, to: int, kind: int, payload: bytes, timeout: float | None) -> bytes:
        """Relay one request to the leader ``to``; its answer's payload, or its error as
        the error of its status (``forwarded_error``; module docstring)."""
        peer = self._peer(to)
        if peer is None:
            raise Unavailable(f"the leader {to:#x} has no known address yet; retry")
        return await peer.forwards.request(kind, payload, timeout)

    async def close(self) -> None:
        self.closed = True
        for peer in self._peers.values():
            await peer.close()
        self._peers.clear()


def forwarded_error(code: Code | int, message: str, leader_address: str = "") -> CoordError:
    """The status the leader answered a forwarded request with (or the link to it failed
    with), as the error of its code: passed on as is."""
    return error_of(code, message or Code.of(int(code)).name, leader_address)


def _rpc_failure(err: BaseException) -> CoordError:
    """A broken forwarding stream as its requests' error (UNAVAILABLE unless gRPC said
    otherwise)."""
    if isinstance(err, grpc.aio.AioRpcError) and err.code() != grpc.StatusCode.CANCELLED:
        leader = dict(err.trailing_metadata() or ()).get("coord-leader", "")
        return forwarded_error(code_of(err.code()), err.details() or "", str(leader))
    return Unavailable(f"the link to the leader failed ({err!r}); retry")


ForwardHandler = Callable[[int, bytes, float | None], Awaitable[bytes]]


class _ForeignCluster(Exception):
    """A forwarded request carried another cluster's id."""


class RaftPeerService(raft_pb2_grpc.RaftServicer):
    """The receiving side: peers' messages into the node, forwarded requests to a handler."""

    def __init__(
        self,
        cluster_id: int,
        member_id: int,
        step: Callable[[Message], None],
        forward: ForwardHandler,
        link_lost: Callable[[int], None] | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        self.member_id = member_id
        self._step = step
        self._forward = forward
        self._link_lost = link_lost
        """Called with a peer's id when its Send stream to us broke rather than ended
        (Node.peer_link_lost: a leader whose process died breaks it at once)."""

    async def Send(self, request_iterator: AsyncIterator[raft_pb2.RaftEnvelope], context: grpc.aio.ServicerContext[Any, Any]) -> raft_pb2.SendResponse:
        received = 0
        sender = 0
        claim = PEER_CLAIM.get()
        try:
            async for envelope in request_iterator:
                if envelope.cluster_id != self.cluster_id:
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, FOREIGN_CLUSTER)
                for pm in envelope.messages:
                    try:
                        m = message_from_pb(pm)
                    except DecodeError as err:
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
                    if m.to != self.member_id:
                        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "a message addressed to another member")
                    if claim is not None and m.from_ != claim:
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED, NOT_YOUR_MESSAGE)
                    if (m.type in LOCAL_TYPES and m.type != MessageType.TRANSFER_LEADER) or m.type == MessageType.SNAP:
                        await context.abort(
                            grpc.StatusCode.INVALID_ARGUMENT, f"message type {m.type.name} cannot travel between peers"
                        )
                    self._step(m)
                    sender = m.from_
                    received += 1
        except grpc.aio.AbortError:
            raise  # refused here: nothing to say about the peer
        except BaseException:
            self._stream_lost(sender)
            raise
        # A sender's stream ends when its process dies (the server sees the same clean
        # end then) and otherwise only when it replaces the stream (a reloaded
        # certificate), whose successor brings the next heartbeat at once.
        self._stream_lost(sender)
        return raft_pb2.SendResponse(member_id=self.member_id, messages_received=received)

    def _stream_lost(self, sender: int) -> None:
        if sender and self._link_lost is not None:
            self._link_lost(sender)

    async def InstallSnapshot(self, request_iterator: AsyncIterator[raft_pb2.SnapshotChunk], context: grpc.aio.ServicerContext[Any, Any]) -> raft_pb2.InstallSnapshotResponse:
        first: raft_pb2.SnapshotChunk | None = None
        parts: list[bytes] = []
        # Hashed as the chunks come (a few ms each) rather than all at the end: hashing
        # hundreds of MB at once held this member's loop for a second or more.
        digest = hashlib.sha256()
        received = 0
        done = False
        checksum = b""
        async for chunk in request_iterator:
            if chunk.cluster_id != self.cluster_id:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, FOREIGN_CLUSTER)
            if first is None:
                if not chunk.HasField("message") or chunk.message.type != raft_pb2.MESSAGE_TYPE_SNAP:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first chunk must carry the SNAP message")
                first = chunk
            if chunk.data:
                if chunk.offset != received:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"chunk at offset {chunk.offset}, expected {received}",
                    )
                parts.append(chunk.data)
                digest.update(chunk.data)
                received += len(chunk.data)
            if chunk.done:
                done = True
                checksum = chunk.checksum
                break
        if first is None or not done:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the snapshot stream ended early")
        assert first is not None
        data = b"".join(parts)
        if len(data) != first.total_size or digest.digest() != checksum:
            await context.abort(grpc.StatusCode.DATA_LOSS, "snapshot size or checksum mismatch")
        try:
            m = message_from_pb(first.message, snapshot_data=data)
        except DecodeError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        if m.to != self.member_id:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "snapshot addressed to another member")
        claim = PEER_CLAIM.get()
        if claim is not None and m.from_ != claim:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, NOT_YOUR_MESSAGE)
        self._step(m)
        return raft_pb2.InstallSnapshotResponse(member_id=self.member_id, bytes_received=received)

    async def Forward(self, request_iterator: AsyncIterator[raft_pb2.ForwardRequest], context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[raft_pb2.ForwardResponse]:
        """Each request is handled in a task of its own; answers are written in the
        order they complete. When the follower closes the stream the open requests still
        get their answers; when it goes away they are cancelled."""
        ready: list[raft_pb2.ForwardResponse] = []
        wake = asyncio.Event()
        running: set[asyncio.Task[None]] = set()

        async def handle(request: raft_pb2.ForwardRequest) -> None:
            timeout = request.timeout_ms / 1000 if request.timeout_ms else None
            try:
                payload = await self._forward(request.kind, request.payload, timeout)
                response = raft_pb2.ForwardResponse(member_id=self.member_id, id=request.id, payload=payload)
            except CoordError as err:
                response = raft_pb2.ForwardResponse(
                    member_id=self.member_id, id=request.id, code=int(err.code), message=err.message,
                    leader=err.leader_address,
                )
            except Exception:  # a bug: answer rather than leave the follower waiting
                log.exception("a forwarded request failed")
                response = raft_pb2.ForwardResponse(
                    member_id=self.member_id, id=request.id, code=int(Code.INTERNAL),
                    message="the leader failed to handle the forwarded request",
                )
            ready.append(response)
            wake.set()

        async def read() -> None:
            async for request in request_iterator:
                if request.cluster_id != self.cluster_id:
                    raise _ForeignCluster()
                task = asyncio.get_running_loop().create_task(handle(request))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.wait(set(running))

        reader = asyncio.get_running_loop().create_task(read())
        reader.add_done_callback(lambda _: wake.set())
        try:
            while not (reader.done() and not ready):
                await wake.wait()
                wake.clear()
                batch, ready[:] = list(ready), []
                for response in batch:
                    yield response
            reader.result()  # a broken stream raises here
        except _ForeignCluster:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, FOREIGN_CLUSTER)
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()
