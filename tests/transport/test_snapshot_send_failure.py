"""A leader streaming a snapshot from its file reports every failure to the core.

The core keeps a follower waiting for a snapshot (no replication to it) until the
transport reports how the send ended. A file found corrupt mid-stream made grpc.aio
cancel the call, and a missing file failed before the call: neither was reported, so
the follower was left behind until the next leader. Corruption also stops the member
(DESIGN.md), through ``on_corrupt``."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from pathlib import Path

import grpc

from coord.raft.v1 import raft_pb2_grpc
from coord_server.raft import ConfState, HardState, Message, MessageType
from coord_server.storage.errors import StorageCorruptError
from coord_server.storage.snapshot import FileSnapshot
from coord_server.transport import PeerTransport, RaftPeerService
from tests.integration.harness import free_ports
from tests.storage.helpers import CLUSTER, entry, open_disk

SIZE = 3 << 20  # three pieces (SNAPSHOT_CHUNK_BYTES): the damage is met after some went out


async def _never(kind: int, payload: bytes, timeout: float | None) -> bytes:
    raise AssertionError("no forwards here")


async def _snapshot_file(data_dir: str) -> FileSnapshot:
    with open_disk(data_dir) as disk:
        await disk.save_async(HardState(1, 1, 2), [entry(1), entry(2)])
        writer = disk.begin_snapshot(2, ConfState(frozenset({1, 2})))
        await disk.snapshot_io(functools.partial(writer.write, os.urandom(SIZE)))
        snap = await disk.snapshot_io(writer.finish)
        await disk.record_snapshot_async(snap)
        assert isinstance(snap, FileSnapshot)
        return snap


async def _send(tmp_path: Path, spoil: Callable[[str], None]) -> tuple[list[tuple[int, bool]], list[BaseException], list[Message]]:
    """Send a snapshot from a file that ``spoil`` has damaged; the status reports, the
    corruption reports and the messages the follower took."""
    snap = await _snapshot_file(str(tmp_path / "leader"))
    spoil(snap.path)
    (port,) = free_ports(1)
    delivered: list[Message] = []
    server = grpc.aio.server()
    raft_pb2_grpc.add_RaftServicer_to_server(RaftPeerService(CLUSTER, 2, delivered.append, _never), server)
    assert server.add_insecure_port(f"127.0.0.1:{port}") == port
    await server.start()
    statuses: list[tuple[int, bool]] = []
    corrupt: list[BaseException] = []
    reported = asyncio.Event()

    def on_status(node_id: int, failed: bool) -> None:
        statuses.append((node_id, failed))
        reported.set()

    transport = PeerTransport(
        CLUSTER, on_unreachable=lambda nid: None, on_snapshot_status=on_status, on_corrupt=corrupt.append
    )
    transport.set_address(2, f"127.0.0.1:{port}")
    try:
        transport.send([Message(MessageType.SNAP, to=2, from_=1, term=1, snapshot=snap)])
        await asyncio.wait_for(reported.wait(), timeout=60)
    finally:
        await transport.close()
        await server.stop(0)
    return statuses, corrupt, delivered


def _damage_the_middle(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_sound_file_is_sent_and_reported_sent(tmp_path: Path) -> None:
    statuses, corrupt, delivered = asyncio.run(_send(tmp_path, lambda path: None))
    assert statuses == [(2, False)] and corrupt == []
    assert [m.type for m in delivered] == [MessageType.SNAP] and len(delivered[0].snapshot.data) == SIZE  # type: ignore[union-attr]


def test_a_file_corrupt_mid_stream_is_reported_failed_and_corrupt(tmp_path: Path) -> None:
    statuses, corrupt, delivered = asyncio.run(_send(tmp_path, _damage_the_middle))
    assert statuses == [(2, True)]
    assert len(corrupt) == 1 and isinstance(corrupt[0], StorageCorruptError)
    assert delivered == []


def test_a_missing_file_is_reported_failed_and_corrupt(tmp_path: Path) -> None:
    statuses, corrupt, delivered = asyncio.run(_send(tmp_path, os.remove))
    assert statuses == [(2, True)]
    assert len(corrupt) == 1 and "missing" in str(corrupt[0])
    assert delivered == []
