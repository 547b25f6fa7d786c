"""The fault proxy on its own (in-process, an echo server behind it): bytes flow, a delay
delays, a stall holds bytes and releases them in order, a cut resets connections."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.chaos.proxy import Link, Mesh
from tests.integration.harness import free_ports


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _with_link(body: object) -> None:
    server, port = await _echo_server()
    (proxy_port,) = free_ports(1)
    link = Link("a", "b", proxy_port, ("127.0.0.1", port))
    await link.start()
    try:
        await body(link)  # type: ignore[operator]
    finally:
        await link.close()
        server.close()


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, timeout: float = 5) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), timeout)


def test_ok_delay_stall_cut() -> None:
    async def body(link: Link) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
        assert await _roundtrip(reader, writer, b"hello") == b"hello"
        # Delay: each direction waits; order is kept.
        link.set("ok", delay=0.1)
        started = time.monotonic()
        assert await _roundtrip(reader, writer, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.18
        link.heal()
        # Stall: nothing comes back until the link heals, then everything, in order.
        link.set("stall")
        writer.write(b"held-1")
        writer.write(b"held-2")
        await writer.drain()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.readexactly(12), 0.3)
        link.heal()
        assert await asyncio.wait_for(reader.readexactly(12), 5) == b"held-1held-2"
        # Cut: the connection is reset, and so is a new one until the link heals.
        link.set("cut")
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await _roundtrip(reader, writer, b"gone")
        r2, w2 = await asyncio.open_connection("127.0.0.1", link.port)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await _roundtrip(r2, w2, b"refused")
        link.heal()
        r3, w3 = await asyncio.open_connection("127.0.0.1", link.port)
        assert await _roundtrip(r3, w3, b"back") == b"back"
        w3.close()

    asyncio.run(_with_link(body))


def test_mesh_partitions_and_overrides() -> None:
    names = ["n1", "n2", "n3"]
    ports = free_ports(Mesh.ports_needed(3))
    mesh = Mesh(names, {n: ("127.0.0.1", 1000 + i) for i, n in enumerate(names)}, ports)
    assert len(mesh.overrides("n1")) == 2 and all(o.startswith(("n2=", "n3=")) for o in mesh.overrides("n1"))
    mesh.partition([["n1"], ["n2", "n3"]], "cut")
    modes = {k: link.mode for k, link in mesh.links.items()}
    assert modes[("n1", "n2")] == modes[("n2", "n1")] == modes[("n3", "n1")] == "cut"
    assert modes[("n2", "n3")] == modes[("n3", "n2")] == "ok"
    mesh.heal()
    mesh.isolate("n2", "stall", inbound=False, outbound=True)  # n2 cannot send
    assert mesh.link("n2", "n1").mode == "stall" and mesh.link("n1", "n2").mode == "ok"
    # A bridge: n2 is in no group and keeps both sides.
    mesh.heal()
    mesh.partition([["n1"], ["n3"]], "cut")
    assert mesh.link("n1", "n3").mode == "cut" and mesh.link("n1", "n2").mode == "ok" and mesh.link("n2", "n3").mode == "ok"
