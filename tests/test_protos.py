"""The API contract in protos/: generated stubs are current, and the protos keep their rules.

What is checked, and where the rule comes from:

- The committed stubs under coord/ are byte for byte what protos/ generates with the
  pinned tools (DESIGN.md "Layout"; the test twin of ``make proto-check``).
- Every service and RPC that DESIGN.md "Public API" names exists, with the streaming
  shape it gives, and nothing else does (a new RPC is a design change: update both).
- Every response of the public API starts with ``ResponseHeader header = 1``.
- Every message, field, enum, enum value, oneof, service and RPC has a leading comment in
  full sentences; field and enum value comments start with their name; every RPC comment
  names the status codes it returns (STYLE.md section 5, "Comment style").
- buf's style rules that coord follows: directory = package, prefixed enum values with an
  ``_UNSPECIFIED`` zero, no nested enums, lower_snake_case fields, a unique request and
  response per RPC named ``<Rpc>Request`` (KV, as etcd) or ``<Service><Rpc>Request``.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent

# DESIGN.md "Public API": service -> (generated module, {rpc: (client_streaming, server_streaming)}).
PUBLIC_SERVICES: dict[str, tuple[str, dict[str, tuple[bool, bool]]]] = {
    "KV": (
        "coord.v1.kv_pb2",
        {
            "Put": (False, False),
            "Range": (False, False),
            "DeleteRange": (False, False),
            "Txn": (False, False),
            "Compact": (False, False),
            "Watch": (True, True),
            "Pipeline": (True, True),
        },
    ),
    "Lease": (
        "coord.v1.lease_pb2",
        {
            "Grant": (False, False),
            "Revoke": (False, False),
            "KeepAlive": (True, True),
            "TimeToLive": (False, False),
            "List": (False, False),
        },
    ),
    "Lock": (
        "coord.v1.lock_pb2",
        {"Acquire": (False, False), "Release": (False, False), "Inspect": (False, False)},
    ),
    "Election": (
        "coord.v1.election_pb2",
        {
            "Campaign": (False, False),
            "Proclaim": (False, False),
            "Leader": (False, False),
            "Observe": (False, True),
            "Resign": (False, False),
        },
    ),
    "Ring": (
        "coord.v1.ring_pb2",
        {
            "Join": (False, False),
            "Leave": (False, False),
            "Lookup": (False, False),
            "Get": (False, False),
            "Watch": (False, True),
        },
    ),
    "Cluster": (
        "coord.v1.cluster_pb2",
        {
            "Status": (False, False),
            "MemberList": (False, False),
            "MemberAdd": (False, False),
            "MemberPromote": (False, False),
            "MemberRemove": (False, False),
            "TransferLeadership": (False, False),
        },
    ),
    "Maintenance": ("coord.v1.maintenance_pb2", {"Snapshot": (False, True)}),
}

# DESIGN.md "Internal, package coord.raft.v1, service Raft".
INTERNAL_SERVICES: dict[str, tuple[str, dict[str, tuple[bool, bool]]]] = {
    "Raft": (
        "coord.raft.v1.raft_pb2",
        {"Send": (True, False), "InstallSnapshot": (True, False), "Forward": (True, True)},
    ),
}

STATUS_CODES = (
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "FAILED_PRECONDITION",
    "OUT_OF_RANGE",
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "RESOURCE_EXHAUSTED",
    "DATA_LOSS",
)

LOWER_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def _load_protogen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("protogen", ROOT / "tools" / "protogen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("protogen", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def protogen() -> ModuleType:
    pytest.importorskip(
        "grpc_tools",
        reason="grpc_tools (grpcio-tools, a dev extra) is not installed; run `make .venv`",
    )
    return _load_protogen()


@pytest.fixture(scope="module")
def source_files(protogen: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> list[
    descriptor_pb2.FileDescriptorProto
]:
    out = tmp_path_factory.mktemp("descriptors") / "protos.binpb"
    protogen.descriptor_set(out)
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    # coord/etcd/ holds etcd's own API, kept in etcd's style for wire compatibility.
    files = [f for f in fds.file if f.name.startswith("coord/") and not f.name.startswith("coord/etcd/")]
    assert files, "no coord protos in the descriptor set"
    return files


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


# --- (a) the committed stubs are current ---------------------------------------------


def test_committed_stubs_match_protos(protogen: ModuleType, tmp_path: Path) -> None:
    protogen.generate(tmp_path)
    problems = protogen.compare(tmp_path)
    assert not problems, (
        "generated stubs are out of date with protos/; run `make proto` and commit:\n"
        + "\n".join(problems)
    )


def test_stubs_import_by_package_path() -> None:
    grpc_module = importlib.import_module("coord.v1.kv_pb2_grpc")
    assert hasattr(grpc_module, "KVStub") and hasattr(grpc_module, "KVServicer")
    raft_grpc = importlib.import_module("coord.raft.v1.raft_pb2_grpc")
    assert hasattr(raft_grpc, "RaftStub")


# --- (b) every service and RPC of DESIGN.md --------------------------------------------


def _streaming(method: object) -> tuple[bool, bool]:
    proto = descriptor_pb2.MethodDescriptorProto()
    method.CopyToProto(proto)  # type: ignore[attr-defined]
    return proto.client_streaming, proto.server_streaming


@pytest.mark.parametrize(
    "service", sorted({**PUBLIC_SERVICES, **INTERNAL_SERVICES}), ids=str
)
def test_service_has_exactly_the_designed_rpcs(service: str) -> None:
    module_name, rpcs = {**PUBLIC_SERVICES, **INTERNAL_SERVICES}[service]
    module = importlib.import_module(module_name)
    assert service in module.DESCRIPTOR.services_by_name, f"{module_name} lacks service {service}"
    methods = module.DESCRIPTOR.services_by_name[service].methods_by_name
    assert set(methods) == set(rpcs), f"{service}: RPCs differ from DESIGN.md"
    for name, shape in rpcs.items():
        assert _streaming(methods[name]) == shape, (
            f"{service}.{name}: (client_streaming, server_streaming) should be {shape}"
        )


def test_public_services_live_in_coord_v1() -> None:
    for service, (module_name, _) in PUBLIC_SERVICES.items():
        module = importlib.import_module(module_name)
        full_name = module.DESCRIPTOR.services_by_name[service].full_name
        assert full_name == f"coord.v1.{service}"
    raft = importlib.import_module("coord.raft.v1.raft_pb2")
    assert raft.DESCRIPTOR.services_by_name["Raft"].full_name == "coord.raft.v1.Raft"


# --- (c) every public response starts with the header ----------------------------------


def _public_methods() -> Iterator[tuple[str, object]]:
    for service, (module_name, _) in PUBLIC_SERVICES.items():
        module = importlib.import_module(module_name)
        for method in module.DESCRIPTOR.services_by_name[service].methods:
            yield f"{service}.{method.name}", method


def test_every_response_starts_with_header() -> None:
    checked = 0
    for rpc, method in _public_methods():
        output = method.output_type  # type: ignore[attr-defined]
        first = output.fields_by_number.get(1)
        assert first is not None, f"{rpc}: {output.name} has no field 1"
        assert first.name == "header", f"{rpc}: {output.name} field 1 is {first.name!r}"
        assert first.message_type is not None
        assert first.message_type.full_name == "coord.v1.ResponseHeader", (
            f"{rpc}: {output.name}.header is not a coord.v1.ResponseHeader"
        )
        checked += 1
    assert checked == sum(len(rpcs) for _, rpcs in PUBLIC_SERVICES.values())


def test_every_message_named_response_has_header(
    source_files: list[descriptor_pb2.FileDescriptorProto],
) -> None:
    for file in source_files:
        if file.package != "coord.v1":
            continue
        for message in file.message_type:
            if message.name.endswith("Response"):
                first = next((f for f in message.field if f.number == 1), None)
                assert first is not None and first.name == "header", message.name
                assert first.type_name == ".coord.v1.ResponseHeader", message.name


# --- (d) comments everywhere -------------------------------------------------------------

# FileDescriptorProto / DescriptorProto / ... field numbers used in SourceCodeInfo paths.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE, _FILE_SYNTAX = 4, 5, 6, 12
_MSG_FIELD, _MSG_NESTED, _MSG_ENUM, _MSG_ONEOF = 2, 3, 4, 8
_ENUM_VALUE, _SERVICE_METHOD = 2, 2


_Element = tuple[str, str, str, tuple[int, ...]]


def _elements(file: descriptor_pb2.FileDescriptorProto) -> Iterator[_Element]:
    """Yield (kind, name, full name, source path) for every element that needs a comment."""

    def enum(
        e: descriptor_pb2.EnumDescriptorProto, prefix: str, path: tuple[int, ...]
    ) -> Iterator[_Element]:
        yield "enum", e.name, f"{prefix}.{e.name}", path
        for i, value in enumerate(e.value):
            yield "enum value", value.name, f"{prefix}.{value.name}", path + (_ENUM_VALUE, i)

    def message(
        m: descriptor_pb2.DescriptorProto, prefix: str, path: tuple[int, ...]
    ) -> Iterator[_Element]:
        full = f"{prefix}.{m.name}"
        yield "message", m.name, full, path
        for i, field in enumerate(m.field):
            yield "field", field.name, f"{full}.{field.name}", path + (_MSG_FIELD, i)
        for i, oneof in enumerate(m.oneof_decl):
            yield "oneof", oneof.name, f"{full}.{oneof.name}", path + (_MSG_ONEOF, i)
        for i, nested in enumerate(m.nested_type):
            yield from message(nested, full, path + (_MSG_NESTED, i))
        for i, nested_enum in enumerate(m.enum_type):
            yield from enum(nested_enum, full, path + (_MSG_ENUM, i))

    package = file.package
    yield "file", file.name, file.name, (_FILE_SYNTAX,)
    for i, m in enumerate(file.message_type):
        yield from message(m, package, (_FILE_MESSAGE, i))
    for i, e in enumerate(file.enum_type):
        yield from enum(e, package, (_FILE_ENUM, i))
    for i, s in enumerate(file.service):
        yield "service", s.name, f"{package}.{s.name}", (_FILE_SERVICE, i)
        for j, method in enumerate(s.method):
            yield "rpc", method.name, f"{package}.{s.name}.{method.name}", (
                _FILE_SERVICE,
                i,
                _SERVICE_METHOD,
                j,
            )


def _comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    return {
        tuple(loc.path): loc.leading_comments
        for loc in file.source_code_info.location
        if loc.leading_comments.strip()
    }


def test_every_element_has_a_leading_comment(
    source_files: list[descriptor_pb2.FileDescriptorProto],
) -> None:
    missing: list[str] = []
    badly_started: list[str] = []
    unfinished: list[str] = []
    for file in source_files:
        comments = _comments(file)
        for kind, name, full, path in _elements(file):
            text = " ".join(comments.get(path, "").split())
            if not text:
                missing.append(f"{file.name}: {kind} {full}")
                continue
            if kind in ("field", "enum value") and not re.match(
                re.escape(name) + r"(?![A-Za-z0-9_])", text
            ):
                badly_started.append(f"{file.name}: {kind} {full}: {text[:60]!r}")
            if not text.endswith((".", "?", ".)")):
                unfinished.append(f"{file.name}: {kind} {full}: ...{text[-40:]!r}")
    assert not missing, "elements without a leading // comment:\n" + "\n".join(missing)
    assert not badly_started, "comments must start with the element's name:\n" + "\n".join(
        badly_started
    )
    assert not unfinished, "comments must be full sentences, ending in a period:\n" + "\n".join(
        unfinished
    )


def test_every_rpc_comment_names_its_status_codes(
    source_files: list[descriptor_pb2.FileDescriptorProto],
) -> None:
    silent: list[str] = []
    for file in source_files:
        comments = _comments(file)
        for kind, _, full, path in _elements(file):
            if kind != "rpc":
                continue
            text = comments.get(path, "")
            if not re.search(r"(?i)\berrors\b", text) or not any(c in text for c in STATUS_CODES):
                silent.append(full)
    assert not silent, "RPC comments without an 'Errors:' list of status codes:\n" + "\n".join(
        silent
    )


# --- buf style rules --------------------------------------------------------------------


def test_directory_matches_package(source_files: list[descriptor_pb2.FileDescriptorProto]) -> None:
    for file in source_files:
        directory = file.name.rsplit("/", 1)[0]
        assert file.package == directory.replace("/", "."), file.name
        assert re.fullmatch(r"[a-z0-9_/]+\.proto", file.name), f"{file.name}: not lower_snake_case"


def test_enums_are_prefixed_top_level_with_unspecified_zero(
    source_files: list[descriptor_pb2.FileDescriptorProto],
) -> None:
    for file in source_files:
        for message in file.message_type:
            assert not message.enum_type, f"{message.name}: nested enums are not allowed"
        for enum in file.enum_type:
            prefix = _upper_snake(enum.name) + "_"
            zero = [v for v in enum.value if v.number == 0]
            assert zero and zero[0].name == prefix + "UNSPECIFIED", (
                f"{enum.name}: the zero value must be {prefix}UNSPECIFIED"
            )
            for value in enum.value:
                assert value.name.startswith(prefix), f"{enum.name}.{value.name}: want {prefix}*"


def test_fields_are_lower_snake_case(source_files: list[descriptor_pb2.FileDescriptorProto]) -> None:
    for file in source_files:
        for message in file.message_type:
            for field in message.field:
                assert LOWER_SNAKE.match(field.name), f"{message.name}.{field.name}"


def test_each_public_rpc_has_its_own_request_and_response(
    source_files: list[descriptor_pb2.FileDescriptorProto],
) -> None:
    used: dict[str, str] = {}
    for file in source_files:
        if file.package != "coord.v1":
            continue
        for service in file.service:
            stem = "" if service.name == "KV" else service.name
            for method in service.method:
                rpc = f"{service.name}.{method.name}"
                assert method.input_type == f".coord.v1.{stem}{method.name}Request", rpc
                assert method.output_type == f".coord.v1.{stem}{method.name}Response", rpc
                for type_name in (method.input_type, method.output_type):
                    assert type_name not in used, f"{rpc} reuses {type_name} of {used.get(type_name)}"
                    used[type_name] = rpc
