"""A member removed from its cluster notices, says so in its log and health, sends its
clients to the remaining members and idles (coord_server/removal.py; issue 17, defect 2).

Two ways to be removed: while running (it may apply its own removal), and while down
(it restarts into a cluster that no longer has it, and must find out by asking)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coord.v1 import kv_pb2
from coord_client import Client
from tests.client.conftest import endpoints_of, wait_for
from tests.integration.harness import Cluster

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def health_of(cluster: Cluster, name: str) -> int:
    try:
        stub = cluster.stub(name, health_pb2_grpc.HealthStub)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status)
    except grpc.RpcError:
        return -1


def check_idle_and_redirecting(cluster: Cluster, victim: str) -> None:
    wait_for(lambda: "was removed from the cluster" in cluster.log_tail(victim, 200), 30,
             f"{victim} to log its removal")
    wait_for(lambda: health_of(cluster, victim) == health_pb2.HealthCheckResponse.NOT_SERVING, 10,
             f"{victim}'s health to say NOT_SERVING")
    with pytest.raises(grpc.RpcError) as refused:
        cluster.kv(victim).Put(kv_pb2.PutRequest(key=b"k", value=b"v"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    others = [n for n in cluster.nodes if n != victim]
    for name in others:
        assert f"{name}={cluster.nodes[name].address}" in (refused.value.details() or "")
    # A client that knows only the removed member is sent on to the cluster.
    with Client([cluster.nodes[victim].address], timeout=15) as client:
        client.put("after-removal", "ok")
    assert cluster.nodes[victim].running, "the removed member idles; it does not exit"


def test_member_removed_while_down_finds_out_when_it_restarts(new_cluster: Callable[..., Cluster]) -> None:
    cluster = new_cluster(3)
    leader = cluster.wait_for_leader()
    victim = next(n for n in cluster.nodes if n != leader)
    cluster.status(victim)  # learns its member ID
    member_id = cluster.nodes[victim].member_id
    cluster.kill(victim)
    with Client(",".join(cluster.nodes[n].address for n in cluster.nodes if n != victim)) as client:
        client.member_remove(member_id)
    cluster.restart(victim)
    check_idle_and_redirecting(cluster, victim)


def test_member_removed_while_running(new_cluster: Callable[..., Cluster]) -> None:
    cluster = new_cluster(3)
    leader = cluster.wait_for_leader()
    victim = next(n for n in cluster.nodes if n != leader)
    cluster.status(victim)
    with Client(endpoints_of(cluster)) as client:
        client.member_remove(cluster.nodes[victim].member_id)
    check_idle_and_redirecting(cluster, victim)
