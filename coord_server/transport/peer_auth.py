"""Peers prove they are members: the cluster's peer secret, and peer certificates that
name the member they claim to be.

Sending side (``PeerCredentials``): every peer call (Raft.Send, InstallSnapshot,
Forward) carries metadata ``coord-peer-member`` (the sender's member id, hex) and, when
the cluster has one, ``coord-peer-secret``.

Receiving side (``PeerGuard``), before any peer handler runs:

Rule 1: with a peer secret configured, the caller's ``coord-peer-secret`` must equal it
        (``hmac.compare_digest``: constant time).
Rule 2: on a port with peer mutual TLS, the TLS handshake already proved the caller
        holds a certificate of the peer CA; the member it claims to be must then be a
        member of this cluster whose name the certificate carries (a DNS subject
        alternative name, or the common name). A valid certificate of member n2 cannot
        speak as n1, and the CA's client certificates cannot speak at all.
Rule 3: a refusal is UNAUTHENTICATED with one fixed message: the caller learns no
        cluster id, member id or member name.

The claimed member id is kept for the call (``PEER_CLAIM``) when rule 2 verified it,
so the Raft service can insist that every message comes from that member.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import inspect
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from coord_server.node import Node

log = logging.getLogger("coord.transport")

PEER_SECRET_KEY = "coord-peer-secret"
PEER_MEMBER_KEY = "coord-peer-member"
MIN_SECRET_BYTES = 16
REFUSED = "this service is for the members of this cluster only; the caller did not prove membership"
"""The one message of every peer refusal (rule 3)."""
FIRST_MESSAGE_WAIT = 1.0

PEER_CLAIM: contextvars.ContextVar[int | None] = contextvars.ContextVar("coord_peer_claim", default=None)
"""The member id the caller's certificate was verified to name (rule 2), for this call."""


class PeerSecretError(ValueError):
    """The peer secret file is missing, unreadable, too short or readable by others."""


