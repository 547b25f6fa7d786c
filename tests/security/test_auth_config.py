"""The auth file, permission coverage, what each request needs, and the server's flags:
no servers except one that must refuse to start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coord.v1 import kv_pb2, lock_pb2
from coord_server.auth import AuthFileError, load_auth_file, parse_auth, token_digest
from coord_server.auth.quota import txn_grows
from coord_server.auth.requirements import ADMIN, Need, needs_of
from coord_server.settings import SettingsError, load_settings

from .conftest import ROOT

ROLES = {
    "a": {"keys": [{"prefix": "a/", "access": "readwrite"}, {"prefix": "b/", "access": "read"}]},
    "c": {"keys": [{"prefix": "c", "access": "read"}, {"prefix": "d", "access": "read"}], "locks": [{"prefix": "jobs/", "access": "readwrite"}]},
    "ops": {"admin": True},
}


def config(**users: dict[str, object]) -> dict[str, object]:
    return {"roles": ROLES, "users": users}


def test_tokens_hashed_or_plain_and_json_or_toml(tmp_path: Path) -> None:
    data = config(alice={"token_sha256": token_digest("alice-secret"), "roles": ["a"]},
                  bob={"token": "bob-secret", "roles": ["a", "c"]})
    (tmp_path / "auth.json").write_text(json.dumps(data))
    (tmp_path / "auth.toml").write_text(
        '[roles.r]\nkeys = [{prefix = "x/", access = "read"}]\n'
        f'[users.carol]\ntoken_sha256 = "{token_digest("carol-secret").upper()}"\nroles = ["r"]\n'
    )
    from_json = load_auth_file(str(tmp_path / "auth.json"))
    assert from_json.authenticate("alice-secret").name == "alice"  # type: ignore[union-attr]
    assert from_json.authenticate("bob-secret").name == "bob"  # type: ignore[union-attr]
    assert from_json.authenticate("alice-secret ") is None and from_json.authenticate("") is None
    assert load_auth_file(str(tmp_path / "auth.toml")).authenticate("carol-secret").name == "carol"  # type: ignore[union-attr]


@pytest.mark.parametrize(("data", "message"), [
    (config(), "no users"),
    (config(u={"token": "long-enough", "roles": ["nope"]}), "undefined role"),
    (config(u={"token": "short", "roles": []}), "at least 8"),
    (config(u={"token_sha256": "abc", "roles": []}), "64 hex digits"),
    (config(u={"token": "long-enough", "token_sha256": token_digest("x"), "roles": []}), "exactly one"),
    (config(u={"token": "long-enough", "roles": [], "password": "x"}), "unknown field"),
    (config(u={"token": "long-enough"}, v={"token": "long-enough"}), "same token"),
    ({"roles": {"r": {"keys": [{"prefix": "a", "access": "write"}]}}, "users": {}}, "read or readwrite"),
    ({"roles": {"r": {"keys": [{"prefix": "a"}]}}, "users": {}}, "exactly prefix and access"),
    ({"roles": {"r": {"tables": []}}, "users": {}}, "unknown field"),
    ({"groups": {}}, "unknown section"),
])
def test_malformed_auth_files_say_what_is_wrong(data: dict[str, object], message: str) -> None:
    with pytest.raises(AuthFileError, match=message):
        parse_auth(data)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(AuthFileError, match="cannot read"):
        load_auth_file(str(tmp_path / "missing.toml"))
    (tmp_path / "bad.toml").write_text("[users\n")
    with pytest.raises(AuthFileError, match="not valid TOML"):
        load_auth_file(str(tmp_path / "bad.toml"))


def test_permissions_cover_ranges_by_their_union() -> None:
    auth = parse_auth(config(u={"token": "u-secret-1", "roles": ["a", "c"]}, o={"token": "o-secret-1", "roles": ["ops"]}))
    user = auth.authenticate("u-secret-1")
    assert user is not None and not user.admin

    def allows(key: bytes, end: bytes | None, write: bool, kind: str = "keys") -> bool:
        return user.allows(kind, (key, end), write)

    assert allows(b"a/x", b"a/x\0", True) and allows(b"b/x", b"b/x\0", False)
    assert not allows(b"b/x", b"b/x\0", True)
    assert allows(b"a/", b"a0", True)  # exactly the prefix a/
    assert not allows(b"a/", b"b0", False)  # [a0, b/) is not covered
    assert not allows(b"a/", None, False)
    assert allows(b"c", b"e", False)  # [c, d) from one permission, [d, e) from another
    assert allows(b"c/x", b"d/y", False) and not allows(b"c", b"e0", False) and not allows(b"c", b"e", True)
    assert not allows(b"b0", b"b1", False)
    assert allows(b"jobs/1", b"jobs/1\0", True, "locks") and not allows(b"jobs/1", b"jobs/1\0", True, "elections")
    assert allows(b"z", b"a", True)  # an empty range touches nothing
    admin = auth.authenticate("o-secret-1")
    assert admin is not None and admin.allows("keys", (b"", None), True)


def test_what_requests_need() -> None:
    txn = kv_pb2.TxnRequest(
        compare=[kv_pb2.Compare(key=b"c1"), kv_pb2.Compare(target=kv_pb2.COMPARE_TARGET_LOCK_TOKEN, lock_name="L")],
        success=[kv_pb2.RequestOp(request_txn=kv_pb2.TxnRequest(
            failure=[kv_pb2.RequestOp(request_delete_range=kv_pb2.DeleteRangeRequest(key=b"d", range_end=b"e"))]))],
        failure=[kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=b"r"))],
    )
    assert needs_of("/coord.v1.KV/Txn", txn) == [
        Need("keys", (b"c1", b"c1\0"), False), Need("locks", (b"L", b"L\0"), False),
        Need("keys", (b"d", b"e"), True), Need("keys", (b"r", b"r\0"), False),
    ]
    assert not txn_grows(txn)
    assert txn_grows(kv_pb2.TxnRequest(failure=[kv_pb2.RequestOp(request_txn=kv_pb2.TxnRequest(
        success=[kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=b"p"))]))]))
    assert needs_of("/coord.v1.Lock/Inspect", lock_pb2.LockInspectRequest(name="n")) == [Need("locks", (b"n", b"n\0"), False)]
    assert needs_of("/coord.v1.Cluster/MemberRemove", None) == [ADMIN]
    assert needs_of("/coord.v1.Cluster/Status", None) == []
    assert needs_of("/coord.v1.Future/Thing", None) == [ADMIN]


def test_server_flags(tmp_path: Path) -> None:
    settings = load_settings(["--quota-bytes", "1024", "--max-watches-per-stream", "0"])
    assert settings.quota_bytes == 1024 and settings.max_watches_per_stream == 0
    assert load_settings([]).quota_bytes == 2 * 1024**3 and load_settings([]).auth_file == ""
    with pytest.raises(SettingsError, match="quota_bytes"):
        load_settings(["--quota-bytes", "-1"])
    with pytest.raises(SettingsError, match="undefined role"):
        (tmp_path / "a.json").write_text(json.dumps(config(u={"token": "long-enough", "roles": ["x"]})))
        load_settings(["--auth-file", str(tmp_path / "a.json")])


def test_server_refuses_to_start_with_a_bad_auth_file(tmp_path: Path) -> None:
    (tmp_path / "auth.toml").write_text('[users.u]\ntoken = "long-enough"\nroles = ["missing"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "coord_server.cli", "--auth-file", str(tmp_path / "auth.toml"),
         "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert done.returncode == 2
    assert "users.u names undefined role(s) missing" in done.stderr
    assert not (tmp_path / "data").exists()
