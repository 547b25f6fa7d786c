"""A TCP fault proxy per directed peer link, on the harness's asyncio loop.

Member A reaches member B at ``Link(A, B).port`` (coord-server ``--peer-override``), and
the link forwards to B's real address. Everything A sends to B (Raft messages, snapshot
chunks, forwarded client writes and their answers) crosses that one link; B's messages to
A cross ``Link(B, A)``. So a partition is real TCP behaviour on real sockets:

* ``ok``: bytes flow (after ``delay`` seconds in each direction: a slow link);
* ``stall``: nothing flows; bytes wait in the socket buffers, the senders' writes block
  once those are full (as when packets are dropped and TCP retransmits); new connections
  are accepted but not forwarded. Healing lets the held bytes through, as TCP would;
* ``cut``: every connection is reset (RST) at once, new ones are accepted and reset.

A one-way partition cuts A→B and leaves B→A alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from dataclasses import dataclass, field

CHUNK = 256 * 1024


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a peer that lost the connection state would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        writer.close()


@dataclass(eq=False)
class _Conn:
    down_writer: asyncio.StreamWriter
    up_writer: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        _reset(self.down_writer)
        if self.up_writer is not None:
            _reset(self.up_writer)
        for task in self.tasks:
            task.cancel()


class Link:
    """The proxy of one directed link ``src`` → ``dst``."""

    def __init__(self, src: str, dst: str, port: int, target: tuple[str, int]) -> None:
        self.src, self.dst, self.port, self.target = src, dst, port, target
        self.mode = "ok"
        self.delay = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._conns: set[_Conn] = set()
        self._server: asyncio.Server | None = None
        self.bytes = 0
        self.connections = 0

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.reset()
        self._conns.clear()

    # -- control ---------------------------------------------------------------

    def set(self, mode: str, delay: float | None = None) -> None:
        if delay is not None:
            self.delay = delay
        if mode == self.mode:
            return
        self.mode = mode
        if mode == "ok":
            self._flowing.set()
        elif mode == "stall":
            self._flowing.clear()
        elif mode == "cut":
            self._flowing.clear()
            for conn in list(self._conns):
                conn.reset()
            self._conns.clear()
        else:
            raise ValueError(mode)

    def heal(self) -> None:
        self.delay = 0.0
        self.set("ok")

    # -- data path -------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            _reset(writer)
            return
        conn = _Conn(writer)
        self._conns.add(conn)
        self.connections += 1
        try:
            await self._flowing.wait()  # a stalled link holds new connections too
            if conn not in self._conns:
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                _reset(writer)  # the member is down: the peer sees its connection refused
                return
            conn.up_writer = up_writer
            if conn not in self._conns:  # cut while connecting
                conn.reset()
                return
            conn.tasks = [
                asyncio.current_task(),  # type: ignore[list-item]
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            await self._pump(reader, up_writer)
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.discard(conn)
            for task in conn.tasks[1:]:
                task.cancel()
            with contextlib.suppress(Exception):
                writer.close()
            if conn.up_writer is not None:
                with contextlib.suppress(Exception):
                    conn.up_writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction. With a delay, a writer task sends each chunk once it is due
        (order kept); the reader still waits for the link to flow, so a stall pushes back."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def send() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    with contextlib.suppress(Exception):
                        writer.write_eof()
                    return
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    await queue.put(None)
                    await sender
                    return
                self.bytes += len(data)
                await queue.put((time.monotonic() + self.delay, data))
                if queue.qsize() > 64:  # bound what a slow link buffers
                    while queue.qsize() > 8 and not sender.done():
                        await asyncio.sleep(0.005)
                if sender.done():
                    return
        except (ConnectionError, OSError):
            return
        finally:
            if not sender.done():
                sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            # One direction ended (EOF or error): end the other too.
            with contextlib.suppress(Exception):
                writer.close()


class Mesh:
    """A Link for every ordered pair of member names."""

    def __init__(self, names: list[str], real: dict[str, tuple[str, int]], ports: list[int]) -> None:
        self.links: dict[tuple[str, str], Link] = {}
        it = iter(ports)
        for a in names:
            for b in names:
                if a != b:
                    self.links[(a, b)] = Link(a, b, next(it), real[b])

    @staticmethod
    def ports_needed(n: int) -> int:
        return n * (n - 1)

    async def start(self) -> None:
        for link in self.links.values():
            await link.start()

    async def close(self) -> None:
        for link in self.links.values():
            await link.close()

    def overrides(self, name: str) -> list[str]:
        """coord-server flags routing ``name``'s outgoing peer traffic through its links."""
        return [f"{b}=127.0.0.1:{link.port}" for (a, b), link in self.links.items() if a == name]

    def link(self, a: str, b: str) -> Link:
        return self.links[(a, b)]

    def heal(self) -> None:
        for link in self.links.values():
            link.heal()

    def partition(self, groups: list[list[str]], mode: str) -> None:
        """Cut (or stall) every link between different groups, both ways. Names in no
        group keep all their links (a bridge)."""
        where = {n: i for i, g in enumerate(groups) for n in g}
        for (a, b), link in self.links.items():
            if a in where and b in where and where[a] != where[b]:
                link.set(mode)

    def isolate(self, name: str, mode: str, inbound: bool = True, outbound: bool = True) -> None:
        for (a, b), link in self.links.items():
            if (outbound and a == name) or (inbound and b == name):
                link.set(mode)

    def degraded(self) -> list[str]:
        return [f"{l.name}:{l.mode}{f'+{l.delay * 1000:.0f}ms' if l.delay else ''}" for l in self.links.values()
                if l.mode != "ok" or l.delay]
