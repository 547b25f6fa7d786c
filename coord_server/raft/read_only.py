"""ReadIndex bookkeeping (thesis §6.4): linearizable reads without writing to the log.

1. The leader records its commit index as the read point of a request (tagged with a
   unique ``context``) and broadcasts a heartbeat carrying that context.
2. When a quorum has acknowledged a heartbeat with that context, the leader knows it was
   still the leader when the request arrived; the read may be served once the state
   machine has applied the read point.
3. Requests are queued in arrival order; an acknowledgement of a later request confirms
   every earlier one too (a quorum answered after they were all recorded).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from .messages import Message


@dataclass
class ReadIndexStatus:
    request: Message
    """The READ_INDEX message (local, or forwarded from ``request.from_``)."""
    index: int
    """The leader's commit index when the request arrived: the read point."""
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    """Pending ReadIndex requests on a leader, keyed by context, in arrival order."""

    def __init__(self) -> None:
        self._pending: OrderedDict[bytes, ReadIndexStatus] = OrderedDict()

    def add_request(self, index: int, request: Message) -> None:
        if request.context in self._pending:
            return  # a duplicate of a request already being confirmed
        self._pending[request.context] = ReadIndexStatus(request=request, index=index)

    def recv_ack(self, node_id: int, context: bytes) -> set[int] | None:
        """Record that ``node_id`` acknowledged ``context``; return the ackers so far."""
        status = self._pending.get(context)
        if status is None:
            return None
        status.acks.add(node_id)
        return status.acks

    def advance(self, context: bytes) -> list[ReadIndexStatus]:
        """Release ``context`` and every request queued before it (Rule 3)."""
        if context not in self._pending:
            return []
        released: list[ReadIndexStatus] = []
        while self._pending:
            ctx, status = self._pending.popitem(last=False)
            released.append(status)
            if ctx == context:
                break
        return released

    def last_pending_context(self) -> bytes | None:
        if not self._pending:
            return None
        return next(reversed(self._pending))

    def __len__(self) -> int:
        return len(self._pending)

    def clear(self) -> None:
        self._pending.clear()
