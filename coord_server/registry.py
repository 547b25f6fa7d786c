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

from collections.abc import Iterable
from typing import Any

import grpc

OPAQUE = "/<opaque generic handler>/?"


class RecordingServer:
    """A grpc.aio.Server that remembers every method registered on it (module docstring)."""

    def __init__(self, server: grpc.aio.Server, port: str) -> None:
        self.server = server
        self.port = port
        """Which listener: "client" or "peer"."""
        self.methods: dict[str, Any] = {}
        """full method name (``/pkg.Service/Method``) -> its RpcMethodHandler."""

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        handlers = tuple(handlers)
        for handler in handlers:
            table = getattr(handler, "_method_handlers", None)
            if isinstance(table, dict):
                self.methods.update(table)
            else:
                self.methods[OPAQUE] = handler
        self.server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        for method, handler in handlers.items():
            self.methods[f"/{service}/{method}"] = handler
        self.server.add_registered_method_handlers(service, handlers)

    def services(self) -> list[str]:
        """Full names of the services registered, sorted."""
        return sorted({m.lstrip("/").partition("/")[0] for m in self.methods if m != OPAQUE})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)
