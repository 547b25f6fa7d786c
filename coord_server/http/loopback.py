"""How the HTTP listener reaches this member's own gRPC services.

Without client TLS the loopback channel is plain TCP to the client port on 127.0.0.1.
With client TLS (and with client certificates required) the member cannot present a
client certificate of its own to its own port, and must not need one: the HTTPS listener
already admitted the caller with the same certificate rules as the gRPC port. So the
gRPC server also listens on a Unix socket in a private directory (mode 0700):
``<data dir>/http-loopback/``, or a fresh one under the system's temp dir when that path
would pass the 107-byte limit of socket paths; the HTTP surfaces call it there. The socket carries the same services and interceptors as
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


SOCKET_PATH_MAX = 107


def bind_loopback(server: grpc.aio.Server, client_port: int, *, tls: bool, data_dir: str) -> Loopback:
    """Before ``server.start()``: the loopback the HTTP listener will use."""
    if not tls:
        return Loopback(f"127.0.0.1:{client_port}")
    directory = os.path.join(os.path.abspath(data_dir), "http-loopback")
    if len(os.path.join(directory, "grpc.sock")) <= SOCKET_PATH_MAX:
        shutil.rmtree(directory, ignore_errors=True)  # a socket left by a crash
        os.makedirs(directory, mode=0o700)
    else:
        directory = tempfile.mkdtemp(prefix="coord-http-")
    os.chmod(directory, 0o700)
    path = os.path.join(directory, "grpc.sock")
    if server.add_insecure_port(f"unix:{path}") == 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise OSError(f"cannot listen on unix:{path} for the HTTP listener")
    return Loopback(f"unix:{path}", directory)
