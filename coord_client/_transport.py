"""Endpoints, channels, leader following, retries and exactly-once sessions: everything
between a client method and one gRPC attempt.

Rule 1: one grpc.aio channel per member address, opened lazily and kept. Calls go to the
        *preferred* endpoint: the leader last named by a ``coord-leader`` hint, else the
        last endpoint that answered, else the first configured one.
Rule 2: a unary call is retried, within the caller's deadline, on UNAVAILABLE (following
        the hint at once when the member named a leader not known to be down; otherwise
        on the next endpoint after an exponential backoff with jitter), and on an attempt
        that timed out before the call's own deadline (a hung member). A refused
        connection (nothing listens there) moves on at once while this call has an
        endpoint it has not tried; with ``fail_when_refused`` a call ends as soon as every
        endpoint refused twice. Every other status is final and becomes a CoordError
        (errors.py).
Rule 3: every mutating call carries ``coord-client-id`` and ``coord-seq``; all attempts of
        one call reuse them, so the server applies it at most once (common.proto
        "Exactly-once"). A client id has at most one call outstanding: concurrent calls
        take different ids from a pool. An id whose call ended ambiguously (it may still
        be in flight: deadline, cancellation, cluster unavailable) is retired, never
        reused, so no later sequence can overtake it.
Rule 4: a call that waits on the server by design (Lock.Acquire, Election.Campaign) gets
        one attempt with the whole remaining deadline; "forever" is sent as a long
        deadline, since a call without one is cut by the server's default.
Rule 5: KV writes (put, delete, txn), lock and election calls (and the Revoke that ends
        a lock's or a campaign's own lease) go to the leader once a follower's answer to
        one of them has named it (a Pipeline result's ``leader``, services/pipeline.py
        Rule 4; an election call's ``coord-leader`` trailing metadata). Through a
        follower a write costs two forwarding hops more (puts at concurrency 64: about
        1.5x the rate on the leader), and a lock handoff a replication round more too.
        Only those calls move there; reads and the rest keep Rule 1, so followers go on
        sharing reads. An attempt that fails there forgets it until a follower names it
        again; a failed address is skipped for a second, and a leader address that fails
        again and again (one this client cannot reach: a wrong ``--advertise``, NAT) for
        twice as long each time, up to LEADER_RETRY_CAP, until an attempt there succeeds.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import grpc.aio

from coord.v1 import (
    cluster_pb2_grpc,
    election_pb2_grpc,
    kv_pb2_grpc,
    lease_pb2_grpc,
    lock_pb2_grpc,
    ring_pb2_grpc,
)

from . import errors
from ._pipeline import PipelineStream
from ._token import TOKEN_ENV, bearer_interceptors
from .tls import TLSConfig, connection_hint

__all__ = ["DEFAULT_ENDPOINTS", "ENDPOINTS_ENV", "Backoff", "Transport", "resolve_endpoints"]

DEFAULT_ENDPOINTS = ("127.0.0.1:7379", "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003")
"""Where a local cluster listens when nobody said otherwise: a bare ``coord-server`` (the
embedded default, 7379) and `make cluster`'s members (7001-7003). A refused connection
moves a call to the next endpoint at once (Rule 2), so the one that is not running costs
a millisecond."""
ENDPOINTS_ENV = "COORD_ENDPOINTS"

DEFAULT_TIMEOUT = 10.0
"""Seconds a call may take, retries included, unless the caller says otherwise."""
ATTEMPT_TIMEOUT = 5.0
"""Longest single attempt of a call that does not wait by design: past it the member is
presumed hung and the call moves on (same client id and seq)."""
LONG_WAIT = 7 * 86400.0
"""The deadline sent for "wait forever" (Rule 4)."""
LEADER_RETRY_CAP = 30.0
"""Longest a leader address that keeps failing is skipped, in seconds (Rule 5)."""

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    # A restarted member is found again quickly (gRPC's default starts at 1s and grows
    # to 120s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Ranges may be larger than gRPC's default 4 MiB.
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]

T = TypeVar("T")
Req = TypeVar("Req")
Resp = TypeVar("Resp")

_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def refused(err: grpc.aio.AioRpcError) -> bool:
    """True when ``err`` says nothing listens at the address (not a member that is busy,
    electing, or far away)."""
    return err.code() == grpc.StatusCode.UNAVAILABLE and "connection refused" in (err.details() or "").lower()


def resolve_endpoints(endpoints: str | Sequence[str] | None = None) -> list[str]:
    """The endpoints to use: ``endpoints`` (a list, or one comma-separated string), else
    ``$COORD_ENDPOINTS``, else `make cluster`'s three. ``http://`` prefixes are dropped."""
    if endpoints is None:
        endpoints = os.environ.get(ENDPOINTS_ENV) or ",".join(DEFAULT_ENDPOINTS)
    if isinstance(endpoints, str):
        endpoints = endpoints.split(",")
    out: list[str] = []
    for e in endpoints:
        e = e.strip()
        for scheme in ("http://", "https://", "grpc://", "dns:///"):
            e = e.removeprefix(scheme)
        e = e.rstrip("/")
        if e and e not in out:
            out.append(e)
    if not out:
        raise errors.InvalidArgument("no endpoints given")
    for e in out:
        host, sep, port = e.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise errors.InvalidArgument(f"endpoint {e!r} is not host:port")
        if not 1 <= int(port) <= 65535:
            raise errors.InvalidArgument(f"endpoint {e!r}: port {port} is not between 1 and 65535")
    return out


