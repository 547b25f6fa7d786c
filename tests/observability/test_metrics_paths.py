"""The metrics endpoint answers as docs/observability.md says: the metrics at /metrics and
at /, 404 for any other path, 405 for any other method."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from coord_server.metrics_http import MetricsServer
from tests.client.conftest import ROOT


def fetch(url: str, method: str = "GET") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


def test_metrics_paths_are_as_documented() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text()
    assert "also at `/`" in doc and "any other path answers\n404" in doc

    async def main() -> list[tuple[int, str]]:
        registry = CollectorRegistry()
        Counter("coord_probe_total", "a probe", registry=registry).inc()
        with socket.socket() as probe:  # a free port (the server refuses port 0)
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = MetricsServer(registry, f"127.0.0.1:{port}")
        await server.start()
        try:
            base = f"http://127.0.0.1:{server.port}"
            loop = asyncio.get_running_loop()
            return [await loop.run_in_executor(None, fetch, base + path, method)
                    for path, method in (("/metrics", "GET"), ("/", "GET"), ("/other", "GET"), ("/metrics", "POST"))]
        finally:
            await server.close()

    metrics, root, other, post = asyncio.run(main())
    assert metrics[0] == 200 and "coord_probe_total 1.0" in metrics[1]
    assert root == metrics
    assert other[0] == 404 and post[0] == 405
