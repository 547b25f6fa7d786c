"""Fixtures for integration tests: real coord-server processes (see harness.py).

- ``cluster``: a started 3-node cluster with an elected leader.
- ``make_cluster(size=3, options=(...))``: build more (or differently configured) clusters;
  each is started, waited on for a leader, and stopped after the test.

Every cluster is killed (SIGKILL, by pid) in a finalizer whatever happens, and when a test
fails, its report gets a section with each node's state and the tail of its log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster

CLUSTERS = pytest.StashKey[list[Cluster]]()


def _register(request: pytest.FixtureRequest, cluster: Cluster) -> None:
    request.node.stash.setdefault(CLUSTERS, []).append(cluster)


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(size: int = 3, *, start: bool = True, wait: bool = True, **kwargs: Any) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(made) + 1}", size, **kwargs)
        made.append(cluster)
        _register(request, cluster)
        if start:
            cluster.start()
            if wait:
                cluster.wait_for_leader()
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.stop_all()


@pytest.fixture
def cluster(make_cluster: Callable[..., Cluster]) -> Cluster:
    return make_cluster()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    outcome: Any = yield
    report = outcome.get_result()
    if report.failed:
        clusters: list[Cluster] = item.stash[CLUSTERS] if CLUSTERS in item.stash else []
        for i, cluster in enumerate(clusters, 1):
            report.sections.append((f"coord cluster {i} ({cluster.base_dir}), {report.when}", cluster.describe()))
