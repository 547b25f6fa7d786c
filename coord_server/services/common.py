"""What every servicer shares: response headers, exactly-once metadata, deadlines, and the
one translation of errors into gRPC statuses.

Rule 1: a servicer validates at the edge (``coord_server.state.validation``), then either
        proposes a Command (writes) or passes a read barrier and reads the local state
        (reads), then stamps the response's headers. Nothing malformed is ever proposed.
Rule 2: every error leaves through ``status_of``: a ``CoordError`` (coord_server/errors.py:
        the state machine's refusals, the node's, the services', a status the leader
        answered a forwarded request with, a ``CommandResult.error`` raised again) carries
        its code, which ``coord_server.status`` maps to the gRPC status; one that knows the
        leader adds trailing metadata ``coord-leader``. Anything else is a bug: INTERNAL,
        logged.
Rule 3: the state machine fills in ``header.revision`` of the responses it returns; the
        services add what only they know (cluster, member, term), in nested headers too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message as PbMessage

from coord.raft.v1 import command_pb2
from coord.v1 import common_pb2
from coord_server.errors import (
    CoordError, DeadlineExceeded, Internal, InvalidArgument, RequestTooLarge, error_of, from_proto,
)
from coord_server.member import Member
from coord_server.status import code_of, grpc_status
from coord_server.request_context import current_user, recheck_after_read
from coord_server.state.limits import MAX_CLIENT_ID_BYTES, MAX_REQUEST_BYTES

log = logging.getLogger("coord.services")

LEADER_METADATA_KEY = "coord-leader"
CLIENT_ID_METADATA_KEY = "coord-client-id"
SEQ_METADATA_KEY = "coord-seq"

DEFAULT_TIMEOUT = 30.0
"""How long a call without a deadline may wait for a proposal or a read barrier. A write
that times out this way may still be applied (DEADLINE_EXCEEDED, as with a deadline)."""

GRPC_OVERHEAD_BYTES = 512 * 1024
"""Slack above MAX_REQUEST_BYTES for the server's receive limit (as etcd): a request a bit
over the limit still arrives and gets a clear RESOURCE_EXHAUSTED from ``check_size``;
a far bigger one is refused by gRPC itself, also with RESOURCE_EXHAUSTED."""

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES),
]
"""Options for a server that serves only the public API. A server that also carries the
Raft peer service needs its larger limits; ``check_size`` keeps the public limit then."""

Context = grpc.aio.ServicerContext[Any, Any]
"""The servicer context of any call."""


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str, str]:
    """(code, message, leader address or "") for any error a servicer may meet."""
    if isinstance(exc, CoordError):
        return grpc_status(exc.code), exc.message, exc.leader_address
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the request completed", ""
    log.error("unexpected error in a service", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}", ""


def as_coord_error(exc: BaseException) -> CoordError:
    """``exc`` as a CoordError (for the forward handler, whose caller catches only those)."""
    if isinstance(exc, CoordError):
        return exc
    code, message, leader = status_of(exc)
    return error_of(code_of(code), message, leader)


def leader_metadata(leader: str) -> tuple[tuple[str, str], ...]:
    return ((LEADER_METADATA_KEY, leader),) if leader else ()


async def abort(context: Context, exc: BaseException) -> None:
    code, message, leader = status_of(exc)
    await context.abort(code, message, trailing_metadata=leader_metadata(leader))


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def unary(fn: Handler) -> Handler:
    """Wrap a unary handler so that every error is answered through ``status_of``."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: Context) -> Any:
        try:
            return await fn(self, request, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - translated, INTERNAL ones logged
            await abort(context, exc)

    return wrapper  # type: ignore[return-value]


# ---------------------------------------------------------------------------- headers


class Headers:
    """Stamps response headers for one member."""

    def __init__(self, node: Member) -> None:
        self.node = node

    def header(self, revision: int | None = None) -> common_pb2.ResponseHeader:
        """A header for this member; revision defaults to the store's current one."""
        node = self.node
        if revision is None:
            revision = node.state.revision
        return common_pb2.ResponseHeader(
            cluster_id=node.config.cluster_id,
            member_id=node.config.node_id,
            revision=revision,
            raft_term=node.term,
        )

    def stamp(self, msg: PbMessage, revision: int | None = None) -> PbMessage:
        """Set cluster, member and term in ``msg.header`` and every nested header (Txn
        responses); keep the revisions the state machine set, unless ``revision`` is given
        for the top-level header. Returns ``msg``."""
        node = self.node
        _stamp(msg, node.config.cluster_id, node.config.node_id, node.term)
        if revision is not None:
            msg.header.revision = revision  # type: ignore[attr-defined]
        return msg


_HEADER_NAME = common_pb2.ResponseHeader.DESCRIPTOR.full_name
_HOLDS_HEADER: dict[str, bool] = {}


def _holds_header(desc: Any, seen: frozenset[str] = frozenset()) -> bool:
    """Whether messages of type ``desc`` can contain a ResponseHeader (memoized), so that
    stamping never walks the key-values of a large Range."""
    name = desc.full_name
    if name in _HOLDS_HEADER:
        return _HOLDS_HEADER[name]
    if name in seen:
        return False
    found = False
    for field in desc.fields:
        sub = field.message_type
        if sub is not None and (sub.full_name == _HEADER_NAME or _holds_header(sub, seen | {name})):
            found = True
            break
    if not seen:
        _HOLDS_HEADER[name] = found
    return found


_SHAPE: dict[str, tuple[bool, bool]] = {}


def _shape(desc: Any) -> tuple[bool, bool]:
    """(has a top-level header, has other fields that may hold headers) of a message type
    (memoized): a Put or Range response is stamped without walking its fields."""
    shape = _SHAPE.get(desc.full_name)
    if shape is None:
        nested = any(
            f.message_type is not None and f.name != "header" and _holds_header(f.message_type) for f in desc.fields
        )
        shape = _SHAPE[desc.full_name] = ("header" in desc.fields_by_name, nested)
    return shape


def _stamp(msg: PbMessage, cluster_id: int, member_id: int, term: int) -> None:
    has_header, nested = _shape(msg.DESCRIPTOR)
    if has_header:
        h = msg.header  # type: ignore[attr-defined]  # set even when absent: zeroes would mislead
        h.cluster_id = cluster_id
        h.member_id = member_id
        h.raft_term = term
    if not nested:
        return
    for field, value in msg.ListFields():
        sub = field.message_type
        if sub is None or field.name == "header" or not _holds_header(sub):
            continue
        if field.is_repeated:
            for item in value:
                _stamp(item, cluster_id, member_id, term)
        else:
            _stamp(value, cluster_id, member_id, term)


# ----------------------------------------------------------------- exactly-once, sizes


def session_of(context: Context) -> tuple[str, int]:
    """(client id, seq) from the call's `coord-client-id` / `coord-seq` metadata; ("", 0)
    when absent. INVALID_ARGUMENT for an oversized id or a seq that is not a decimal u64,
    or an id without a seq."""
    client_id = ""
    seq_text: str | None = None
    for key, value in context.invocation_metadata() or ():
        if key == CLIENT_ID_METADATA_KEY:
            client_id = value.decode() if isinstance(value, bytes) else value
        elif key == SEQ_METADATA_KEY:
            seq_text = value.decode() if isinstance(value, bytes) else value
    if not client_id:
        return "", 0
    check_client_id(client_id, seq_text is not None, CLIENT_ID_METADATA_KEY, SEQ_METADATA_KEY)
    assert seq_text is not None
    seq_text = seq_text.strip()
    if not seq_text.isdigit() or not seq_text.isascii() or int(seq_text) >= 1 << 64:
        raise InvalidArgument(f"{SEQ_METADATA_KEY} must be a decimal unsigned 64-bit number, got {seq_text!r}")
    return client_id, int(seq_text)


def command_of(context: Context, **op: Any) -> command_pb2.Command:
    """The Command for ``op`` with the call's exactly-once session (session_of)."""
    client_id, seq = session_of(context)
    return command_pb2.Command(client_id=client_id, seq=seq, user=current_user.get(), **op)


def check_client_id(client_id: str, has_seq: bool, id_name: str, seq_name: str) -> None:
    """INVALID_ARGUMENT for an exactly-once client id that is too long or has no seq
    (``id_name``/``seq_name``: what the caller calls them, metadata or fields)."""
    if len(client_id.encode()) > MAX_CLIENT_ID_BYTES:
        raise InvalidArgument(f"{id_name} is {len(client_id.encode())} bytes; the limit is {MAX_CLIENT_ID_BYTES}")
    if not has_seq:
        raise InvalidArgument(f"{id_name} needs {seq_name}")


def check_size(request: PbMessage) -> None:
    size = request.ByteSize()
    if size > MAX_REQUEST_BYTES:
        raise RequestTooLarge(f"request is {size} bytes; the limit is {MAX_REQUEST_BYTES}")


def timeout_of(context: Context | None) -> float:
    remaining = context.time_remaining() if context is not None else None
    if remaining is None:
        return DEFAULT_TIMEOUT
    return max(0.0, remaining)


T = TypeVar("T")


async def bounded(awaitable: Awaitable[T], timeout: float, what: str) -> T:
    """Await with a time limit; DeadlineExceeded (mentioning ``what``) when it passes.

    ``asyncio.timeout`` arms a timer on the current task; ``asyncio.wait_for`` would wrap
    the awaitable in a task of its own, a cost paid on every request."""
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except (asyncio.TimeoutError, TimeoutError):
        raise DeadlineExceeded(f"the deadline passed before {what}") from None


async def propose(node: Member, command: command_pb2.Command, context: Context | None, *, batched: bool = False) -> Any:
    """Propose ``command`` (forwarded when this node follows) and return the response in
    its CommandResult; raise the CommandResult's error. Headers are not stamped.

    ``batched``: through the member's UnaryBatcher (services/unary_batch.py), for calls
    many independent clients make at once (KV writes)."""
    return await propose_within(node, command, timeout_of(context), batched=batched)


async def propose_within(node: Member, command: command_pb2.Command, timeout: float, *, batched: bool = False) -> Any:
    """``propose`` with a timeout in seconds rather than a call's deadline."""
    if batched:
        result = await node.unary_batcher.submit(command.SerializeToString(), timeout)  # its own deadline
    else:
        result = await bounded(node.propose(command, timeout), timeout, PROPOSAL_PENDING)
    return response_of(result)


PROPOSAL_PENDING = "the request was applied (it may still be applied)"
"""What a proposal that timed out had not yet done (DeadlineExceeded's message)."""


def response_of(result: command_pb2.CommandResult) -> Any:
    """The response inside a CommandResult; its error raised (``from_proto``)."""
    which = result.WhichOneof("result")
    if which is None:
        raise Internal("the state machine returned no result")
    if which == "error":
        raise from_proto(result.error)
    return getattr(result, which)


async def read_barrier(node: Member, context: Context | None, *, batched: bool = False) -> None:
    """Linearizable read point (ReadIndex); works on followers too. ``batched``: through
    the member's UnaryBatcher (KV.Range), so that concurrent calls share a round."""
    timeout = timeout_of(context)
    if batched:
        await node.unary_batcher.read_barrier(timeout)  # its own deadline
    else:
        await bounded(node.read_barrier(), timeout, "the read could be confirmed with a quorum")
    recheck = recheck_after_read.get()
    if recheck is not None:
        recheck()  # the caller's permissions as of the read point (auth interceptor)
