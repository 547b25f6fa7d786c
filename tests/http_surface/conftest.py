"""Fixtures for the HTTP surface tests: real coord-server members with ``--http-listen``.

``http_cluster``: one 3-member cluster for the session (tests keep to their own keys and
names), each member with its own HTTP port; with it, the name -> base URL map.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, free_ports


def add_http(cluster: Cluster, scheme: str = "http") -> dict[str, str]:
    """Give every member of a not yet started cluster an HTTP listener; name -> base URL."""
    ports = free_ports(len(cluster.nodes))
    urls = {}
    for (name, node), port in zip(cluster.nodes.items(), ports):
        node.args += ["--http-listen", f"127.0.0.1:{port}"]
        urls[name] = f"{scheme}://127.0.0.1:{port}"
    return urls


def start_http_cluster(base: Path, size: int = 3) -> tuple[Cluster, dict[str, str]]:
    cluster = Cluster(base, size)
    urls = add_http(cluster)
    cluster.start()
    cluster.wait_for_leader()
    return cluster, urls


@pytest.fixture(scope="session")
def http_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, dict[str, str]]]:
    cluster, urls = None, {}
    try:
        cluster, urls = start_http_cluster(tmp_path_factory.mktemp("http"))
        yield cluster, urls
    finally:
        if cluster is not None:
            cluster.stop_all()
