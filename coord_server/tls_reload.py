"""Certificates and keys replaced without a restart (SIGHUP, or the files changing).

Each TLS listener gets a ``ReloadingListener``: its gRPC credentials are grpc's dynamic
SSL credentials, whose fetcher grpc calls before each new handshake; the fetcher hands
over a new certificate configuration once one is ready and None (keep the current one)
otherwise, so established connections carry on and new ones get the new certificate.

Rule 1: a reload reads and checks the files as at start (tls.py: PEM, the key belongs
        to the certificate, the CA parses). A failed check keeps the current material
        and logs why: a half-written pair (the certificate replaced, the key not yet)
        never reaches a handshake, and the next change or SIGHUP tries again.
Rule 2: ``CertificateWatcher`` looks at the files' (mtime, size, inode) every
        ``POLL_INTERVAL`` and reloads what changed; SIGHUP reloads everything at once.
Rule 3: the peer certificate is also the one this member presents as a client of its
        peers: a reload gives the peer transport new channel credentials, used by every
        call opened from then on (transport/grpc_peer.py, ``set_credentials``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import grpc

from coord_server.tls import TLSFileError, check_ca, check_pair

log = logging.getLogger("coord.tls")

POLL_INTERVAL = 1.0


class ReloadingListener:
    """The TLS material of one listener, from files that may change (module docstring)."""

    def __init__(
        self, label: str, cert_file: str, key_file: str, ca_file: str, *, require_client_auth: bool,
        on_reload: Callable[[bytes, bytes, bytes | None], None] | None = None,
    ) -> None:
        self.label = label
        self.cert_file, self.key_file, self.ca_file = cert_file, key_file, ca_file
        self.require_client_auth = require_client_auth
        self.on_reload = on_reload
        """Called with (certificate, key, CA) after each successful reload."""
        self._lock = threading.Lock()
        self._pending: Any = None
        self.reloads = 0
        self.cert, self.key, self.ca = self._read()
        self._signature = self._stat()

    def _read(self) -> tuple[bytes, bytes, bytes | None]:
        cert, key = check_pair(f"{self.label} certificate", self.cert_file, f"{self.label} key", self.key_file)
        ca = check_ca(f"{self.label} CA", self.ca_file) if self.ca_file else None
        return cert, key, ca

    def _stat(self) -> tuple[Any, ...]:
        out: list[Any] = []
        for path in (self.cert_file, self.key_file, self.ca_file):
            try:
                st = os.stat(path) if path else None
                out.append((st.st_mtime_ns, st.st_size, st.st_ino) if st else None)
            except OSError:
                out.append("missing")
        return tuple(out)

    def _configuration(self) -> Any:
        return grpc.ssl_server_certificate_configuration([(self.key, self.cert)], root_certificates=self.ca)

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(), self._fetch, require_client_authentication=self.require_client_auth
        )

    def _fetch(self) -> Any:
        """grpc's certificate-configuration fetcher: the new configuration once, else None."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def changed(self) -> bool:
        return self._stat() != self._signature

    def reload(self) -> bool:
        """Read the files again; True when new material is in use for new handshakes."""
        signature = self._stat()
        try:
            cert, key, ca = self._read()
        except TLSFileError as err:
            self._signature = signature  # wait for the next change (or SIGHUP) to try again
            log.warning("%s: keeping the current certificate: %s", self.label, err)
            return False
        self._signature = signature
        if (cert, key, ca) == (self.cert, self.key, self.ca):
            return False
        self.cert, self.key, self.ca = cert, key, ca
        with self._lock:
            self._pending = self._configuration()
        self.reloads += 1
        log.info("%s: certificate reloaded from %s", self.label, self.cert_file)
        if self.on_reload is not None:
            self.on_reload(cert, key, ca)
        return True


class CertificateWatcher:
    """Reloads each listener whose files changed (every POLL_INTERVAL) or on SIGHUP."""

    def __init__(self, listeners: list[ReloadingListener]) -> None:
        self.listeners = listeners
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.listeners:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="tls-reload")

    def reload_all(self) -> None:
        """SIGHUP: read every file again now."""
        for listener in self.listeners:
            listener.reload()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            for listener in self.listeners:
                if listener.changed():
                    listener.reload()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def client_listener(settings: Any) -> ReloadingListener | None:
    """The client listener's reloading TLS material (None without client TLS)."""
    s = settings
    if s.client_tls is None:
        return None
    return ReloadingListener(
        "client listener", s.cert_file, s.key_file, s.client_ca_file, require_client_auth=bool(s.client_ca_file)
    )


def peer_listener(settings: Any, transport: Any) -> ReloadingListener | None:
    """The peer listener's reloading TLS material (None without peer TLS); a reload also
    gives ``transport`` (PeerTransport) channel credentials with the new certificate."""
    s = settings
    if s.peer_tls is None:
        return None

    def new_channel_credentials(cert: bytes, key: bytes, ca: bytes | None) -> None:
        transport.set_credentials(grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert))

    return ReloadingListener(
        "peer listener", s.peer_cert_file, s.peer_key_file, s.peer_ca_file, require_client_auth=True,
        on_reload=new_channel_credentials,
    )
