"""TLS material of one member: checked PEM files and the gRPC credentials made from them.

Rule 1: every file is read and checked when the settings are validated (readable, PEM,
        the key belongs to the certificate, the CA parses), so a mistake is reported with
        the setting's name before the member opens its data directory or a port.
Rule 2: the client listener presents ``cert_file``/``key_file``; with ``client_ca_file``
        it also requires a client certificate signed by that CA.
Rule 3: the peer listener and every peer channel use mutual TLS with the peer CA: the
        listener requires a client certificate signed by ``peer_ca_file`` and the
        channels present ``peer_cert_file``, so only holders of a peer certificate reach
        the Raft service (the cluster-id check stays on for everyone).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import grpc


class TLSFileError(ValueError):
    """A certificate, key or CA file is missing, unreadable or malformed."""


def read_pem(setting: str, path: str, kind: str) -> bytes:
    """The bytes of the PEM file at ``path`` (``kind``: CERTIFICATE or PRIVATE KEY)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise TLSFileError(f"{setting}: cannot read {path}: {err.strerror}") from None
    if b"-----BEGIN" not in data or kind.encode() not in data:
        raise TLSFileError(f"{setting}: {path} is not a PEM file holding a {kind.lower()}")
    return data


def check_pair(cert_setting: str, cert_path: str, key_setting: str, key_path: str) -> tuple[bytes, bytes]:
    """(certificate chain, private key) after checking that the key belongs to the certificate."""
    cert = read_pem(cert_setting, cert_path, "CERTIFICATE")
    key = read_pem(key_setting, key_path, "PRIVATE KEY")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
    except ssl.SSLError as err:
        raise TLSFileError(
            f"{key_setting} ({key_path}) does not match {cert_setting} ({cert_path}), or one is malformed: {err.reason}"
        ) from None
    return cert, key


def check_ca(setting: str, path: str) -> bytes:
    """The CA bundle at ``path`` after checking that it parses."""
    data = read_pem(setting, path, "CERTIFICATE")
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as err:
        raise TLSFileError(f"{setting}: {path} holds no usable CA certificate: {err.reason}") from None
    return data


@dataclass(frozen=True)
class ClientListenerTLS:
    """What the client listener presents, and the CA of client certificates, if required."""

    cert: bytes
    key: bytes
    client_ca: bytes | None

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


@dataclass(frozen=True)
class PeerTLS:
    """This member's peer certificate and the CA every peer certificate is signed by."""

    cert: bytes
    key: bytes
    ca: bytes

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert)


def load_client_listener(cert_file: str, key_file: str, client_ca_file: str) -> ClientListenerTLS:
    cert, key = check_pair("cert_file", cert_file, "key_file", key_file)
    client_ca = check_ca("client_ca_file", client_ca_file) if client_ca_file else None
    return ClientListenerTLS(cert, key, client_ca)


def load_peer(cert_file: str, key_file: str, ca_file: str) -> PeerTLS:
    cert, key = check_pair("peer_cert_file", cert_file, "peer_key_file", key_file)
    return PeerTLS(cert, key, check_ca("peer_ca_file", ca_file))
