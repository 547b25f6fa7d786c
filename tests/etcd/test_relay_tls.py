"""A follower whose client port uses TLS but that has no peer TLS credentials refuses to
relay etcd's membership calls (coord_server/etcd/relay.py): it never opens a plaintext
channel to the leader's TLS client port, which would offer the caller's token in clear."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import grpc

from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord_server.etcd.relay import LeaderRelay


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("token", "secret-token"),)

    def time_remaining(self) -> float:
        return 2.0

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise _Aborted


async def _relay_to(address: str, client_tls: bool) -> _Context:
    relay = LeaderRelay(Any, lambda: None, client_tls=client_tls)  # type: ignore[arg-type]
    context = _Context()
    try:
        await relay.call(address, "MemberAdd", etcd.MemberAddRequest(peerURLs=["http://127.0.0.1:1"]), context)
    except _Aborted:
        pass
    finally:
        await relay.close()
    return context


def test_no_relay_in_clear_to_a_tls_client_port() -> None:
    leader = socket.socket()
    leader.bind(("127.0.0.1", 0))
    leader.listen(4)
    leader.setblocking(False)
    address = f"127.0.0.1:{leader.getsockname()[1]}"
    try:
        context = asyncio.run(_relay_to(address, client_tls=True))
        assert context.code == grpc.StatusCode.FAILED_PRECONDITION
        assert address in context.details and "peer_cert_file" in context.details
        try:
            leader.accept()
        except BlockingIOError:
            pass  # nothing connected: the token went nowhere
        else:
            raise AssertionError("the relay connected to the leader's TLS port without TLS")
    finally:
        leader.close()
