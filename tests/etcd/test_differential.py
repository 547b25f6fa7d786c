"""Differential tests against real etcd (differential.py): a seeded random sequence of
KV, Txn, Compact, Lease and Watch operations to coord and to etcd 3.4 and 3.5.1, answers
compared field by field. The seed is fixed for a repeatable suite run plus one fresh
seed per run (printed on failure with the shortest failing sequence); set
COORD_DIFF_SEED to replay one, COORD_DIFF_OPS for longer runs."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import grpc
import pytest

from tests.etcd import differential
from tests.etcd.servers import Endpoint, start_etcd

OPS = int(os.environ.get("COORD_DIFF_OPS", "1000"))


def _seeds() -> list[int]:
    if "COORD_DIFF_SEED" in os.environ:
        return [int(os.environ["COORD_DIFF_SEED"])]
    return [1, random.SystemRandom().randrange(1, 1 << 31)]


@pytest.fixture(scope="module", params=["etcd-3.4", "etcd-3.5"])
def real_etcd(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    server = start_etcd(request.param, tmp_path_factory.mktemp(request.param))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("seed", _seeds())
def test_same_answers_as_etcd(coord: Endpoint, real_etcd: Endpoint, seed: int) -> None:
    with grpc.insecure_channel(coord.grpc) as a, grpc.insecure_channel(real_etcd.grpc) as b:
        # etcd 3.4 and 3.5.1 order equal sort values differently; coord follows 3.5.1.
        ties = real_etcd.name == "etcd-3.4"
        ours, theirs = differential.Side(a, ties_by_key=ties), differential.Side(b, ties_by_key=ties)
        ops = differential.generate(seed, OPS)
        found = differential.run(ours, theirs, ops)
        if found is not None:
            shortest = differential.shrink(ours, theirs, ops[: found.index + 1])
            pytest.fail(f"against {real_etcd.name}: " + differential.describe(seed, found, shortest), pytrace=False)
