"""The metrics endpoint: ``GET /metrics`` in Prometheus' text format, on its own port.

A minimal HTTP/1.1 server on the member's event loop rather than prometheus_client's
threaded one: collection then reads the node's state on the loop that changes it, so a
scrape never sees a dictionary change size mid-iteration, and no thread competes for the
GIL between scrapes. One request per connection; anything but GET /metrics (or /) is
answered 404 or 405.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from coord_server.settings import SettingsError, parse_address

log = logging.getLogger("coord.metrics")

MAX_REQUEST_HEAD = 8192
"""Bytes of request line and headers read before the request is refused."""
READ_TIMEOUT = 10.0


class MetricsServer:
    """Serves ``registry`` at http://<listen>/metrics until ``close()``."""

    def __init__(self, registry: CollectorRegistry, listen: str) -> None:
        self.registry = registry
        self.listen = listen
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        host, port = parse_address("metrics_listen", self.listen)
        try:
            self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_REQUEST_HEAD)
        except OSError as err:
            raise SettingsError(f"cannot serve metrics on {self.listen}: {err.strerror or err}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            if method not in (b"GET", b"HEAD"):
                await _answer(writer, 405, "text/plain; charset=utf-8", b"only GET is served here\n")
            elif path not in (b"/metrics", b"/"):
                await _answer(writer, 404, "text/plain; charset=utf-8", b"metrics are at /metrics\n")
            else:
                body = generate_latest(self.registry)
                await _answer(writer, 200, CONTENT_TYPE_LATEST, body if method == b"GET" else b"", len(body))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            pass  # a client that went away or sent garbage gets nothing more
        except Exception:  # noqa: BLE001 - a bad collector must not take the endpoint down
            log.exception("serving a metrics request failed")
            try:
                await _answer(writer, 500, "text/plain; charset=utf-8", b"collecting metrics failed\n")
            except ConnectionError:
                pass
        finally:
            writer.close()


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


async def _answer(writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes, length: int | None = None) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
