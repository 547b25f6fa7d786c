"""Fixtures: ``endpoint`` runs each test against coord and against real etcd 3.4 (the
same assertions), ``coord`` is a coord member alone. See servers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.etcd.servers import Endpoint, start_coord, start_etcd


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    endpoint = start_coord(tmp_path_factory.mktemp("coord"))
    try:
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture(scope="module", params=["coord", "etcd-3.4"])
def endpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    base = tmp_path_factory.mktemp(request.param)
    server = start_coord(base) if request.param == "coord" else start_etcd(request.param, base)
    try:
        yield server
    finally:
        server.stop()
