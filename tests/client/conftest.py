"""Fixtures for the client tests: real coord-server processes (tests/integration/harness.py).

- ``shared_cluster``: one 3-node cluster for the whole session, for every test that does
  not crash nodes (each cluster start costs seconds on two busy cores). Tests keep to
  their own keys (``ns``, a unique prefix) so they do not see each other's data.
- ``new_cluster(size=3, **options)``: a started cluster of the test's own, for the tests
  that kill members; stopped after the test.
- ``client`` / ``aclient_endpoints``: a sync Client on the shared cluster, its endpoints.

When a test fails, its report gets each node's state and log tail.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coord_client import Client
from tests.integration.conftest import CLUSTERS
from tests.integration.harness import Cluster, HarnessError

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"

_SHARED: list[Cluster] = []


def wait_for_ports(cluster: Cluster, timeout: float = 30.0) -> None:
    """Wait until every member accepts TCP connections, so that the harness's gRPC
    channels (created afterwards) connect at once instead of backing off."""
    deadline = time.monotonic() + timeout
    for node in cluster.nodes.values():
        host, _, port = node.address.rpartition(":")
        while True:
            try:
                with socket.create_connection((host, int(port)), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise HarnessError(f"{node.name} does not listen on {node.address}") from None
                if cluster.exited_unexpectedly():
                    raise HarnessError("; ".join(cluster.exited_unexpectedly())) from None
                time.sleep(0.05)


def endpoints_of(cluster: Cluster) -> str:
    return ",".join(n.address for n in cluster.nodes.values())


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("shared-cluster"), 3)
    _SHARED.append(c)
    try:
        c.start()
        wait_for_ports(c)
        c.wait_for_leader()
        yield c
    finally:
        c.stop_all()
        _SHARED.remove(c)


@pytest.fixture
def new_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(size: int = 3, **kwargs: Any) -> Cluster:
        c = Cluster(tmp_path / f"cluster{len(made) + 1}", size, **kwargs)
        made.append(c)
        request.node.stash.setdefault(CLUSTERS, []).append(c)
        c.start()
        wait_for_ports(c)
        c.wait_for_leader()
        return c

    try:
        yield make
    finally:
        for c in made:
            c.stop_all()


@pytest.fixture
def endpoints(shared_cluster: Cluster) -> str:
    return endpoints_of(shared_cluster)


@pytest.fixture
def client(endpoints: str) -> Iterator[Client]:
    with Client(endpoints) as c:
        yield c


@pytest.fixture
def ns() -> str:
    """A unique key prefix for one test."""
    return f"t-{uuid.uuid4().hex[:8]}/"


@pytest.fixture
def cli_env(endpoints: str) -> dict[str, str]:
    """The environment for running coordctl (and README snippets) against the shared
    cluster."""
    env = dict(os.environ)
    env["COORD_ENDPOINTS"] = endpoints
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    return env


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        time.sleep(0.05)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    outcome: Any = yield
    report = outcome.get_result()
    if report.failed:
        clusters: list[Cluster] = list(item.stash[CLUSTERS]) if CLUSTERS in item.stash else []
        if "shared_cluster" in getattr(item, "fixturenames", ()):
            clusters += _SHARED
        for i, c in enumerate(clusters, 1):
            report.sections.append((f"coord cluster {i} ({c.base_dir}), {report.when}", c.describe()))
