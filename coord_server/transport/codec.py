"""Conversion between the core's dataclasses and coord.raft.v1 protobuf messages.

Enums map by name: the proto enums reserve 0 for ``*_UNSPECIFIED``, so the numbers differ
from the core's by one, and mapping by name keeps that difference in one place.
"""

from __future__ import annotations

from coord.raft.v1 import raft_pb2 as pb
from coord_server.raft import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)

_TYPE_TO_PB = {t: pb.MessageType.Value(f"MESSAGE_TYPE_{t.name}") for t in MessageType}
_TYPE_FROM_PB = {v: k for k, v in _TYPE_TO_PB.items()}
_ENTRY_TO_PB = {t: pb.EntryType.Value(f"ENTRY_TYPE_{t.name}") for t in EntryType}
_ENTRY_FROM_PB = {v: k for k, v in _ENTRY_TO_PB.items()}


class DecodeError(ValueError):
    """A peer sent a message the core cannot take (unknown enum value, missing field)."""


def conf_state_to_pb(conf: ConfState) -> pb.ConfState:
    return pb.ConfState(voters=sorted(conf.voters), learners=sorted(conf.learners))


def conf_state_from_pb(conf: pb.ConfState) -> ConfState:
    return ConfState(voters=frozenset(conf.voters), learners=frozenset(conf.learners))


def snapshot_meta_to_pb(meta: SnapshotMeta) -> pb.SnapshotMetadata:
    return pb.SnapshotMetadata(
        conf_state=conf_state_to_pb(meta.conf_state), index=meta.index, term=meta.term
    )


def snapshot_meta_from_pb(meta: pb.SnapshotMetadata) -> SnapshotMeta:
    return SnapshotMeta(
        index=meta.index, term=meta.term, conf_state=conf_state_from_pb(meta.conf_state)
    )


def message_to_pb(m: Message, with_snapshot_data: bool = True) -> pb.Message:
    """Encode ``m``; a SNAP's data is left out when ``with_snapshot_data`` is False (the
    snapshot stream carries it in chunks)."""
    out = pb.Message(
        type=_TYPE_TO_PB[m.type],
        to=m.to,
        from_id=m.from_,
        term=m.term,
        log_term=m.log_term,
        index=m.index,
        commit=m.commit,
        reject=m.reject,
        reject_hint=m.reject_hint,
        context=m.context,
    )
    if m.entries:
        to_pb = _ENTRY_TO_PB
        out.entries.extend(
            pb.Entry(term=e.term, index=e.index, type=to_pb[e.type], data=e.data) for e in m.entries
        )
    if m.snapshot is not None:
        out.snapshot.metadata.CopyFrom(snapshot_meta_to_pb(m.snapshot.meta))
        if with_snapshot_data:
            out.snapshot.data = m.snapshot.data
    return out


def message_from_pb(p: pb.Message, snapshot_data: bytes | None = None) -> Message:
    """Decode ``p``; ``snapshot_data`` replaces the (chunked) snapshot data of a SNAP."""
    try:
        mtype = _TYPE_FROM_PB[p.type]
        from_pb = _ENTRY_FROM_PB
        entries = tuple(Entry(e.term, e.index, from_pb[e.type], e.data) for e in p.entries)
    except KeyError as err:
        raise DecodeError(f"unknown enum value {err.args[0]} in a peer message") from None
    snapshot = None
    if p.HasField("snapshot"):
        data = snapshot_data if snapshot_data is not None else p.snapshot.data
        snapshot = Snapshot(meta=snapshot_meta_from_pb(p.snapshot.metadata), data=data)
    return Message(
        type=mtype,
        to=p.to,
        from_=p.from_id,
        term=p.term,
        log_term=p.log_term,
        index=p.index,
        entries=entries,
        commit=p.commit,
        reject=p.reject,
        reject_hint=p.reject_hint,
        snapshot=snapshot,
        context=p.context,
    )
