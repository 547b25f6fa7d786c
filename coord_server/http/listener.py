"""One aiohttp listener on the member's own event loop, shared by every HTTP surface.

A surface is a function ``add_routes(app, ctx)`` that registers its routes on ``app``;
``ctx`` (:class:`HttpContext`) gives it the loopback gRPC channel to this member and the
metadata to forward from an HTTP request. aiohttp earns its place over the hand-written
HTTP/1.1 of metrics_http.py: the surfaces need keep-alive, chunked streaming responses
(watch, observe), server-sent events and request bodies with size limits.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from aiohttp import web

from coord_server.settings import SettingsError, parse_address

log = logging.getLogger("coord.http")

MAX_BODY = 2 * 1024 * 1024
"""Request bodies above this are refused (413): a gRPC request is at most 1.5 MiB, and
JSON with base64 bytes is larger than the protobuf it carries."""


SHUTDOWN_TIMEOUT = 1.0
"""Seconds a stopping member waits for open HTTP streams (watch, observe) to end before
cancelling them; their clients reconnect to another member."""


@dataclass(frozen=True)
class HttpContext:
    """What a surface needs to serve HTTP through the member's gRPC API."""

    channel: grpc.aio.Channel
    """Loopback channel to this member's own services (coord_server/http/loopback.py)."""
    member_credentials: grpc.ChannelCredentials | None = None
    """Credentials for calling other members' client ports (their peer certificate and CA
    when the cluster runs TLS; None: plain TCP). Used by the Connect surface's
    ``Coord-Member`` routing, with which the dashboard reads every member's status."""

    def metadata(self, request: web.Request) -> tuple[tuple[str, str], ...]:
        """The gRPC metadata an HTTP request carries on: its bearer token, if any."""
        token = request.headers.get("Authorization", "")
        return (("authorization", token),) if token else ()


Surface = Callable[[web.Application, HttpContext], None]


def server_ssl_context(cert_file: str, key_file: str, client_ca_file: str = "") -> ssl.SSLContext:
    """HTTPS with the client listener's certificate; with ``client_ca_file``, callers must
    present a certificate it signed, exactly as on the gRPC port (docs/security.md)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        context.load_verify_locations(client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def reload_ssl_context(context: ssl.SSLContext, cert_file: str, key_file: str, client_ca_file: str = "") -> None:
    """After the client listener reloaded its files (tls_reload.py): new handshakes get
    the new certificate and key; a new client CA is trusted too (one that was removed
    stays trusted until the member restarts: OpenSSL's store only grows)."""
    try:
        context.load_cert_chain(cert_file, key_file)
        if client_ca_file:
            context.load_verify_locations(client_ca_file)
    except (OSError, ssl.SSLError) as err:
        log.warning("HTTPS listener: keeping the current certificate: %s", err)
        return
    log.info("HTTPS listener: certificate reloaded from %s", cert_file)


class HttpListener:
    """Serves ``surfaces`` on ``listen`` until ``close()``."""

    def __init__(
        self,
        listen: str,
        channel: grpc.aio.Channel,
        surfaces: Sequence[Surface],
        ssl_context: ssl.SSLContext | None = None,
        member_credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.listen = listen
        self.port = 0
        self.context = HttpContext(channel, member_credentials)
        self._ssl = ssl_context
        self.app = web.Application(client_max_size=MAX_BODY)
        for add_routes in surfaces:
            add_routes(self.app, self.context)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        host, port = parse_address("http_listen", self.listen)
        # handler_cancellation: a client that disconnects cancels its handler, which
        # cancels the gRPC call behind it (a streaming call would otherwise run on
        # unseen); shutdown_timeout bounds how long stopping waits for open streams.
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self._ssl, reuse_address=True)
        try:
            await site.start()
        except OSError as err:
            await self._runner.cleanup()
            raise SettingsError(f"cannot serve HTTP on {self.listen}: {err.strerror or err}") from None
        server = site._server  # noqa: SLF001 - aiohttp exposes the bound port nowhere else
        sockets = server.sockets if isinstance(server, asyncio.Server) else ()
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("HTTP on %s://%s:%d", "https" if self._ssl else "http", host, self.port)

    def reload_tls(self, cert_file: str, key_file: str, client_ca_file: str = "") -> None:
        if self._ssl is not None:
            reload_ssl_context(self._ssl, cert_file, key_file, client_ca_file)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.context.channel.close()