def load_peer_secret(path: str) -> bytes:
    """The secret in ``path`` (surrounding whitespace stripped), checked."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            secret = f.read().strip()
    except OSError as err:
        raise PeerSecretError(f"peer_secret_file: cannot read {path}: {err.strerror}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise PeerSecretError(
            f"peer_secret_file: {path} holds {len(secret)} bytes; use at least {MIN_SECRET_BYTES} random bytes "
            "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PeerSecretError(f"peer_secret_file: {path} is readable by other users; chmod 600 it")
    if any(c < 0x21 or c > 0x7E for c in secret):
        raise PeerSecretError(f"peer_secret_file: {path} must hold printable ASCII without spaces (it travels as metadata)")
    return secret


def member_names(node: Node, known: Mapping[int, Any] | None) -> Callable[[int], str | None]:
    """member id -> name, from ``node``'s state machine, else from ``known`` (MemberInfo
    by id: the founders, or the members a joiner was told of before its log has them)."""
    names = {mid: info.name for mid, info in (known or {}).items()}

    def name_of(member_id: int) -> str | None:
        for member in node.state.members():
            if member.id == member_id:
                return member.name or names.get(member_id)
        return names.get(member_id)

    return name_of


class PeerCredentials:
    """What this member sends with each peer call."""

    def __init__(self, member_id: int, secret: bytes | None) -> None:
        items = [(PEER_MEMBER_KEY, f"{member_id:x}")]
        if secret is not None:
            items.append((PEER_SECRET_KEY, secret.decode()))
        self.metadata: tuple[tuple[str, str], ...] = tuple(items)


class PeerRefused(Exception):
    """The caller did not prove membership (rule 3: the message to the caller never
    varies; ``reason`` goes to this member's log only)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


LOG_EVERY = 10.0
"""Seconds between two log lines about refused peer calls of the same reason."""


def certificate_names(context: Any) -> set[str] | None:
    """The DNS names and common name of the caller's verified certificate; None when the
    call did not come with one."""
    auth = context.auth_context() or {}
    cns = auth.get("x509_common_name") or []
    sans = auth.get("x509_subject_alternative_name") or []
    if not cns and not sans and not auth.get("x509_pem_cert"):
        return None
    return {n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in (*cns, *sans)}


class PeerGuard:
    """Checks a peer call's proof of membership (module docstring)."""

    def __init__(self, secret: bytes | None, name_of: Callable[[int], str | None], check_names: bool) -> None:
        self.secret = secret
        self.name_of = name_of
        """member id -> name, None for an id that is not a member."""
        self.check_names = check_names
        """True on a port with peer mutual TLS (rule 2)."""
        self._logged: dict[str, float] = {}

    def verify(self, context: Any) -> int | None:
        """The member id the caller proved (rule 2), or None when only the secret was
        checked; raises PeerRefused."""
        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        if self.secret is not None:
            offered = metadata.get(PEER_SECRET_KEY, "")
            offered_bytes = offered.encode() if isinstance(offered, str) else bytes(offered)
            if not hmac.compare_digest(offered_bytes, self.secret):
                raise PeerRefused("no peer secret" if not offered_bytes else "a wrong peer secret")
        if not self.check_names:
            return None
        names = certificate_names(context)
        if names is None:
            raise PeerRefused("no peer certificate")
        try:
            claim = int(str(metadata.get(PEER_MEMBER_KEY, "")), 16)
        except ValueError:
            raise PeerRefused(f"a peer certificate for {sorted(names)} without {PEER_MEMBER_KEY} metadata") from None
        name = self.name_of(claim)
        if name is None:
            raise PeerRefused(f"a peer certificate for {sorted(names)} claiming {claim:#x}, not a member")
        if name not in names:
            raise PeerRefused(
                f"a peer certificate for {sorted(names)} claiming member {name!r}: the certificate must name "
                "its member (a DNS subject alternative name or the common name)"
            )
        return claim

    def _log(self, reason: str, context: Any) -> None:
        """Why a peer call was refused, for the operator (at most every LOG_EVERY s per reason)."""
        now = time.monotonic()
        if now - self._logged.get(reason, -LOG_EVERY) >= LOG_EVERY:
            if len(self._logged) > 100:  # reasons name what callers claim: keep it bounded
                self._logged.clear()
            self._logged[reason] = now
            log.warning("refused a peer call from %s: %s", context.peer(), reason)

    def wrap(self, handler: Any) -> Any:
        """``handler`` with the check in front of it, for every call shape."""
        make = {
            "unary_unary": grpc.unary_unary_rpc_method_handler,
            "unary_stream": grpc.unary_stream_rpc_method_handler,
            "stream_unary": grpc.stream_unary_rpc_method_handler,
            "stream_stream": grpc.stream_stream_rpc_method_handler,
        }
        for shape, factory in make.items():
            inner = getattr(handler, shape)
            if inner is not None:
                streaming_request = shape.startswith("stream")
                return factory(
                    self._behaviour(inner, streaming_request),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler

    def _behaviour(self, inner: Any, streaming_request: bool) -> Any:
        async def admit(request: Any, context: Any) -> None:
            try:
                PEER_CLAIM.set(self.verify(context))
            except PeerRefused as refused:
                self._log(refused.reason, context)
                if streaming_request:
                    await _first_message(request)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, REFUSED)

        if inspect.isasyncgenfunction(inner):

            async def generator(request: Any, context: Any) -> AsyncIterator[Any]:
                await admit(request, context)
                async for response in inner(request, context):
                    yield response

            return generator

        async def behaviour(request: Any, context: Any) -> Any:
            await admit(request, context)
            return await inner(request, context)

        return behaviour


async def _first_message(requests: AsyncIterator[Any]) -> None:
    """Wait (a second at most) for a refused stream's first message: ending the call
    before the client wrote it makes grpc's client report INTERNAL instead of the status
    sent (coord_server/auth/interceptor.py, _refuse_stream)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(FIRST_MESSAGE_WAIT):
            await anext(aiter(requests), None)
