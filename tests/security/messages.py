"""Protobuf messages for the security tests, built from descriptors (so they follow the
protos as they change): every field set, or random fields for the fuzz tests."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

import importlib
import pkgutil

import coord.raft.v1
import coord.v1

for _package in (coord.v1, coord.raft.v1):  # every message and service in the default pool
    for _module in pkgutil.iter_modules(_package.__path__):
        if _module.name.endswith("_pb2"):
            importlib.import_module(f"{_package.__name__}.{_module.name}")

def filled(desc: Descriptor, depth: int = 0) -> Any:
    """A message of type ``desc`` with every field set (one member of each oneof)."""
    message = message_factory.GetMessageClass(desc)()
    oneofs: set[str] = set()
    for f in desc.fields:
        if f.containing_oneof is not None:
            if f.containing_oneof.name in oneofs:
                continue
            oneofs.add(f.containing_oneof.name)
        repeated = f.is_repeated
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if f.message_type.GetOptions().map_entry or depth >= 3:
                continue
            sub = filled(f.message_type, depth + 1)
            (getattr(message, f.name).add() if repeated else getattr(message, f.name)).CopyFrom(sub)
            continue
        value = scalar(f)
        if repeated:
            getattr(message, f.name).append(value)
        else:
            setattr(message, f.name, value)
    return message


def scalar(f: FieldDescriptor) -> Any:
    if f.type == FieldDescriptor.TYPE_STRING:
        return "enum-probe"
    if f.type == FieldDescriptor.TYPE_BYTES:
        return f"enum-probe-{f.name}".encode()  # key < range_end: a range that holds keys
    if f.type == FieldDescriptor.TYPE_BOOL:
        return True
    if f.type == FieldDescriptor.TYPE_ENUM:
        values = f.enum_type.values
        return values[1].number if len(values) > 1 else values[0].number
    if f.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return 1.0
    return 1


def method_descriptor(method: str) -> Any:
    """The descriptor of ``/pkg.Service/Method`` from the default pool."""
    service, _, name = method.lstrip("/").partition("/")
    return descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]


INT_BOUNDS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1), FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
SMALL_TEXT = st.text(max_size=24) | st.sampled_from(["", "a", "a/", "\x00", "jobs/x", "enum-probe"])
SMALL_BYTES = st.binary(max_size=24) | st.sampled_from([b"", b"a", b"a/", b"\x00", b"\xff" * 4])


def _value(draw: Any, f: FieldDescriptor, depth: int) -> Any:
    if f.type == FieldDescriptor.TYPE_STRING:
        return draw(SMALL_TEXT)
    if f.type == FieldDescriptor.TYPE_BYTES:
        return draw(SMALL_BYTES)
    if f.type == FieldDescriptor.TYPE_BOOL:
        return draw(st.booleans())
    if f.type == FieldDescriptor.TYPE_ENUM:
        return draw(st.sampled_from([v.number for v in f.enum_type.values]) | st.integers(-3, 40))
    if f.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return draw(st.floats(allow_nan=True, width=32))
    low, high = INT_BOUNDS[f.type]
    return draw(st.sampled_from([0, 1, 2, low, high]) | st.integers(low, high) | st.integers(0, 100))


@st.composite
def random_message(draw: Any, desc: Descriptor, depth: int = 0) -> Any:
    """A message of type ``desc`` with a random subset of its fields set to random values."""
    message = message_factory.GetMessageClass(desc)()
    for f in desc.fields:
        if not draw(st.booleans()):
            continue
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if f.message_type.GetOptions().map_entry or depth >= 2:
                continue
            count = draw(st.integers(0, 2)) if f.is_repeated else 1
            for _ in range(count):
                sub = draw(random_message(f.message_type, depth + 1))
                (getattr(message, f.name).add() if f.is_repeated else getattr(message, f.name)).CopyFrom(sub)
            continue
        if f.is_repeated:
            getattr(message, f.name).extend([_value(draw, f, depth) for _ in range(draw(st.integers(0, 2)))])
        else:
            setattr(message, f.name, _value(draw, f, depth))
    return message


@st.composite
def mutated(draw: Any, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, cut, inserted or duplicated."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "duplicate"]))
        at = draw(st.integers(0, max(0, len(out) - 1)))
        if kind == "flip" and out:
            out[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            out[at:at] = out[at:at + draw(st.integers(1, 16))]
    return bytes(out)
