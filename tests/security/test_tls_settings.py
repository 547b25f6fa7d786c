"""TLS and separate-listener settings (coord_server/settings.py, coord_server/tls.py) and
the client's TLSConfig: every mistake is reported with the setting's name before
anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from coord_client import TLSConfig, errors
from coord_server.settings import SettingsError, load_settings
from tests.security.tls_cluster import make_certs, server_tls_flags

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"), ("n1", "n2"))


def tls_args(certs: Path, name: str = "n1") -> list[str]:
    return ["--name", name, "--listen", "127.0.0.1:7001", "--peer-listen", "127.0.0.1:7101", *server_tls_flags(certs, name)]


def test_without_tls_settings_nothing_changes() -> None:
    s = load_settings(["--name", "n1", "--listen", "127.0.0.1:7001"])
    assert (s.peer_listen, s.client_tls, s.peer_tls) == ("", None, None)
    assert s.members == {"n1": "127.0.0.1:7001"} and s.member_clients == {"n1": "127.0.0.1:7001"}


def test_tls_settings_load_from_flags_and_keep_addresses_apart(certs: Path) -> None:
    s = load_settings(tls_args(certs))
    assert s.client_tls is not None and s.client_tls.client_ca is not None
    assert s.peer_tls is not None
    assert s.members == {"n1": "127.0.0.1:7101"}
    assert s.member_clients == {"n1": "127.0.0.1:7001"}


def test_tls_settings_load_from_toml(certs: Path, tmp_path: Path) -> None:
    config = tmp_path / "coord.toml"
    config.write_text(
        'name = "n1"\nlisten = "127.0.0.1:7001"\npeer_listen = "127.0.0.1:7101"\n'
        'initial_cluster = "n1=127.0.0.1:7101,n2=127.0.0.1:7102"\n'
        'initial_cluster_clients = "n1=127.0.0.1:7001,n2=127.0.0.1:7002"\n'
        f'cert_file = "{certs / "n1.pem"}"\nkey_file = "{certs / "n1-key.pem"}"\n'
        f'peer_cert_file = "{certs / "n1.pem"}"\npeer_key_file = "{certs / "n1-key.pem"}"\npeer_ca_file = "{certs / "ca.pem"}"\n'
    )
    s = load_settings(["--config", str(config)])
    assert s.member_clients == {"n1": "127.0.0.1:7001", "n2": "127.0.0.1:7002"}
    assert s.client_tls is not None and s.client_tls.client_ca is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a, c: a.__setitem__(a.index("--cert-file") + 1, "/nonexistent/n1.pem"), "cert_file: cannot read /nonexistent/n1.pem"),
        (lambda a, c: a.__setitem__(a.index("--key-file") + 1, str(c / "n2-key.pem")), "key_file"),
        (lambda a, c: a.__setitem__(a.index("--peer-ca-file") + 1, str(c / "n1-key.pem")), "peer_ca_file"),
        (lambda a, c: a.__delitem__(slice(a.index("--peer-listen"), a.index("--peer-listen") + 2)), "give peer_listen"),
        (lambda a, c: a.__delitem__(slice(a.index("--peer-ca-file"), a.index("--peer-ca-file") + 2)), "needs all of"),
        (lambda a, c: a.__delitem__(slice(a.index("--peer-cert-file"), len(a))), "would travel in clear"),
        (lambda a, c: a.__delitem__(slice(a.index("--key-file"), a.index("--key-file") + 2)), "give both or neither"),
        (lambda a, c: a.extend(["--initial-cluster", "n1=127.0.0.1:7101,n2=127.0.0.1:7102"]), "initial_cluster_clients"),
        (lambda a, c: a.extend(["--initial-cluster", "n1=127.0.0.1:7101,n2=127.0.0.1:7102",
                                "--initial-cluster-clients", "n1=127.0.0.1:7001"]), "the same members"),
        (lambda a, c: a.__setitem__(a.index("--peer-listen") + 1, "127.0.0.1:7001"), "must differ from listen"),
    ],
    ids=["missing-cert", "key-of-another-cert", "ca-not-a-certificate", "no-peer-listen", "partial-peer-files",
         "client-tls-without-peer-tls", "cert-without-key", "no-client-addresses", "client-addresses-mismatch",
         "same-port"],
)
def test_mistakes_are_reported_with_the_setting(certs: Path, change: object, message: str) -> None:
    args = tls_args(certs)
    change(args, certs)  # type: ignore[operator]
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_settings(args)


def test_server_refuses_to_start_on_a_missing_certificate(certs: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "n1.coord"
    args = tls_args(certs) + ["--data-dir", str(data_dir)]
    args[args.index("--peer-cert-file") + 1] = str(tmp_path / "missing.pem")
    proc = subprocess.run([sys.executable, "-m", "coord_server.cli", *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert f"peer_cert_file: cannot read {tmp_path / 'missing.pem'}" in proc.stderr
    assert not data_dir.exists(), "the data directory was created before the settings were checked"


def test_client_tls_config_reports_file_mistakes_at_once(certs: Path, tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument, match="cannot read"):
        TLSConfig(ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(errors.InvalidArgument, match="both or neither"):
        TLSConfig(ca_file=str(certs / "ca.pem"), cert_file=str(certs / "client.pem"))
    with pytest.raises(errors.InvalidArgument, match="not a PEM file holding a private key"):
        TLSConfig(ca_file=str(certs / "ca.pem"), cert_file=str(certs / "client.pem"), key_file=str(certs / "client.pem"))
    assert TLSConfig.from_env({}) is None
    from_env = TLSConfig.from_env({"COORD_CACERT": str(certs / "ca.pem")})
    assert from_env is not None and from_env.ca_file == str(certs / "ca.pem")
