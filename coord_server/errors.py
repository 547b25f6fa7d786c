"""coord's errors: one set of exception classes for the state machine, the node and the
services, each carrying the status code a client can act on.

Rule 1: every refusal is one of these. The state machine raises them before anything
        changes (or after rolling back what did) and turns them into the CommandError of
        its CommandResult (``to_proto``); ``from_proto`` gives the error back, as the
        class of its code.
Rule 2: no gRPC here (the state machine is deterministic and transport-free): a code is
        a ``Code``, gRPC's status name and wire number. ``coord_server.status`` is the one
        place that turns a code into a ``grpc.StatusCode``; every error leaves a service
        through ``services/common.py`` ``status_of``, which uses it.
Rule 3: ``code`` is a class attribute; an error of a code with no class of its own
        (``error_of``) is a CoordError carrying it on the instance.
"""

from __future__ import annotations

import enum

from coord.raft.v1 import command_pb2


class Code(enum.IntEnum):
    """Status codes by gRPC's names and numbers (the numbers a CommandError and a
    ForwardResponse carry on the wire, fixed by the gRPC spec)."""

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


class CoordError(Exception):
    """Base of every error; ``message`` is one sentence. ``leader_address``: where to
    retry, when this member knows (an Unavailable answered with ``coord-leader``)."""

    code: Code = Code.INTERNAL

    def __init__(self, message: str, leader_address: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.leader_address = leader_address

    def to_proto(self) -> command_pb2.CommandError:
        """This error as carried in a CommandResult (or a forwarded batch's result)."""
        return command_pb2.CommandError(code=int(self.code), message=self.message)


class Cancelled(CoordError):
    code = Code.CANCELLED


class InvalidArgument(CoordError):
    """The request is malformed, whatever the state (or, for ignore_value/ignore_lease,
    names a key that does not exist, as etcd)."""

    code = Code.INVALID_ARGUMENT


class DeadlineExceeded(CoordError):
    """The call's deadline (or the services' DEFAULT_TIMEOUT) passed while waiting; a
    write may still be applied."""

    code = Code.DEADLINE_EXCEEDED


class NotFound(CoordError):
    """The named lease, member or other object does not exist."""

    code = Code.NOT_FOUND


class PermissionDenied(CoordError):
    """The caller may not do this (by the auth state at the command's log position, or
    as admitted)."""

    code = Code.PERMISSION_DENIED


class ResourceExhausted(CoordError):
    """A size limit or a quota was exceeded."""

    code = Code.RESOURCE_EXHAUSTED


class FailedPrecondition(CoordError):
    """The request is valid but the state forbids it (a lease ID in use, a stale seq)."""

    code = Code.FAILED_PRECONDITION


class OutOfRange(CoordError):
    """A revision outside the readable window."""

    code = Code.OUT_OF_RANGE


class Compacted(OutOfRange):
    """The revision asked for was compacted away; ``compact_revision`` is the last
    compaction (reads may start at it, watches right after it)."""

    def __init__(self, revision: int, compact_revision: int) -> None:
        super().__init__(f"revision {revision} has been compacted; the compact revision is {compact_revision}")
        self.revision = revision
        self.compact_revision = compact_revision


class FutureRevision(OutOfRange):
    """The revision asked for is greater than the store's current revision."""

    def __init__(self, revision: int, current: int) -> None:
        super().__init__(f"revision {revision} is in the future; the current revision is {current}")
        self.revision = revision
        self.current = current


class Internal(CoordError):
    """A bug: applying the command raised something unexpected. The command's effects
    were rolled back, so every member stays in the same state."""

    code = Code.INTERNAL


class Unavailable(CoordError):
    """No leader now, or this member is stopping. Safe to retry (following
    ``leader_address`` when it is known). Nothing was applied."""

    code = Code.UNAVAILABLE


class Unauthenticated(CoordError):
    """No valid token where one is needed."""

    code = Code.UNAUTHENTICATED


# ------------------------------------------------------------------ causes with a name
# Refusals another API words differently by cause (the etcd gateway: etcd/errors.py),
# each raised where it arises on the serving member. A refusal that crossed the log (a
# CommandError) comes back as its code's class only.


class EmptyKey(InvalidArgument):
    """A key that must be given is empty."""


class TooManyOperations(InvalidArgument):
    """A txn has more operations or comparisons than the limit."""


class DuplicateKey(InvalidArgument):
    """A txn branch writes one key twice."""


class BadAddress(InvalidArgument):
    """A member address that is not host:port."""


class RequestTooLarge(ResourceExhausted):
    """A request over the size limit."""


class QuotaExhausted(ResourceExhausted):
    """The store is over its backend quota."""


class MemberNotFound(NotFound):
    """No member has this ID."""


class PeerAddressInUse(FailedPrecondition):
    """Another member has this peer address."""


class NotALearner(FailedPrecondition):
    """Only a learner can be promoted."""


class LearnerNotCaughtUp(FailedPrecondition):
    """The learner's log is too far behind the leader's to promote it."""


class LearnerTransferee(FailedPrecondition):
    """Leadership cannot go to a learner."""


class NotEnoughStartedMembers(FailedPrecondition):
    """Adding a voter now would leave too few started voters for a quorum
    (services/cluster.py Rule 4)."""


class UnhealthyCluster(Unavailable):
    """A voter has not answered the leader lately: adding a voter now could leave the
    cluster unable to commit (services/cluster.py Rule 4)."""


_BY_CODE: dict[Code, type[CoordError]] = {
    cls.code: cls
    for cls in (
        Cancelled, InvalidArgument, DeadlineExceeded, NotFound, PermissionDenied, ResourceExhausted,
        FailedPrecondition, OutOfRange, Internal, Unavailable, Unauthenticated,
    )
}


def error_of(code: Code | int, message: str, leader_address: str = "") -> CoordError:
    """The error of ``code`` (a Code or a wire number): an instance of that code's class
    (the base one: Compacted comes back as OutOfRange), or a CoordError carrying the
    code itself when no class has it."""
    code = Code.of(int(code))
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message, leader_address)
    err = CoordError(message, leader_address)
    err.code = code
    return err


def from_proto(error: command_pb2.CommandError) -> CoordError:
    """The error a CommandError stands for (``error_of`` its code and message)."""
    return error_of(error.code, error.message)
