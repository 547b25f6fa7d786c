"""etcd's HTTP/JSON gateway: etcd3gw and tooz's etcd3+http driver (unmodified) against
coord's gateway and etcd 3.4's, and the raw JSON of both side by side (field names,
base64 bytes, 64-bit integers as strings, errors, a streamed watch)."""

from __future__ import annotations

import base64
import importlib.util
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.etcd.servers import Endpoint, run_client, start_etcd

CLIENTS = Path(__file__).parent / "clients"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def post(endpoint: Endpoint, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(endpoint.http + path, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize("script, module", [("etcd3gw_client.py", "etcd3gw"), ("tooz_client.py", "tooz")])
def test_gateway_client(endpoint: Endpoint, script: str, module: str) -> None:
    """etcd3gw, and tooz's etcd3+http driver built on it."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"SKIPPED LOUDLY: {module} is not installed (pip install -e '.[etcd-tests]'); its test did not run")
    done = run_client(CLIENTS / script, endpoint.http.removeprefix("http://"))
    assert done.returncode == 0 and done.stdout.strip().endswith("ALL OK"), (
        f"{module} against {endpoint.name}:\n{done.stdout}\n{done.stderr[-3000:]}"
    )


@pytest.fixture(scope="module")
def etcd34(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    server = start_etcd("etcd-3.4", tmp_path_factory.mktemp("etcd34"))
    try:
        yield server
    finally:
        server.stop()


def _shape(value: Any) -> Any:
    """The JSON's structure and types, with the values of ids, revisions and terms dropped."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in ("cluster_id", "member_id", "raft_term")}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def test_json_matches_etcd(coord: Endpoint, etcd34: Endpoint) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/v3/kv/put", {"key": b64("j1"), "value": b64("v1")}),
        ("/v3/kv/put", {"key": b64("j1"), "value": b64("v2"), "prev_kv": True}),
        ("/v3/kv/range", {"key": b64("j1")}),
        ("/v3/kv/range", {"key": b64("j"), "range_end": b64("k"), "count_only": True}),
        ("/v3/kv/range", {"key": ""}),
        ("/v3/kv/txn", {"compare": [{"key": b64("j1"), "target": "VALUE", "value": b64("v2")}],
                        "success": [{"request_range": {"key": b64("j1")}}]}),
        ("/v3/kv/deleterange", {"key": b64("j1"), "prev_kv": True}),
        ("/v3/kv/compaction", {"revision": "1000000"}),
        ("/v3/lease/revoke", {"ID": "999"}),
        ("/v3/lease/timetolive", {"ID": "999"}),
    ]
    for path, body in calls:
        coord_status, coord_json = post(coord, path, body)
        etcd_status, etcd_json = post(etcd34, path, body)
        assert coord_status == etcd_status, (path, body, coord_json, etcd_json)
        if "error" in etcd_json:
            assert (coord_json["code"], coord_json["message"]) == (etcd_json["code"], etcd_json["message"]), path
        else:
            assert _shape(coord_json) == _shape(etcd_json), (path, coord_json, etcd_json)


def test_streamed_watch_is_one_json_object_per_line(coord: Endpoint) -> None:
    lines: list[dict[str, Any]] = []
    body = json.dumps({"create_request": {"key": b64("sw")}}).encode()
    request = urllib.request.Request(coord.http + "/v3/watch", data=body, method="POST")

    def read() -> None:
        with urllib.request.urlopen(request, timeout=20) as response:
            for raw in response:
                lines.append(json.loads(raw))
                if len(lines) == 2:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 20
    while not lines and time.monotonic() < deadline:
        time.sleep(0.05)
    post(coord, "/v3/kv/put", {"key": b64("sw"), "value": b64("x")})
    reader.join(20)
    assert lines[0]["result"]["created"] is True
    event = lines[1]["result"]["events"][0]
    assert event["kv"]["value"] == b64("x") and "type" not in event  # PUT is the zero value


def test_version_and_health(coord: Endpoint) -> None:
    with urllib.request.urlopen(coord.http + "/version", timeout=20) as response:
        assert json.loads(response.read())["etcdserver"].startswith("3.")
    with urllib.request.urlopen(coord.http + "/health", timeout=20) as response:
        assert json.loads(response.read())["health"] == "true"


def test_lock_and_election_routes(coord: Endpoint) -> None:
    status, granted = post(coord, "/v3/lease/grant", {"TTL": "30"})
    assert status == 200
    lease = granted["ID"]
    status, locked = post(coord, "/v3/lock/lock", {"name": b64("gl"), "lease": lease})
    assert status == 200 and base64.b64decode(locked["key"]).startswith(b"gl/")
    assert post(coord, "/v3/kv/range", {"key": locked["key"]})[1]["count"] == "1"
    assert post(coord, "/v3/lock/unlock", {"key": locked["key"]})[0] == 200
    status, campaign = post(coord, "/v3/election/campaign", {"name": b64("ge"), "lease": lease, "value": b64("me")})
    assert status == 200
    status, leader = post(coord, "/v3/election/leader", {"name": b64("ge")})
    assert status == 200 and leader["kv"]["value"] == b64("me")
    assert post(coord, "/v3/election/proclaim", {"leader": campaign["leader"], "value": b64("me2")})[0] == 200
    assert post(coord, "/v3/election/leader", {"name": b64("ge")})[1]["kv"]["value"] == b64("me2")
    assert post(coord, "/v3/election/resign", {"leader": campaign["leader"]})[0] == 200
    status, none = post(coord, "/v3/election/leader", {"name": b64("ge")})
    assert status == 500 and none["message"] == "election: no leader"
    status, auth = post(coord, "/v3/auth/authenticate", {"name": "root", "password": "x"})
    assert status == 400 and auth["message"] == "etcdserver: authentication is not enabled"
