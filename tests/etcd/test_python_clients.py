"""python-etcd3 and aetcd, unmodified from the package registry, through their main
operations: the same client scripts (tests/etcd/clients/) against coord and real etcd."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.etcd.servers import Endpoint, run_client

CLIENTS = Path(__file__).parent / "clients"


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"SKIPPED LOUDLY: {module} is not installed (pip install -e '.[etcd-tests]'); its test did not run")


@pytest.mark.parametrize("script, module", [("etcd3_client.py", "etcd3"), ("aetcd_client.py", "aetcd")])
def test_client_library(endpoint: Endpoint, script: str, module: str) -> None:
    _require(module)
    done = run_client(CLIENTS / script, endpoint.grpc)
    assert done.returncode == 0 and done.stdout.strip().endswith("ALL OK"), (
        f"{module} against {endpoint.name}:\n{done.stdout}\n{done.stderr[-3000:]}"
    )
