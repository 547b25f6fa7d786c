"""Domain errors of the state machine, each carrying the status code a client can act on.

Rule 1: every refusal of a request is one of these, raised before anything changes (or
        after rolling back what did). The state machine turns them into a CommandError in
        the CommandResult; the reads (``range``, ``events_since``, ``lease_info``) and the
        edge checks in ``validation`` raise them directly for the services to translate.
Rule 2: ``code`` is a class attribute, as in ``coord_server.errors``, so one translation
        (``err.code``, ``err.message``) serves both hierarchies.
Rule 3: no gRPC here (the state machine is deterministic and transport-free): a code is a
        ``Code``, gRPC's status name and wire number; ``coord_server.errors.grpc_status``
        is the one place that turns it into a ``grpc.StatusCode``.
"""

from __future__ import annotations

import enum

from coord.raft.v1 import command_pb2


class Code(enum.IntEnum):
    """Status codes by gRPC's names and numbers (the numbers a CommandError carries on
    the wire, fixed by the gRPC spec)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @classmethod
    def of(cls, number: int) -> Code:
        """The code of a wire number; UNKNOWN for a number gRPC does not define."""
        try:
            return cls(number)
        except ValueError:
            return cls.UNKNOWN


class StateError(Exception):
    """Base of the state machine's domain errors. ``message`` is one sentence."""

    code: Code = Code.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_proto(self) -> command_pb2.CommandError:
        """This error as carried in a CommandResult."""
        return command_pb2.CommandError(code=int(self.code), message=self.message)


class InvalidArgument(StateError):
    """The request is malformed, whatever the state (or, for ignore_value/ignore_lease,
    names a key that does not exist, as etcd)."""

    code = Code.INVALID_ARGUMENT


class NotFound(StateError):
    """The named lease (or, later, another named object) does not exist."""

    code = Code.NOT_FOUND


class FailedPrecondition(StateError):
    """The request is valid but the state forbids it (a lease ID in use, a stale seq)."""

    code = Code.FAILED_PRECONDITION


class OutOfRange(StateError):
    """A revision outside the readable window."""

    code = Code.OUT_OF_RANGE


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

    code = Code.RESOURCE_EXHAUSTED


class PermissionDenied(StateError):
    """The command's user may not do this, by the auth state at the command's log position."""

    code = Code.PERMISSION_DENIED


class Internal(StateError):
    """A bug: applying the command raised something unexpected. The command's effects
    were rolled back, so every member stays in the same state."""

    code = Code.INTERNAL


_BY_CODE: dict[int, type[StateError]] = {
    int(cls.code): cls
    for cls in (InvalidArgument, NotFound, FailedPrecondition, OutOfRange, ResourceExhausted, PermissionDenied, Internal)
}


def from_proto(error: command_pb2.CommandError) -> StateError:
    """The domain error a CommandError stands for, for a service that wants to raise it:
    an instance of the class of its code (the base class: Compacted comes back as
    OutOfRange), with the code itself kept even when no class has it."""
    cls = _BY_CODE.get(error.code, StateError)
    err = cls(error.message)
    if cls is StateError:
        err.code = Code.of(error.code)
    return err
