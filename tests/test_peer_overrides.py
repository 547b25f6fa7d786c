"""The ``peer_overrides`` setting (``--peer-override NAME=HOST:PORT``): reach a member at
another address than the one it advertises (fault proxies in tests/chaos, NAT setups)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coord.raft.v1 import command_pb2
from coord_server.node import Node, NodeConfig
from coord_server.settings import SettingsError, cluster_id_of, load_settings, member_id_of
from coord_server.storage import DiskStorage


def test_flag_is_repeatable_and_comma_separated() -> None:
    settings = load_settings([
        "--peer-override", "n2=127.0.0.1:9002,n3=127.0.0.1:9003",
        "--peer-override", "n4=127.0.0.1:9004",
    ])
    assert settings.peer_overrides == {"n2": "127.0.0.1:9002", "n3": "127.0.0.1:9003", "n4": "127.0.0.1:9004"}


def test_default_is_empty() -> None:
    assert load_settings([]).peer_overrides == {}


@pytest.mark.parametrize(
    "toml",
    ['peer_overrides = { n2 = "127.0.0.1:9002" }\n', 'peer_overrides = "n2=127.0.0.1:9002"\n',
     'peer_overrides = ["n2=127.0.0.1:9002"]\n'],
    ids=["table", "string", "list"],
)
def test_toml_key(tmp_path: Path, toml: str) -> None:
    path = tmp_path / "coord.toml"
    path.write_text(toml)
    assert load_settings(["--config", str(path)]).peer_overrides == {"n2": "127.0.0.1:9002"}


def test_flag_beats_toml(tmp_path: Path) -> None:
    path = tmp_path / "coord.toml"
    path.write_text('peer_overrides = { n2 = "127.0.0.1:9002" }\n')
    settings = load_settings(["--config", str(path), "--peer-override", "n3=127.0.0.1:9003"])
    assert settings.peer_overrides == {"n3": "127.0.0.1:9003"}


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--peer-override", "n2"], "peer_overrides entries must be name=host:port"),
        (["--peer-override", "n2=nowhere"], "peer_overrides[n2] must be host:port"),
        (["--peer-override", "n2=127.0.0.1:1,n2=127.0.0.1:2"], "peer_overrides names 'n2' twice"),
    ],
)
def test_bad_values_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(argv)


def test_toml_table_with_a_non_string_address_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "coord.toml"
    path.write_text("peer_overrides = { n2 = 5 }\n")
    with pytest.raises(SettingsError, match="peer_overrides"):
        load_settings(["--config", str(path)])


class _RecordingTransport:
    def __init__(self) -> None:
        self.addresses: dict[int, str] = {}

    def send(self, messages: list[Any]) -> None:
        pass

    async def forward(self, to: int, kind: int, payload: bytes, timeout: float | None) -> bytes:
        raise NotImplementedError

    def set_address(self, node_id: int, address: str) -> None:
        self.addresses[node_id] = address

    def remove_peer(self, node_id: int) -> None:
        self.addresses.pop(node_id, None)


def test_node_sends_peer_traffic_to_the_override_but_tells_clients_the_advertised_address(tmp_path: Path) -> None:
    members = {"n1": "127.0.0.1:7001", "n2": "127.0.0.1:7002", "n3": "127.0.0.1:7003"}
    cluster_id = cluster_id_of(members)
    infos = {
        member_id_of(cluster_id, n): command_pb2.MemberInfo(
            id=member_id_of(cluster_id, n), name=n, peer_address=a, client_address=a
        )
        for n, a in members.items()
    }
    me, n2, n3 = (member_id_of(cluster_id, n) for n in ("n1", "n2", "n3"))
    transport = _RecordingTransport()
    storage = DiskStorage(str(tmp_path / "n1"), cluster_id=cluster_id)
    try:
        config = NodeConfig(node_id=me, cluster_id=cluster_id, name="n1", peer_overrides={"n2": "127.0.0.1:9102"})
        node = Node(config, storage, transport, bootstrap_members=infos)
        assert transport.addresses == {n2: "127.0.0.1:9102", n3: "127.0.0.1:7003"}
        # Clients (coord-leader hints, member lists) still get the advertised address.
        assert node.address_of(n2) == "127.0.0.1:7002"
        # A member learned later (a joiner, by its name) is overridden too.
        n4 = 4242
        node._learn_member(n4, command_pb2.MemberInfo(id=n4, name="n4", peer_address="127.0.0.1:7004"))
        assert transport.addresses[n4] == "127.0.0.1:7004"
        node2 = Node(
            NodeConfig(node_id=me, cluster_id=cluster_id, name="n1", peer_overrides={"n4": "127.0.0.1:9104"}),
            storage, _RecordingTransport(), bootstrap_members=infos,
        )
        node2._learn_member(n4, command_pb2.MemberInfo(id=n4, name="n4", peer_address="127.0.0.1:7004"))
        assert node2.transport.addresses[n4] == "127.0.0.1:9104"  # type: ignore[attr-defined]
    finally:
        storage.close()
