"""Fixtures for the tooz driver tests: one real 3-member coord cluster per module.

Every test uses its own group, lock and election names (random ids), so the tests of a
module share the cluster without seeing each other's data.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.harness import Cluster, running_cluster

pytest.importorskip("tooz", reason="the tooz extra is not installed: pip install -e '.[dev]'")


@pytest.fixture(scope="module")
def tooz_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("tooz")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def tooz_url(tooz_cluster: Cluster) -> str:
    return "coord://" + ",".join(node.address for node in tooz_cluster.nodes.values())
