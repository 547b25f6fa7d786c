"""Typed Python client for coord, synchronous and asyncio, and the ``coordctl`` CLI.

    from coord_client import Client

    with Client() as client:               # $COORD_ENDPOINTS, else 127.0.0.1:7379 or 7001-7003
        client.put("greeting", "hello")
        print(client.get("greeting").value)
        with client.lock("jobs", ttl=10) as held:
            print("holding jobs with fencing token", held.fencing_token)

``AsyncClient`` has the same methods as coroutines (``async with AsyncClient() as c``).
Both find the leader, follow ``coord-leader`` hints, fail over between endpoints and
retry with backoff within each call's timeout; a retried write is applied at most once
(``coord-client-id`` + ``coord-seq``). Results are the frozen dataclasses of
``coord_client.types``; failures are the exceptions of ``coord_client.errors``.

Modules: ``aio`` (AsyncClient and its Lease, Lock, Campaign, Watch, RingView...),
``sync`` (Client and their synchronous twins), ``txn`` (Compare, Op), ``types``,
``errors``, ``hashring`` (the placement rules shared with the server, from ``coord_common``), ``cli``
(coordctl).
"""

from ._transport import DEFAULT_ENDPOINTS, ENDPOINTS_ENV, resolve_endpoints
from .aio import AsyncClient
from .tls import TLSConfig
from .errors import (
    Cancelled,
    ClientClosed,
    Compacted,
    CoordError,
    DeadlineExceeded,
    FailedPrecondition,
    InternalError,
    InvalidArgument,
    LeadershipLost,
    LeaseLost,
    LeaseNotFound,
    LockLost,
    LockNotHeld,
    NotFound,
    NotLeader,
    PermissionDenied,
    ResourceExhausted,
    RevisionOutOfRange,
    Unauthenticated,
    Unavailable,
)
from .sync import Client
from .txn import Compare, Op
from .types import (
    Candidate,
    DeleteResult,
    EndpointHealth,
    EndpointStatus,
    Event,
    EventType,
    HashMode,
    KeyValue,
    Leader,
    LeaseInfo,
    LockHolder,
    LockInfo,
    LockWaiter,
    Member,
    PutResult,
    RangeResult,
    Role,
    RingMember,
    RingState,
    Status,
    TxnResult,
    prefix_end,
)

__all__ = [
    "DEFAULT_ENDPOINTS",
    "ENDPOINTS_ENV",
    "AsyncClient",
    "Cancelled",
    "Candidate",
    "Client",
    "ClientClosed",
    "Compacted",
    "Compare",
    "CoordError",
    "DeadlineExceeded",
    "DeleteResult",
    "EndpointHealth",
    "EndpointStatus",
    "Event",
    "EventType",
    "FailedPrecondition",
    "HashMode",
    "InternalError",
    "InvalidArgument",
    "KeyValue",
    "Leader",
    "LeadershipLost",
    "LeaseInfo",
    "LeaseLost",
    "LeaseNotFound",
    "LockHolder",
    "LockInfo",
    "LockLost",
    "LockNotHeld",
    "LockWaiter",
    "Member",
    "NotFound",
    "NotLeader",
    "PermissionDenied",
    "Op",
    "PutResult",
    "RangeResult",
    "ResourceExhausted",
    "RevisionOutOfRange",
    "Role",
    "RingMember",
    "RingState",
    "Status",
    "TLSConfig",
    "TxnResult",
    "Unauthenticated",
    "Unavailable",
    "prefix_end",
    "resolve_endpoints",
]
