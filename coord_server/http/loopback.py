"""How the HTTP listener reaches this member's own gRPC services.

Without client TLS the loopback channel is plain TCP to the client port on 127.0.0.1.
With client TLS (and with client certificates required) the member cannot present a
client certificate of its own to its own port, and must not need one: the HTTPS listener
already admitted the caller with the same certificate rules as the gRPC port. So the
gRPC server also listens on a Unix socket in a private directory (mode 0700, made by
mkdtemp under the system's temp dir to stay within the 107-byte socket path limit), and
the HTTP surfaces call it there. The socket carries the same services and interceptors as
the client port (bearer tokens, auth, quotas); only local processes of the member's user
can open it, as they could read the data directory anyway.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class Loopback:
    target: str
    """gRPC target of the member's services: ``127.0.0.1:port`` or ``unix:/path``."""
    directory: str | None = None
    """The private directory of the Unix socket, removed by ``close()``."""

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.target, options=[("grpc.max_receive_message_length", -1)])

    def close(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def bind_loopback(server: grpc.aio.Server, client_port: int, *, tls: bool) -> Loopback:
    """Before ``server.start()``: the loopback the HTTP listener will use."""
    if not tls:
        return Loopback(f"127.0.0.1:{client_port}")
    directory = tempfile.mkdtemp(prefix="coord-http-")
    os.chmod(directory, 0o700)
    path = os.path.join(directory, "grpc.sock")
    if server.add_insecure_port(f"unix:{path}") == 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise OSError(f"cannot listen on unix:{path} for the HTTP listener")
    return Loopback(f"unix:{path}", directory)
