"""Errors the Raft core raises. Each says what went wrong and what the caller can do."""

from __future__ import annotations

from .messages import NONE


class RaftError(Exception):
    """Base class of every error the core raises."""


class ConfigError(RaftError, ValueError):
    """A Config value is out of range or inconsistent with another; the message names both."""


class StorageError(RaftError):
    """Base of the errors a Storage raises for reads outside what it holds."""


class CompactedError(StorageError):
    """The requested index was compacted into a snapshot; send the snapshot instead."""

    def __init__(self, index: int, first_index: int) -> None:
        super().__init__(f"index {index} is compacted; the log now starts at {first_index}")
        self.index = index
        self.first_index = first_index


class UnavailableError(StorageError):
    """The requested index is past the end of the log."""

    def __init__(self, index: int, last_index: int) -> None:
        super().__init__(f"index {index} is not in the log; the last index is {last_index}")
        self.index = index
        self.last_index = last_index


class SnapshotOutOfDateError(StorageError):
    """A snapshot older than (or as old as) the current one was offered."""

    def __init__(self, index: int, current: int) -> None:
        super().__init__(f"snapshot at index {index} is not newer than the current one at {current}")
        self.index = index
        self.current = current


class ProposalDroppedError(RaftError):
    """The proposal was not appended. Retrying elsewhere may succeed.

    ``leader`` is the id of the leader this node believes in, or NONE when it knows of
    none (an election is under way: retry after a short wait). Nothing was appended, so
    retrying can never apply the command twice.
    """

    def __init__(self, reason: str, leader: int = NONE) -> None:
        hint = f"; the leader is node {leader}" if leader != NONE else "; no leader is known"
        super().__init__(reason + hint)
        self.reason = reason
        self.leader = leader


class NotLeaderError(ProposalDroppedError):
    """This node is not the leader: send the proposal to ``leader``."""

    def __init__(self, leader: int) -> None:
        super().__init__("this node is not the leader", leader)
