"""A refusal's cause crosses the log (CommandError.cause, coord_server/errors.py Rule 4):
the state machine names the class it raised, and ``from_proto`` rebuilds that class, so
no reader of a CommandResult has to parse its message."""

from __future__ import annotations

from coord.raft.v1 import command_pb2
from coord.v1 import kv_pb2, lease_pb2
from coord_server import errors

from .driver import Driver


def _back(result: command_pb2.CommandResult) -> errors.CoordError:
    """The error a member reading ``result`` off the wire sees."""
    assert result.WhichOneof("result") == "error", f"expected an error, got {result}"
    return errors.from_proto(command_pb2.CommandResult.FromString(result.SerializeToString()).error)


def _range_txn(revision: int) -> command_pb2.Command:
    read = kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=b"a", revision=revision))
    return command_pb2.Command(txn=kv_pb2.TxnRequest(success=[read]))


def test_a_txn_reading_a_compacted_revision_comes_back_as_compacted_with_its_numbers() -> None:
    d = Driver()
    for i in range(4):
        d.put(b"a", str(i).encode())
    assert d.ok(d.compact(4))
    back = _back(d.apply(_range_txn(2)))
    assert type(back) is errors.Compacted
    assert (back.revision, back.compact_revision) == (2, 4)
    assert back.code is errors.Code.OUT_OF_RANGE


def test_a_txn_reading_a_future_revision_comes_back_as_future_revision() -> None:
    d = Driver()
    d.put(b"a", b"1")
    back = _back(d.apply(_range_txn(50)))
    assert type(back) is errors.FutureRevision
    assert (back.revision, back.current) == (50, 2)


def test_lease_refusals_come_back_by_cause() -> None:
    d = Driver()
    d.grant(ttl=10, lease_id=7)
    assert type(_back(d.cmd(lease_grant=lease_pb2.LeaseGrantRequest(ttl=10, id=7)))) is errors.LeaseExists
    assert type(_back(d.revoke(8))) is errors.LeaseNotFound
    assert type(_back(d.cmd(put=kv_pb2.PutRequest(key=b"k", lease=8)))) is errors.LeaseNotFound


def test_ignore_value_on_a_missing_key_comes_back_as_key_not_found() -> None:
    d = Driver()
    back = _back(d.cmd(put=kv_pb2.PutRequest(key=b"missing", ignore_value=True)))
    assert type(back) is errors.KeyNotFound
    assert back.code is errors.Code.INVALID_ARGUMENT


def test_a_refusal_without_a_named_cause_carries_none() -> None:
    d = Driver()
    result = d.txn(success=[kv_pb2.RequestOp()])  # an operation with no request set
    assert result.error.cause == ""
    assert type(_back(result)) is errors.InvalidArgument


def test_an_error_logged_before_causes_decodes_to_its_codes_class() -> None:
    """An entry (or a remembered result in a snapshot) written before the cause field:
    only code and message on the wire."""
    old = command_pb2.CommandError(code=int(errors.Code.NOT_FOUND), message="lease 7 not found")
    assert type(errors.from_proto(command_pb2.CommandError.FromString(old.SerializeToString()))) is errors.NotFound


def test_a_cause_that_does_not_match_its_code_or_is_unknown_is_ignored() -> None:
    mismatched = command_pb2.CommandError(code=int(errors.Code.NOT_FOUND), message="m", cause="Compacted")
    unknown = command_pb2.CommandError(code=int(errors.Code.NOT_FOUND), message="m", cause="NoSuchClass")
    assert type(errors.from_proto(mismatched)) is errors.NotFound
    assert type(errors.from_proto(unknown)) is errors.NotFound


def test_every_named_cause_survives_to_proto_and_from_proto() -> None:
    for name, cls in errors._BY_CAUSE.items():
        error = cls(5, 9) if cls in (errors.Compacted, errors.FutureRevision) else cls("a sentence")  # type: ignore[call-arg]
        back = errors.from_proto(error.to_proto())
        assert type(back) is cls and back.message == error.message, name
