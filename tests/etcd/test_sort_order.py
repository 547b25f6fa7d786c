"""Ranges sorted by version, create/mod revision or value come back in etcd 3.5.1's exact
order, ties included (coord_server/etcd/gosort.py reproduces Go 1.16's unstable
sort.Sort); ranges of up to 150 keys reach its quicksort and heap paths. etcd 3.4.23
(Go 1.19) orders ties differently: docs/etcd.md."""

from __future__ import annotations

import random
from collections.abc import Iterator

import grpc
import pytest

from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.etcdserverpb import rpc_pb2_grpc as etcd_grpc
from tests.etcd.servers import Endpoint, start_etcd


@pytest.fixture(scope="module")
def etcd35(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    server = start_etcd("etcd-3.5", tmp_path_factory.mktemp("etcd-3.5"))
    try:
        yield server
    finally:
        server.stop()


def test_sorted_ranges_match_etcd_35_tie_for_tie(coord: Endpoint, etcd35: Endpoint) -> None:
    rng = random.Random(5)
    with grpc.insecure_channel(coord.grpc) as a, grpc.insecure_channel(etcd35.grpc) as b:
        stubs = [etcd_grpc.KVStub(a), etcd_grpc.KVStub(b)]
        for size in (7, 13, 41, 150):
            prefix = b"sorted%03d/" % size
            writes = [(prefix + b"%03d" % rng.randrange(size), rng.choice([b"a", b"b", b"c"])) for _ in range(2 * size)]
            for stub in stubs:
                for key, value in writes:
                    stub.Put(etcd.PutRequest(key=key, value=value), timeout=10)
            for target in (etcd.RangeRequest.VERSION, etcd.RangeRequest.CREATE, etcd.RangeRequest.MOD, etcd.RangeRequest.VALUE):
                for order in (etcd.RangeRequest.NONE, etcd.RangeRequest.ASCEND, etcd.RangeRequest.DESCEND):
                    for limit in (0, 3):
                        request = etcd.RangeRequest(
                            key=prefix, range_end=prefix[:-1] + bytes([prefix[-1] + 1]), sort_target=target,
                            sort_order=order, limit=limit, keys_only=limit == 3,
                        )
                        ours, theirs = (stub.Range(request, timeout=10) for stub in stubs)
                        assert [(kv.key, kv.value) for kv in ours.kvs] == [(kv.key, kv.value) for kv in theirs.kvs], (
                            size, target, order, limit)
                        assert (ours.more, ours.count) == (theirs.more, theirs.count)
