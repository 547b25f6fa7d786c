"""Node.fail: a storage failure found outside the Ready loop (the transport finding the
snapshot file it sends corrupt) stops the member, as one inside the loop does."""

from __future__ import annotations

import grpc
import pytest

from coord.v1 import kv_pb2
from coord_server.storage.errors import StorageCorruptError

from .conftest import InProcessCluster


async def test_a_failed_node_refuses_writes_and_says_why(cluster: InProcessCluster) -> None:
    kv = cluster.kv()
    await kv.Put(kv_pb2.PutRequest(key=b"a", value=b"1"))
    node = cluster.members[0].node
    assert node is not None and node.failed is None
    err = StorageCorruptError("/data/snap/x.snap", 0, "snapshot does not verify: checksum")
    node.fail(err)
    assert node.failed is err and node.stopping
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await kv.Put(kv_pb2.PutRequest(key=b"b", value=b"2"))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
