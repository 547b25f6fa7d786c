"""``coord_client.snapshot.save_snapshot`` keeps only what it checked: against an
in-process Maintenance server that sends a good snapshot, one with a wrong checksum, one
that stops early and one that fails, only the good one lands at the destination, and no
``.part`` file is ever left behind; ``read_snapshot_file`` reads back exactly the bytes."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from coord.v1 import maintenance_pb2, maintenance_pb2_grpc
from coord_client import AsyncClient, errors
from coord_client.snapshot import SnapshotFileError, read_snapshot_file, save_snapshot

PAYLOAD = bytes(range(256)) * 9000  # about 2.3 MB: three chunks of 1 MiB at most


class FakeMaintenance(maintenance_pb2_grpc.MaintenanceServicer):
    def __init__(self, mode: str) -> None:
        self.mode = mode

    async def Snapshot(
        self, request: maintenance_pb2.MaintenanceSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[maintenance_pb2.MaintenanceSnapshotResponse]:
        if self.mode == "unavailable":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no leader is elected yet; retry shortly")
        digest = hashlib.sha256(PAYLOAD).hexdigest()
        if self.mode == "bad-checksum":
            digest = hashlib.sha256(b"something else").hexdigest()
        chunks = [PAYLOAD[i : i + (1 << 20)] for i in range(0, len(PAYLOAD), 1 << 20)]
        sent = 0
        for n, chunk in enumerate(chunks):
            if self.mode == "early-end" and n == len(chunks) - 1:
                return
            sent += len(chunk)
            last = n == len(chunks) - 1
            yield maintenance_pb2.MaintenanceSnapshotResponse(
                blob=chunk, remaining_bytes=len(PAYLOAD) - sent, total_bytes=len(PAYLOAD),
                applied_index=77, revision=42, sha256=digest if last else "",
            )


async def _save(mode: str, path: Path) -> object:
    server = grpc.aio.server()
    maintenance_pb2_grpc.add_MaintenanceServicer_to_server(FakeMaintenance(mode), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with AsyncClient(f"127.0.0.1:{port}", timeout=10) as client:
            return await save_snapshot(client, str(path))
    finally:
        await server.stop(0)


def test_good_snapshot_is_saved_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "good.snap"
    info = asyncio.run(_save("good", path))
    assert info.size == len(PAYLOAD) and info.applied_index == 77 and info.revision == 42  # type: ignore[attr-defined]
    assert read_snapshot_file(str(path)) == PAYLOAD
    assert path.stat().st_size == len(PAYLOAD) + 32
    assert not (tmp_path / "good.snap.part").exists()


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        ("bad-checksum", SnapshotFileError, "does not match its checksum"),
        ("early-end", SnapshotFileError, "ended early"),
        ("unavailable", errors.Unavailable, "no leader"),
    ],
)
def test_bad_download_saves_nothing(tmp_path: Path, mode: str, error: type[Exception], message: str) -> None:
    path = tmp_path / "backup.snap"
    path.write_bytes(b"an older backup")  # must survive a failed download untouched
    with pytest.raises(error, match=message):
        asyncio.run(_save(mode, path))
    assert path.read_bytes() == b"an older backup"
    assert [p.name for p in tmp_path.iterdir()] == ["backup.snap"]
