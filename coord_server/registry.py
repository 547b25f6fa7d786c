"""What each gRPC server of a member serves, recorded as it is registered.

``RecordingServer`` stands in front of a grpc.aio.Server while services are added: every
``add_generic_rpc_handlers`` and ``add_registered_method_handlers`` call (the two that
generated ``add_*Servicer_to_server`` functions, health and reflection use) is recorded
before it is passed on. ``methods`` is then the truth about the port, not a list someone
keeps by hand: server reflection advertises it, and tests/security/test_enumeration.py
calls every method in it without credentials.

A generic handler that does not expose its methods (not grpc's dictionary handler) is
recorded as ``OPAQUE``, which no access rule matches: the enumeration test then fails
until the handler is made listable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc

OPAQUE = "/<opaque generic handler>/?"


class RecordingServer(grpc.aio.Server):
    """A grpc.aio.Server that remembers every method registered on it (module docstring);
    everything else is the wrapped server's."""

    def __init__(self, server: grpc.aio.Server, port: str) -> None:
        self.server = server
        self.port = port
        """Which listener: "client" or "peer"."""
        self.methods: dict[str, Any] = {}
        """full method name (``/pkg.Service/Method``) -> its RpcMethodHandler."""

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        handlers = tuple(generic_rpc_handlers)
        for handler in handlers:
            table = getattr(handler, "_method_handlers", None)
            if isinstance(table, dict):
                self.methods.update(table)
            else:
                self.methods[OPAQUE] = handler
        self.server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        for method, handler in method_handlers.items():
            self.methods[f"/{service_name}/{method}"] = handler
        self.server.add_registered_method_handlers(service_name, method_handlers)

    def services(self) -> list[str]:
        """Full names of the services registered, sorted."""
        return sorted({m.lstrip("/").partition("/")[0] for m in self.methods if m != OPAQUE})

    def add_insecure_port(self, address: str) -> int:
        return self.server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self.server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace: float | None) -> None:
        await self.server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        return await self.server.wait_for_termination(timeout)
