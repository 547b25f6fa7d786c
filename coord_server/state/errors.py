"""Domain errors of the state machine, each carrying the gRPC status a client can act on.

Rule 1: every refusal of a request is one of these, raised before anything changes (or
        after rolling back what did). The state machine turns them into a CommandError in
        the CommandResult; the reads (``range``, ``events_since``, ``lease_info``) and the
        edge checks in ``validation`` raise them directly for the services to translate.
Rule 2: ``code`` is a class attribute, as in ``coord_server.errors``, so one translation
        (``err.code``, ``err.message``) serves both hierarchies.
"""

from __future__ import annotations

import grpc

from coord.raft.v1 import command_pb2


class StateError(Exception):
    """Base of the state machine's domain errors. ``message`` is one sentence."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_proto(self) -> command_pb2.CommandError:
        """This error as carried in a CommandResult."""
        return command_pb2.CommandError(code=self.code.value[0], message=self.message)


class InvalidArgument(StateError):
    """The request is malformed, whatever the state (or, for ignore_value/ignore_lease,
    names a key that does not exist, as etcd)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(StateError):
    """The named lease (or, later, another named object) does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(StateError):
    """The request is valid but the state forbids it (a lease ID in use, a stale seq)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(StateError):
    """A revision outside the readable window."""

    code = grpc.StatusCode.OUT_OF_RANGE


class Compacted(OutOfRange):
    """The revision asked for was compacted away; ``compact_revision`` is the last
    compaction (reads may start at it, watches right after it)."""

    def __init__(self, revision: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {revision} has been compacted; the compact revision is {compact_revision}"
        )
        self.revision = revision
        self.compact_revision = compact_revision


class FutureRevision(OutOfRange):
    """The revision asked for is greater than the store's current revision."""

    def __init__(self, revision: int, current: int) -> None:
        super().__init__(
            f"revision {revision} is in the future; the current revision is {current}"
        )
        self.revision = revision
        self.current = current


class ResourceExhausted(StateError):
    """A size limit was exceeded."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class PermissionDenied(StateError):
    """The command's user may not do this, by the auth state at the command's log position."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Internal(StateError):
    """A bug: applying the command raised something unexpected. The command's effects
    were rolled back, so every member stays in the same state."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[int, type[StateError]] = {
    cls.code.value[0]: cls
    for cls in (InvalidArgument, NotFound, FailedPrecondition, OutOfRange, ResourceExhausted, PermissionDenied, Internal)
}


_STATUS_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}


def from_proto(error: command_pb2.CommandError) -> StateError:
    """The domain error a CommandError stands for, for a service that wants to raise it:
    an instance of the class of its code (the base class: Compacted comes back as
    OutOfRange), with the code itself kept even when no class has it."""
    cls = _BY_CODE.get(error.code, StateError)
    err = cls(error.message)
    if cls is StateError:
        err.code = _STATUS_BY_NUMBER.get(error.code, grpc.StatusCode.UNKNOWN)
    return err
