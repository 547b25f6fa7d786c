"""One error model: coord's codes (``coord_server.errors.Code``, defined without gRPC),
one set of exception classes (``coord_server.errors``) for the state machine, the node
and the services, and one map to ``grpc.StatusCode`` (``coord_server.status``)."""

from __future__ import annotations

import ast
from pathlib import Path

import grpc

from coord.raft.v1 import command_pb2
from coord_server import errors
from coord_server.errors import Code, Compacted, CoordError, NotFound, Unavailable, error_of, from_proto
from coord_server.services.common import status_of
from coord_server.status import code_of, grpc_status

ROOT = Path(__file__).resolve().parents[2]


def test_every_grpc_status_has_a_code_of_the_same_name_and_number() -> None:
    assert {c.name: int(c) for c in Code} == {s.name: s.value[0] for s in grpc.StatusCode}
    for status in grpc.StatusCode:
        assert grpc_status(Code[status.name]) is status
        assert grpc_status(int(Code[status.name])) is status
        assert code_of(status) is Code[status.name]


def test_a_number_grpc_does_not_define_is_unknown() -> None:
    assert grpc_status(999) is grpc.StatusCode.UNKNOWN
    assert Code.of(999) is Code.UNKNOWN
    assert error_of(999, "m").code is Code.UNKNOWN


def test_errors_leave_the_services_with_their_grpc_status() -> None:
    assert status_of(Compacted(3, 5))[0] is grpc.StatusCode.OUT_OF_RANGE
    assert status_of(NotFound("no such lease")) == (grpc.StatusCode.NOT_FOUND, "no such lease", "")
    assert status_of(Unavailable("no leader", "10.0.0.1:7")) == (grpc.StatusCode.UNAVAILABLE, "no leader", "10.0.0.1:7")
    back = from_proto(command_pb2.CommandError(code=int(Code.UNAVAILABLE), message="m"))
    assert isinstance(back, Unavailable) and status_of(back)[0] is grpc.StatusCode.UNAVAILABLE


def test_a_code_comes_back_as_its_class() -> None:
    for code in Code:
        err = error_of(code, "m", "leader:1")
        assert err.code is code and err.message == "m" and err.leader_address == "leader:1"
        if code not in (Code.OK, Code.UNKNOWN, Code.ALREADY_EXISTS, Code.ABORTED, Code.UNIMPLEMENTED, Code.DATA_LOSS):
            assert type(err) is not CoordError, code  # a class of its own
    assert NotFound("x").to_proto() == command_pb2.CommandError(code=5, message="x")


def _raised_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name):
                names.add(target.id)
            elif isinstance(target, ast.Attribute):
                names.add(target.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            names.add(node.func.id)  # made to be raised later (a future's exception, a table)
    return names


def test_one_set_of_exception_classes_each_of_them_raised() -> None:
    """No second hierarchy of coord errors (an Exception subclass with a ``code`` of its
    own outside coord_server/errors.py, the etcd gateway's wire errors aside) and no class
    here that nothing raises."""
    used: set[str] = set()
    for path in sorted((ROOT / "coord_server").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), rel)
        if rel != "coord_server/errors.py":
            used |= _raised_names(tree)
        if rel in ("coord_server/errors.py", "coord_server/etcd/errors.py", "coord_server/etcd/calls.py",
                   "coord_server/http/connect.py"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(stmt, (ast.Assign, ast.AnnAssign)) and "code" in ast.unparse(stmt).split("=")[0]
                for stmt in node.body
            ):
                bases = {ast.unparse(b) for b in node.bases}
                assert not bases & {"Exception", "CoordError"}, f"{rel}: {node.name} is a second error hierarchy"
    classes = {name for name, value in vars(errors).items()
               if isinstance(value, type) and issubclass(value, CoordError) and value is not CoordError}
    never = classes - used
    assert not never, f"never raised: {sorted(never)}"
