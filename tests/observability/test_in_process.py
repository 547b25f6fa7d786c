"""Several members with metrics in one process: each has its own CollectorRegistry and
endpoint (no clash in prometheus_client's global registry), and each endpoint shows only
its own member."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from coord_server.server import CoordServer
from coord_server.settings import ServerSettings
from tests.integration.harness import free_ports
from tests.observability.scrape import scrape, value


def test_two_members_in_one_process_have_separate_metrics(tmp_path: Path) -> None:
    async def run() -> None:
        ports = free_ports(4)
        servers = [
            CoordServer(ServerSettings(
                name=name, data_dir=str(tmp_path / name), listen=f"127.0.0.1:{ports[i]}",
                metrics_listen=f"127.0.0.1:{ports[i + 2]}",
            ))
            for i, name in enumerate(("solo-a", "solo-b"))
        ]
        try:
            for server in servers:
                await server.start()
            for server in servers:
                assert server.node is not None
                await asyncio.wait_for(_until_leader(server), 30)
            for i, server in enumerate(servers):
                samples = await asyncio.to_thread(scrape, f"127.0.0.1:{ports[i + 2]}")
                names = {dict(labels)["name"] for (metric, labels) in samples if metric == "coord_member_info"}
                assert names == {server.settings.name}
                assert value(samples, "coord_is_leader") == 1
                assert value(samples, "coord_leader_changes_total") == 1
            request = urllib.request.Request(f"http://127.0.0.1:{ports[2]}/metrics", data=b"x", method="POST")
            with pytest.raises(urllib.error.HTTPError) as refused:
                await asyncio.to_thread(urllib.request.urlopen, request, None, 5)
            assert refused.value.code == 405
        finally:
            for server in servers:
                await server.stop(grace=0.5)

    asyncio.run(run())


async def _until_leader(server: CoordServer) -> None:
    assert server.node is not None
    while not server.node.is_leader:
        await asyncio.sleep(0.02)
