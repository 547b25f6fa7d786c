"""TLS options of a client: the CA that signed the members' certificates and, when the
cluster asks for client certificates, this client's certificate and key.

``TLSConfig(ca_file=..., cert_file=..., key_file=...)`` reads the files at once, so a
missing or unreadable file is an InvalidArgument when the client is made, not an
UNAVAILABLE on the first call. ``TLSConfig.from_env()`` reads $COORD_CACERT, $COORD_CERT
and $COORD_KEY (what coordctl does without --cacert/--cert/--key). See
docs/security.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc

from . import errors

__all__ = ["CACERT_ENV", "CERT_ENV", "KEY_ENV", "TLSConfig"]

CACERT_ENV = "COORD_CACERT"
CERT_ENV = "COORD_CERT"
KEY_ENV = "COORD_KEY"


def _read(label: str, path: str, kind: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise errors.InvalidArgument(f"TLS {label} {path}: cannot read it ({err.strerror})") from None
    if b"-----BEGIN" not in data or kind.encode() not in data:
        raise errors.InvalidArgument(f"TLS {label} {path} is not a PEM file holding a {kind.lower()}")
    return data


@dataclass(frozen=True)
class TLSConfig:
    """``ca_file``: PEM of the CA that signed the members' certificates (empty: the
    system's trusted roots). ``cert_file``/``key_file``: this client's certificate and
    key, for clusters that require client certificates (both or neither).
    ``server_name``: the host name to check the members' certificates against, when it
    is not the host of the endpoint (e.g. endpoints given by IP, certificates by name)."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""
    _credentials: grpc.ChannelCredentials = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise errors.InvalidArgument("TLS cert_file and key_file go together: give both or neither")
        ca = _read("CA", self.ca_file, "CERTIFICATE") if self.ca_file else None
        cert = _read("certificate", self.cert_file, "CERTIFICATE") if self.cert_file else None
        key = _read("key", self.key_file, "PRIVATE KEY") if self.key_file else None
        credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
        object.__setattr__(self, "_credentials", credentials)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TLSConfig | None:
        """A TLSConfig from $COORD_CACERT, $COORD_CERT and $COORD_KEY, or None when none is set."""
        env = os.environ if environ is None else environ
        ca, cert, key = env.get(CACERT_ENV, ""), env.get(CERT_ENV, ""), env.get(KEY_ENV, "")
        if not (ca or cert or key):
            return None
        return cls(ca_file=ca, cert_file=cert, key_file=key)

    @property
    def credentials(self) -> grpc.ChannelCredentials:
        """The gRPC channel credentials made from the files."""
        return self._credentials

    def channel_options(self) -> list[tuple[str, str]]:
        """Extra channel options (the host name override, when given)."""
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def connection_hint(details: str, tls: TLSConfig | None) -> str:
    """A sentence on the likely TLS mistake behind a connection failure's ``details``
    (gRPC only says "Socket closed" or names an OpenSSL error), or "" when none fits."""
    if "CERTIFICATE_VERIFY_FAILED" in details:
        return "the member's certificate is not signed by the CA given (TLS ca_file, coordctl --cacert)"
    if "WRONG_VERSION_NUMBER" in details or ("handshake" in details.lower() and tls is not None):
        return "the TLS handshake failed: does the member serve TLS on this port?"
    if "Socket closed" in details:
        if tls is None:
            return "the member may serve TLS only: give the CA (TLS ca_file, coordctl --cacert)"
        return "the member may require a client certificate signed by its client CA (TLS cert_file/key_file, coordctl --cert/--key)"
    return ""
