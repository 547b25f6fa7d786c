"""KV.Pipeline: many operations on one stream, each with its unary RPC's semantics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from coord.v1 import kv_pb2, lease_pb2
from coord_server.state.limits import min_lease_ttl

OK = 0
INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]


async def _send(*batches: list[kv_pb2.PipelineOp]) -> AsyncIterator[kv_pb2.PipelineRequest]:
    for ops in batches:
        yield kv_pb2.PipelineRequest(ops=ops)


async def run(stub: object, *batches: list[kv_pb2.PipelineOp]) -> dict[int, kv_pb2.PipelineResult]:
    """Send the batches, half-close, and collect every result by id."""
    results: dict[int, kv_pb2.PipelineResult] = {}
    async for response in stub.Pipeline(_send(*batches), timeout=30):  # type: ignore[attr-defined]
        assert response.header.member_id
        for result in response.results:
            assert result.id not in results, f"result {result.id} came twice"
            results[result.id] = result
    return results


async def test_writes_and_reads_of_one_batch_all_answer(cluster: object) -> None:
    kv = cluster.kv()  # type: ignore[attr-defined]
    ops = [kv_pb2.PipelineOp(id=i, put=kv_pb2.PutRequest(key=b"p%d" % i, value=b"v%d" % i)) for i in range(50)]
    results = await run(kv, ops)
    assert sorted(results) == list(range(50))
    revisions = sorted(r.put.header.revision for r in results.values())
    assert revisions == list(range(revisions[0], revisions[0] + 50)), "each put is its own revision"
    assert all(r.code == OK and r.put.header.cluster_id for r in results.values())
    # A linearizable range after the writes sees all of them.
    results = await run(kv, [kv_pb2.PipelineOp(id=1, range=kv_pb2.RangeRequest(key=b"p", range_end=b"q"))])
    assert results[1].range.count == 50


async def test_one_bad_op_fails_alone(cluster: object) -> None:
    kv = cluster.kv()  # type: ignore[attr-defined]
    ops = [
        kv_pb2.PipelineOp(id=1, put=kv_pb2.PutRequest(key=b"", value=b"x")),
        kv_pb2.PipelineOp(id=2, put=kv_pb2.PutRequest(key=b"good", value=b"x")),
        kv_pb2.PipelineOp(id=3, put=kv_pb2.PutRequest(key=b"leased", value=b"x", lease=424242)),
        kv_pb2.PipelineOp(id=4),
        kv_pb2.PipelineOp(id=5, range=kv_pb2.RangeRequest(key=b"good", serializable=True)),
    ]
    results = await run(kv, ops)
    assert results[1].code == INVALID and "key" in results[1].message
    assert results[2].code == OK
    assert results[3].code == NOT_FOUND
    assert results[4].code == INVALID and "no request" in results[4].message
    assert results[5].code == OK
    # The unary API agrees with what the pipeline wrote.
    got = await kv.Range(kv_pb2.RangeRequest(key=b"good"))
    assert got.kvs[0].value == b"x"


async def test_exactly_once_through_the_pipeline(cluster: object) -> None:
    kv = cluster.kv()  # type: ignore[attr-defined]
    op = kv_pb2.PipelineOp(id=1, client_id="pipe-client", seq=7, put=kv_pb2.PutRequest(key=b"once", value=b"1"))
    first = (await run(kv, [op]))[1]
    again = (await run(kv, [op]))[1]
    assert first.code == again.code == OK
    assert first.put.header.revision == again.put.header.revision
    got = await kv.Range(kv_pb2.RangeRequest(key=b"once"))
    assert got.kvs[0].version == 1, "the retried put was applied once"


async def test_an_empty_message_ends_the_stream_with_invalid_argument(cluster: object) -> None:
    kv = cluster.kv()  # type: ignore[attr-defined]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await run(kv, [])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.cluster(size=3)
async def test_a_follower_pipelines_writes_to_the_leader(cluster: object) -> None:
    follower = cluster.followers()[0]  # type: ignore[attr-defined]
    kv = cluster.kv(follower)  # type: ignore[attr-defined]
    pending = {i: kv_pb2.PipelineOp(id=i, put=kv_pb2.PutRequest(key=b"f%d" % i, value=b"v")) for i in range(20)}
    for _ in range(50):
        # UNAVAILABLE means "not applied, retry" (e.g. the follower has not yet heard
        # from a new leader on a busy machine); a client resends such operations.
        results = await run(kv, list(pending.values()))
        unavailable = grpc.StatusCode.UNAVAILABLE.value[0]
        assert all(r.code in (OK, unavailable) for r in results.values()), [r.message for r in results.values()]
        pending = {i: op for i, op in pending.items() if results[i].code != OK}
        if not pending:
            break
    assert not pending
    leader_kv = cluster.kv(cluster.leader())  # type: ignore[attr-defined]
    got = await leader_kv.Range(kv_pb2.RangeRequest(key=b"f", range_end=b"g", count_only=True))
    assert got.count == 20


async def test_lease_grants_through_the_pipeline(cluster: object) -> None:
    """lease_grant ops: each a Lease.Grant (TTL raised to the minimum, an ID chosen or
    the one asked for, a duplicate ID refused alone), exactly once."""
    kv, lease = cluster.kv(), cluster.lease()  # type: ignore[attr-defined]
    ops = [kv_pb2.PipelineOp(id=i, lease_grant=lease_pb2.LeaseGrantRequest(ttl=60)) for i in range(1, 21)]
    ops.append(kv_pb2.PipelineOp(id=21, lease_grant=lease_pb2.LeaseGrantRequest(ttl=1)))
    ops.append(kv_pb2.PipelineOp(id=22, lease_grant=lease_pb2.LeaseGrantRequest(ttl=60, id=777)))
    ops.append(kv_pb2.PipelineOp(id=23, lease_grant=lease_pb2.LeaseGrantRequest(ttl=60, id=777)))
    ops.append(kv_pb2.PipelineOp(id=24, lease_grant=lease_pb2.LeaseGrantRequest(ttl=-1)))
    ops.append(kv_pb2.PipelineOp(id=25, client_id="grant-client", seq=3, lease_grant=lease_pb2.LeaseGrantRequest(ttl=60)))
    results = await run(kv, ops)
    ids = {results[i].lease_grant.id for i in range(1, 21)}
    assert all(results[i].code == OK for i in range(1, 23)) and len(ids) == 20 and 0 not in ids
    minimum = min_lease_ttl(cluster.leader().node.config.election_timeout)  # type: ignore[attr-defined]
    assert results[21].lease_grant.ttl == max(1, minimum), "a TTL below the minimum is raised to it"
    assert results[22].lease_grant.id == 777
    assert [results[23].code, results[24].code] == [grpc.StatusCode.FAILED_PRECONDITION.value[0], INVALID]
    again = (await run(kv, [ops[-1]]))[25]
    assert again.code == OK and again.lease_grant.id == results[25].lease_grant.id, "the retried grant was applied once"
    listed = {le.id for le in (await lease.List(lease_pb2.LeaseListRequest())).leases}
    assert ids | {777, results[21].lease_grant.id, results[25].lease_grant.id} == listed
