"""The member table follows applied membership changes (raft/membership.py semantics)."""

from __future__ import annotations

from coord.raft.v1 import command_pb2
from coord_server.raft.messages import ConfChangeType
from coord_server.state import StateMachine


def info(node_id: int, name: str) -> bytes:
    return command_pb2.MemberInfo(
        id=node_id, name=name, peer_address=f"{name}:2380", client_address=f"{name}:2379"
    ).SerializeToString()


def view(sm: StateMachine) -> list[tuple[int, str, str, str, bool]]:
    return [(m.id, m.name, m.peer_address, m.client_address, m.is_learner) for m in sm.members()]


def test_add_promote_demote_remove() -> None:
    sm = StateMachine()
    sm.apply_member_change(1, ConfChangeType.ADD_NODE, 2, info(2, "two"))
    sm.apply_member_change(2, ConfChangeType.ADD_NODE, 1, info(1, "one"))
    sm.apply_member_change(3, ConfChangeType.ADD_LEARNER, 3, info(3, "three"))
    assert view(sm) == [
        (1, "one", "one:2380", "one:2379", False),
        (2, "two", "two:2380", "two:2379", False),
        (3, "three", "three:2380", "three:2379", True),
    ]
    sm.apply_member_change(4, ConfChangeType.ADD_NODE, 3, b"")  # promote, info kept
    assert view(sm)[2] == (3, "three", "three:2380", "three:2379", False)
    sm.apply_member_change(5, ConfChangeType.ADD_LEARNER, 1, b"")  # demote
    assert view(sm)[0][4] is True
    sm.apply_member_change(6, ConfChangeType.REMOVE_NODE, 2, b"")
    sm.apply_member_change(7, ConfChangeType.REMOVE_NODE, 99, b"")  # a stranger: no-op
    assert [m.id for m in sm.members()] == [1, 3]
    assert sm.applied_index == 7


def test_bad_changes_never_raise() -> None:
    sm = StateMachine()
    sm.apply_member_change(1, ConfChangeType.ADD_NODE, 5, b"\xff\xff\xff")  # malformed context
    sm.apply_member_change(2, 77, 6, info(6, "x"))  # unknown type
    sm.apply_member_change(3, ConfChangeType.ADD_NODE, 0, info(0, "zero"))  # id 0
    assert view(sm) == [(5, "", "", "", False)]


def test_members_are_copies_and_survive_snapshots() -> None:
    sm = StateMachine()
    sm.apply_member_change(1, ConfChangeType.ADD_NODE, 1, info(1, "one"))
    sm.members()[0].name = "changed"
    assert sm.members()[0].name == "one"
    restored = StateMachine.restore(sm.snapshot())
    assert view(restored) == view(sm) and restored.applied_index == 1
