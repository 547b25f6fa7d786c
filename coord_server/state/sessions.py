"""Client sessions for exactly-once commands (Raft thesis §6.3; common.proto "Exactly-once").

For each client id the table keeps the highest seq applied, the serialized CommandResult
it produced, and the log index where it was applied.

Rule 1: a command whose seq equals the stored one is a retry: it is not applied again and
        gets the stored result. A lower seq fails with FAILED_PRECONDITION (the client
        already moved on; this is a stale duplicate). A higher seq, or an unknown client,
        is applied and its result stored, whatever it is (errors too).
Rule 2: eviction is by log index, never by time: a session is dropped once more than
        ``retention`` entries were applied after its last applied command. Sessions are
        kept in the order they were last refreshed, which is the order of their
        last_index, so eviction looks only at the oldest: O(1) amortized per entry.
        Retries and stale duplicates do not refresh a session.
Rule 3: stored results are bytes, never messages: the service fills in headers of the
        result it gets back, and that must not leak into the stored copy.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator

from coord_server.errors import FailedPrecondition
from .limits import SESSION_RETENTION_ENTRIES


class Session:
    """One client's highest applied seq, its result, and where it was applied."""

    __slots__ = ("seq", "last_index", "result")

    def __init__(self, seq: int, last_index: int, result: bytes) -> None:
        self.seq = seq
        self.last_index = last_index
        self.result = result


class Sessions:
    """The session table, oldest first."""

    __slots__ = ("retention", "_by_client")

    def __init__(self, retention: int = SESSION_RETENTION_ENTRIES) -> None:
        self.retention = retention
        self._by_client: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_client)

    def lookup(self, client_id: str, seq: int) -> bytes | None:
        """The stored result when (client_id, seq) was applied already; None when it must
        be applied; FailedPrecondition when seq is older than the last one applied."""
        session = self._by_client.get(client_id)
        if session is None or seq > session.seq:
            return None
        if seq == session.seq:
            return session.result
        raise FailedPrecondition(
            f"sequence {seq} of client {client_id!r} is older than the last one applied, "
            f"{session.seq}"
        )

    def record(self, client_id: str, seq: int, index: int, result: bytes) -> None:
        """Store the result of (client_id, seq), applied at ``index``; it becomes the newest."""
        by_client = self._by_client
        session = by_client.get(client_id)
        if session is None:
            by_client[client_id] = Session(seq, index, result)
        else:
            session.seq, session.last_index, session.result = seq, index, result
            by_client.move_to_end(client_id)

    def evict(self, index: int) -> None:
        """Drop the sessions idle for more than ``retention`` entries as of ``index``."""
        by_client = self._by_client
        horizon = index - self.retention
        while by_client:
            client_id, session = next(iter(by_client.items()))
            if session.last_index >= horizon:
                break
            del by_client[client_id]

    def items(self) -> Iterator[tuple[str, Session]]:
        """Every session, oldest first (for snapshots)."""
        return iter(self._by_client.items())

    def load(self, rows: Iterable[tuple[str, int, int, bytes]]) -> None:
        """Replace the table with (client_id, seq, last_index, result) rows, oldest first."""
        self._by_client = OrderedDict(
            (client_id, Session(seq, last_index, result))
            for client_id, seq, last_index, result in rows
        )
