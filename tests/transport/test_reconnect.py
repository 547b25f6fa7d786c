"""Regression (found by tests/chaos): a peer that was down is reached again promptly once
it is back. gRPC's default reconnect backoff grows towards 120 s while a peer is down, so
a member restarted after 30 s stayed cut off from the leader for another ~15 s."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from coord.raft.v1 import raft_pb2_grpc
from coord_server.raft import Message, MessageType
from coord_server.transport import PeerTransport, RaftPeerService
from coord_server.transport.grpc_peer import RECONNECT_OPTIONS
from tests.integration.harness import free_ports

CLUSTER = 7
DOWN_SECONDS = 10.0


def test_peer_channels_cap_the_reconnect_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer channel is opened with the capped backoff (not just the constant)."""
    opened: list[dict[str, object]] = []
    real = grpc.aio.insecure_channel

    def recording(target: str, options: list[tuple[str, object]] | None = None, **kw: object) -> grpc.aio.Channel:
        opened.append(dict(options or ()))
        return real(target, options=options, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(grpc.aio, "insecure_channel", recording)

    async def main() -> None:
        transport = PeerTransport(CLUSTER, on_unreachable=lambda nid: None, on_snapshot_status=lambda nid, failed: None)
        transport.set_address(2, "127.0.0.1:1")
        peer = transport._peer(2)
        assert peer is not None
        peer.stub()
        await transport.close()

    asyncio.run(main())
    assert opened, "no peer channel was opened"
    options = opened[0]
    assert options["grpc.max_reconnect_backoff_ms"] <= 1000
    assert all(options.get(k) == v for k, v in RECONNECT_OPTIONS)


async def _never(kind: int, payload: bytes, timeout: float | None) -> bytes:
    raise AssertionError("no forwards here")


async def _reconnect_delay() -> float:
    (port,) = free_ports(1)
    delivered = asyncio.Event()
    transport = PeerTransport(CLUSTER, on_unreachable=lambda nid: None, on_snapshot_status=lambda nid, failed: None)
    transport.set_address(2, f"127.0.0.1:{port}")

    async def heartbeats() -> None:
        while not delivered.is_set():
            transport.send([Message(MessageType.HEARTBEAT, to=2, from_=1, term=1)])
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(heartbeats())
    server = None
    try:
        await asyncio.sleep(DOWN_SECONDS)  # the peer is down: every attempt is refused
        server = grpc.aio.server()
        raft_pb2_grpc.add_RaftServicer_to_server(RaftPeerService(CLUSTER, 2, lambda m: delivered.set(), _never), server)
        assert server.add_insecure_port(f"127.0.0.1:{port}") == port
        await server.start()
        back = time.monotonic()
        await asyncio.wait_for(delivered.wait(), timeout=60)
        return time.monotonic() - back
    finally:
        sender.cancel()
        await transport.close()
        if server is not None:
            await server.stop(0)


@pytest.mark.slow
def test_a_peer_back_after_a_while_is_reached_within_seconds() -> None:
    delay = asyncio.run(_reconnect_delay())
    # With the cap: about a second (the sender's own backoff is at most 1 s). Without it,
    # the next attempt after 10 s down comes ~3-7 s after the peer is back.
    assert delay < 2.5, f"the first message reached the restarted peer {delay:.1f} s after it was back"
