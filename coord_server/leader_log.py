"""One INFO line in the member's log each time the leader it follows changes: who leads
now (name, ID, address) and at which term, or that it knows no leader. An operator reading
one member's log sees every election it lived through."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coord_server.node import Node

log = logging.getLogger("coord.node")


class LeaderLog:
    """Remembers the last (role, leader) reported for ``node`` and logs changes."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._last: tuple[Any, int] | None = None

    def changed(self, role: Any, leader: int) -> None:
        if self._last is not None and self._last[1] == leader:
            self._last = (role, leader)
            return
        self._last = (role, leader)
        node = self.node
        term = node.core.term
        if not leader:
            log.info("no leader known (term %d)", term)
        elif leader == node.id:
            log.info("this member is the leader now (term %d)", term)
        else:
            names = {m.id: m.name for m in node.state.members()}
            log.info("leader is now %s (%#x, %s) at term %d", names.get(leader) or "-", leader,
                     node.address_of(leader) or "address unknown", term)