class Backoff:
    """Exponential backoff with jitter: the n-th delay is uniform in [d/2, d] where
    d = min(cap, base * 2**n) ("equal jitter": spread out, never zero)."""

    def __init__(self, base: float = 0.05, cap: float = 1.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next(self) -> float:
        d = min(self.cap, self.base * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return random.uniform(d / 2, d)

    def reset(self) -> None:
        self.attempt = 0


class Stubs:
    """The async stubs of one member."""

    def __init__(self, channel: grpc.aio.Channel, on_leader: Callable[[str], None] | None = None) -> None:
        self.channel = channel
        self.kv = kv_pb2_grpc.KVStub(channel)
        self.lease = lease_pb2_grpc.LeaseStub(channel)
        self.lock = lock_pb2_grpc.LockStub(channel)
        self.election = election_pb2_grpc.ElectionStub(channel)
        self.ring = ring_pb2_grpc.RingStub(channel)
        self.cluster = cluster_pb2_grpc.ClusterStub(channel)
        self.pipeline = PipelineStream(self.kv, on_leader)

    def pipelined(self, kind: str) -> Callable[..., Awaitable[Any]]:
        """A unary-looking callable (``request, timeout=, metadata=``) that sends a KV or
        lock operation of ``kind`` through this member's Pipeline stream (_pipeline.py)."""

        async def invoke(request: object, timeout: float | None = None, metadata: Sequence[tuple[str, str]] = ()) -> Any:
            return await self.pipeline.call(kind, request, timeout, metadata)

        return invoke


@dataclass
class Session:
    """One exactly-once client id and the sequence of its current call."""

    client_id: str
    seq: int = 0

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("coord-client-id", self.client_id), ("coord-seq", str(self.seq)))


class SessionPool:
    """Client ids for mutating calls, one outstanding call each (Rule 3)."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex
        self._free: list[Session] = []
        self._made = 0
        self.retired = 0

    def acquire(self) -> Session:
        if self._free:
            session = self._free.pop()
        else:
            self._made += 1
            session = Session(f"{self._prefix}-{self._made}")
        session.seq += 1
        return session

    def release(self, session: Session, reusable: bool) -> None:
        if reusable:
            self._free.append(session)
        else:
            self.retired += 1

    @property
    def size(self) -> int:
        return self._made


Method = Callable[[Stubs], Callable[..., Awaitable[Resp]]]
"""Picks the RPC from a member's stubs: ``lambda s: s.kv.Put``."""


class Transport:
    """Channels to the members and the retry loop; one per client, used on one event
    loop."""

    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        attempt_timeout: float = ATTEMPT_TIMEOUT,
        token: str | None = None,
        tls: TLSConfig | None = None,
    ) -> None:
        self.defaulted = endpoints is None and not os.environ.get(ENDPOINTS_ENV)
        """True when the endpoints are DEFAULT_ENDPOINTS: candidates, not all expected to run."""
        self.endpoints = resolve_endpoints(endpoints)
        self.fail_when_refused = False
        """End a call once every endpoint refused the connection twice (Rule 2); coordctl
        sets it: a user with nothing running wants to hear so, not wait out the deadline."""
        self.token = token if token is not None else os.environ.get(TOKEN_ENV, "")
        self.tls = tls
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.sessions = SessionPool()
        self._known: list[str] = list(self.endpoints)
        self._stubs: dict[str, Stubs] = {}
        self._preferred = self.endpoints[0]
        self._call_leader = ""
        """Where writes, lock and election calls go (Rule 5); empty: to the preferred endpoint."""
        self._down_until: dict[str, float] = {}
        self._leader_failures: dict[str, int] = {}
        """Failed attempts in a row at an address named as the leader (Rule 5)."""
        self.closed = False
        self.retries = 0
        """Attempts retried after UNAVAILABLE or a timed-out attempt (for tests, metrics)."""

    # -- endpoints ----------------------------------------------------------------

    def stubs(self, address: str) -> Stubs:
        if self.closed:
            raise errors.ClientClosed("the client is closed")
        stubs = self._stubs.get(address)
        if stubs is None:
            interceptors = bearer_interceptors(self.token)
            if self.tls is None:
                channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=interceptors)
            else:
                options = [*CHANNEL_OPTIONS, *self.tls.channel_options()]
                channel = grpc.aio.secure_channel(
                    address, self.tls.credentials, options=options, interceptors=interceptors
                )
            stubs = Stubs(channel, self._learn_leader)
            self._stubs[address] = stubs
        return stubs

    def pick(self, to_leader: bool = False) -> str:
        """The endpoint to try next (Rule 1; Rule 5 for ``to_leader``)."""
        if to_leader and self._call_leader and self._down_until.get(self._call_leader, 0.0) <= time.monotonic():
            return self._call_leader
        return self._preferred

    def _learn_leader(self, address: str) -> None:
        if address not in self._known:
            self._known.append(address)
        self._call_leader = address

    def succeeded(self, address: str, *, prefer: bool = True) -> None:
        """``address`` served a call; with ``prefer``, later calls start there (Rule 1)."""
        self._down_until.pop(address, None)
        self._leader_failures.pop(address, None)
        if prefer:
            self._preferred = address

    def failed(self, address: str, hint: str = "") -> bool:
        """Record that ``address`` could not serve a call and choose the next endpoint;
        True when the next attempt may go at once (a fresh leader hint), False when it
        should back off first."""
        down_for = 1.0
        if address == self._call_leader:
            self._call_leader = ""
            if not hint:
                failures = self._leader_failures.get(address, 0) + 1
                self._leader_failures[address] = failures
                down_for = min(LEADER_RETRY_CAP, 2.0 ** (failures - 1))
        now = time.monotonic()
        if hint and hint != address and self._down_until.get(hint, 0.0) <= now:
            if hint not in self._known:
                self._known.append(hint)
            self._preferred = hint
            return True
        if not hint:
            self._down_until[address] = now + down_for
        known = self._known
        i = known.index(address) if address in known else -1
        for step in range(1, len(known) + 1):
            candidate = known[(i + step) % len(known)]
            if self._down_until.get(candidate, 0.0) <= now or step == len(known):
                self._preferred = candidate
                break
        return False

    @property
    def leader_hint(self) -> str:
        return self._preferred

    def deadline(self, timeout: float | None, *, forever: bool = False) -> float:
        """The monotonic deadline for a call with ``timeout`` (None: the client's default,
        or no deadline when ``forever``)."""
        if timeout is None:
            timeout = math.inf if forever else self.timeout
        return time.monotonic() + timeout

    # -- unary calls --------------------------------------------------------------

    async def call(
        self,
        method: Method[Resp],
        request: object,
        *,
        timeout: float | None = None,
        mutating: bool = False,
        waits: bool = False,
        forever: bool = False,
        to_leader: bool = False,
        refine: Mapping[grpc.StatusCode, type[errors.CoordError]] | None = None,
    ) -> Resp:
        """``method(request)`` on the preferred member with retries (Rules 2-5).

        ``timeout`` bounds the whole call (None: the client's default, or unbounded with
        ``forever``); ``waits`` marks a call that waits on the server by design;
        ``to_leader`` a write, lock or election call (Rule 5)."""
        deadline = self.deadline(timeout, forever=forever)
        session = self.sessions.acquire() if mutating else None
        metadata = session.metadata() if session is not None else ()
        backoff = Backoff()
        last: grpc.RpcError | None = None
        refusals: dict[str, int] = {}
        clean = False
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._exhausted(last, timeout)
                address = self.pick(to_leader)
                if waits:
                    attempt = min(remaining, LONG_WAIT)
                else:
                    attempt = min(remaining, self.attempt_timeout)
                try:
                    invocation = method(self.stubs(address))(request, timeout=attempt, metadata=metadata)
                    response = await invocation
                    if to_leader and hasattr(invocation, "trailing_metadata"):  # unary, not pipelined
                        hint = errors.leader_hint_of(await invocation.trailing_metadata())
                        if hint and hint != address:
                            self._learn_leader(hint)
                except grpc.aio.AioRpcError as err:
                    code = err.code()
                    if code not in _RETRYABLE or (code == grpc.StatusCode.DEADLINE_EXCEEDED and waits):
                        if code not in _RETRYABLE:
                            clean = True
                        raise errors.error_from_rpc(err, refine) from None
                    last = err
                    self.retries += 1
                    hint = errors.leader_hint(err) if code == grpc.StatusCode.UNAVAILABLE else ""
                    at_once = self.failed(address, hint)
                    if not hint and refused(err):
                        refusals[address] = refusals.get(address, 0) + 1
                        if self.fail_when_refused and all(refusals.get(a, 0) >= 2 for a in self._known):
                            raise self._all_refused(err) from None
                        at_once = at_once or self.pick(to_leader) not in refusals
                    if not at_once:
                        await asyncio.sleep(max(0.0, min(backoff.next(), deadline - time.monotonic())))
                    continue
                except grpc.aio.UsageError as err:
                    raise errors.ClientClosed(f"the client is closed ({err})") from None
                # Rule 5: the leader serves the calls that go there, not the preferred ones.
                self.succeeded(address, prefer=not (to_leader and address == self._call_leader))
                clean = True
                return response
        finally:
            if session is not None:
                self.sessions.release(session, clean)

    async def call_at(
        self,
        address: str,
        method: Method[Resp],
        request: object,
        *,
        timeout: float | None = None,
    ) -> Resp:
        """One attempt on one member, no retries (Status, health of one endpoint)."""
        try:
            return await method(self.stubs(address))(request, timeout=timeout or self.timeout)
        except grpc.aio.AioRpcError as err:
            raise errors.error_from_rpc(err) from None

    def _all_refused(self, last: grpc.aio.AioRpcError) -> errors.CoordError:
        err = errors.error_from_rpc(last)
        err.details = f"every endpoint refused the connection ({', '.join(self._known)}): is coord running there?"
        return err

    def _exhausted(self, last: grpc.RpcError | None, timeout: float | None) -> errors.CoordError:
        if last is None:
            return errors.DeadlineExceeded(f"the deadline ({timeout}s) passed before the call could be sent")
        err = errors.error_from_rpc(last)
        if isinstance(err, errors.Unavailable):
            hint = connection_hint(err.details, self.tls)
            err.details = f"no member could serve the call within its deadline; last error: {err.details}"
            if hint:
                err.details += f" (hint: {hint})"
        elif isinstance(err, errors.DeadlineExceeded):
            err.details = f"the deadline passed; last attempt: {err.details}"
        return err

    # -- streams ------------------------------------------------------------------

    async def sleep_backoff(self, backoff: Backoff, deadline: float = math.inf) -> None:
        """Sleep before reconnecting a stream; DeadlineExceeded past ``deadline``."""
        delay = backoff.next()
        if time.monotonic() + delay > deadline:
            raise errors.Unavailable("no member could be reached before the deadline")
        await asyncio.sleep(delay)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        stubs, self._stubs = list(self._stubs.values()), {}
        await asyncio.gather(*(s.pipeline.close() for s in stubs), return_exceptions=True)
        await asyncio.gather(*(s.channel.close() for s in stubs), return_exceptions=True)

    def all_addresses(self, extra: Iterable[str] = ()) -> list[str]:
        out = list(self.endpoints)
        for a in extra:
            if a and a not in out:
                out.append(a)
        return out
