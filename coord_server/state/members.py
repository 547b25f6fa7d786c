"""Cluster members as the applied membership changes describe them.

Rule 1: the membership here follows the CONF_CHANGE entries applied, one change at a time,
        with the same meaning as the Raft core's (coord_server/raft/membership.py):
        ADD_NODE adds a voter or promotes a learner, ADD_LEARNER adds a learner or demotes
        a voter, REMOVE_NODE removes either. The core decides who votes; this table adds
        what clients need to know: names and addresses (the entry's MemberInfo context).
Rule 2: a change is total: an unknown type, a malformed context or a removal of a stranger
        changes what it can and never raises (a bad entry must not stop the members).
        An empty or malformed context keeps what is known of the member.
"""

from __future__ import annotations

from collections.abc import Iterable

from coord.raft.v1 import command_pb2
from coord.v1 import cluster_pb2

from coord_server.raft.messages import ConfChangeType


class Members:
    """Members by ID."""

    __slots__ = ("_members",)

    def __init__(self) -> None:
        self._members: dict[int, cluster_pb2.Member] = {}

    def apply(self, change_type: int, node_id: int, context: bytes) -> None:
        """Apply one membership change (Rule 1, Rule 2)."""
        if change_type == ConfChangeType.REMOVE_NODE:
            self._members.pop(node_id, None)
            return
        if change_type not in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER) or node_id <= 0:
            return
        member = self._members.get(node_id)
        if member is None:
            member = self._members[node_id] = cluster_pb2.Member(id=node_id)
        member.is_learner = change_type == ConfChangeType.ADD_LEARNER
        if context:
            try:
                info = command_pb2.MemberInfo.FromString(context)
            except Exception:  # noqa: BLE001 - Rule 2: any malformed context is ignored
                return
            member.name = info.name
            member.peer_address = info.peer_address
            member.client_address = info.client_address

    def list(self) -> list[cluster_pb2.Member]:
        """Copies of every member, by ascending ID."""
        out = []
        for node_id in sorted(self._members):
            member = cluster_pb2.Member()
            member.CopyFrom(self._members[node_id])
            out.append(member)
        return out

    def load(self, members: Iterable[cluster_pb2.Member]) -> None:
        """Replace the table (restoring a snapshot)."""
        self._members = {}
        for m in members:
            copy = cluster_pb2.Member()
            copy.CopyFrom(m)
            self._members[m.id] = copy
