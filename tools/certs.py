"""Throwaway certificates for a local coord cluster: what `make certs` runs.

    tools/certs.py [--dir DIR] [--names "n1 n2 n3"] [--force]

Writes into DIR (default ``.cluster/certs``), with the ``openssl`` command-line tool:

    ca.pem, ca-key.pem          a self-signed CA (10 years), the only trust root
    NAME.pem, NAME-key.pem      one certificate per member, for both its listeners: server
                                and client use (a member is a TLS client of its peers),
                                subject alternative names 127.0.0.1, ::1, localhost and
                                NAME (peers must present a certificate naming them)
    client.pem, client-key.pem  a client certificate for coordctl and applications

Keys are P-256 ECDSA, unencrypted, readable only by the owner. They are for testing and
local clusters: anyone holding ca-key.pem can mint certificates the cluster trusts.
An existing CA in DIR is reused (so certificates can be added for new members) unless
--force is given. ``make_certs()`` is what the tests call.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DIR = Path(".cluster/certs")
DEFAULT_NAMES = ("n1", "n2", "n3")
HOSTS = ("127.0.0.1", "::1", "localhost")
DAYS = "3650"


class CertError(Exception):
    """openssl is missing or failed; the message says which command and why."""


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise CertError("the openssl command is not installed (apt-get install openssl)")
    result = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CertError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _new_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


def _sans(hosts: Sequence[str]) -> str:
    return ",".join(f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts)


def make_ca(directory: Path, subject: str = "/CN=coord local CA") -> None:
    """A new self-signed CA: ``ca.pem`` and ``ca-key.pem`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "ca-key.pem"
    _new_key(key)
    _openssl(
        "req", "-x509", "-new", "-key", str(key), "-out", str(directory / "ca.pem"), "-days", DAYS,
        "-subj", subject, "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )


def make_leaf(directory: Path, name: str, hosts: Sequence[str] = HOSTS, *, server: bool = True) -> None:
    """``NAME.pem``/``NAME-key.pem`` signed by the CA in ``directory``; ``server`` adds
    server use and the host names, every certificate may act as a TLS client."""
    key = directory / f"{name}-key.pem"
    _new_key(key)
    usage = "serverAuth,clientAuth" if server else "clientAuth"
    extensions = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
    ]
    if server:
        # The member's name too: a peer certificate must name the member it speaks for
        # (coord_server/transport/peer_auth.py).
        extensions.append(f"subjectAltName={_sans([*hosts, *([name] if name not in hosts else [])])}")
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
        ext.write_text("\n".join(extensions) + "\n")
        _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(directory / "ca.pem"), "-CAkey", str(directory / "ca-key.pem"),
            "-CAcreateserial", "-out", str(directory / f"{name}.pem"), "-days", DAYS, "-sha256", "-extfile", str(ext),
        )


def make_certs(directory: Path, names: Sequence[str] = DEFAULT_NAMES, *, force: bool = False) -> Path:
    """The CA (kept if present, unless ``force``), one certificate per member name and a
    client certificate, in ``directory``; returns ``directory``."""
    directory = Path(directory)
    if force or not (directory / "ca.pem").exists() or not (directory / "ca-key.pem").exists():
        make_ca(directory)
    for name in names:
        make_leaf(directory, name)
    make_leaf(directory, "client", server=False)
    return directory


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/certs.py", description="Make a throwaway CA and certificates for a local coord cluster.")
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("CERTS_DIR") or DEFAULT_DIR), help="output directory (default .cluster/certs)")
    parser.add_argument("--names", default=" ".join(DEFAULT_NAMES), help='member names (default "n1 n2 n3")')
    parser.add_argument("--force", action="store_true", help="make a new CA even if DIR has one")
    args = parser.parse_args(argv)
    try:
        directory = make_certs(args.dir, args.names.split(), force=args.force)
    except CertError as err:
        print(f"certs: {err}", file=sys.stderr)
        return 1
    print(f"certificates in {directory}: CA ca.pem, members {', '.join(args.names.split())}, client client.pem")
    return 0


if __name__ == "__main__":
    sys.exit(main())
