"""The byte format of WAL records and snapshot files (format version 1).

Every WAL record is a 12-byte header and a payload::

    offset size  field
    0      4     word    (type << 24) | payload length       little endian u32
    4      4     check   word ^ 0xFFFFFFFF                     guards the length
    8      4     crc     zlib.crc32(payload, word)             covers type, length, payload
    12     len   payload (layout per type, below)

Rule 1: a record is valid only if ``check`` matches ``word`` and ``crc`` matches. ``check``
        lets recovery trust a length *before* reading the payload, so a damaged length is
        reported as corruption instead of being mistaken for a record cut short by a crash.
Rule 2: the checksum is CRC-32 (IEEE, ``zlib.crc32``), not CRC-32C: zlib's is C code
        running at GB/s, a pure-Python CRC-32C would cost more than the fsync it protects.
        Seeding it with ``word`` binds type and length to the payload.
Rule 3: integers are little-endian and unsigned; indexes and terms are u64.
Rule 4: a payload is at most ``MAX_PAYLOAD`` (16 MiB - 1) bytes.

Payloads (``Q`` = u64, ``I`` = u32, ``B`` = u8)::

    SEGMENT_HEADER  magic "coordWAL", I format, Q cluster id, Q segment seq,
                    then the checkpoint: the state before the segment's first record,
                    Q next index, Q last term, Q base index, Q base term,
                    Q hard-state term, Q vote, Q commit,
                    Q snapshot index, Q snapshot term, I #voters, I #learners, Q ids...
    ENTRY           Q term, Q index, B entry type, data
    HARD_STATE      Q term, Q vote, Q commit
    SNAPSHOT        B installed (1: replaces the log), Q index, Q term,
                    I #voters, I #learners, Q ids...
    TRUNCATE        Q index            entries from index on are gone (a conflicting suffix)
    COMPACT         Q index, Q term    entries up to index are gone; (index, term) is the base
    SEAL            Q next segment seq (the last record of every segment but the newest)

Snapshot file: magic "coordSNP", I format, I meta length, Q data length, meta (as the
SNAPSHOT payload without its first byte), data, I crc32 of everything before it.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

from ..raft.messages import ConfState, EntryType, HardState, SnapshotMeta

FORMAT_VERSION = 1
"""The on-disk format this build writes and the newest it reads."""

MAX_PAYLOAD = (1 << 24) - 1

SEGMENT_HEADER = 1
ENTRY = 2
HARD_STATE = 3
SNAPSHOT = 4
TRUNCATE = 5
COMPACT = 6
SEAL = 7

TYPE_NAMES = {
    SEGMENT_HEADER: "segment header",
    ENTRY: "entry",
    HARD_STATE: "hard state",
    SNAPSHOT: "snapshot",
    TRUNCATE: "truncate",
    COMPACT: "compact",
    SEAL: "seal",
}

HEADER = struct.Struct("<III")
HEADER_SIZE = HEADER.size
ENTRY_HEAD = struct.Struct("<QQB")
ENTRY_HEAD_SIZE = ENTRY_HEAD.size
HARD_STATE_BODY = struct.Struct("<QQQ")
U64 = struct.Struct("<Q")
U64x2 = struct.Struct("<QQ")
_SNAP_HEAD = struct.Struct("<BQQII")
_SEG_HEAD = struct.Struct("<8sIQQ" "QQQQ" "QQQ" "QQII")
SEGMENT_MAGIC = b"coordWAL"
SNAPSHOT_MAGIC = b"coordSNP"
_SNAP_FILE_HEAD = struct.Struct("<8sIIQ")
_CRC = struct.Struct("<I")
MASK = 0xFFFFFFFF
LEN_MASK = 0xFFFFFF

ENTRY_TYPES = {int(t): t for t in EntryType}


class FormatError(ValueError):
    """A payload that does not decode; the caller turns it into StorageCorruptError."""


def frame(rtype: int, payload: bytes) -> bytes:
    """One record: header and payload."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise ValueError(f"a WAL record holds at most {MAX_PAYLOAD} bytes, not {n}")
    word = (rtype << 24) | n
    return HEADER.pack(word, word ^ MASK, zlib.crc32(payload, word)) + payload


# -- payloads ------------------------------------------------------------------------------


def _conf_bytes(cs: ConfState) -> tuple[int, int, bytes]:
    ids = sorted(cs.voters) + sorted(cs.learners)
    return len(cs.voters), len(cs.learners), struct.pack(f"<{len(ids)}Q", *ids)


def _conf_from(buf: bytes | memoryview, off: int, nv: int, nl: int) -> ConfState:
    need = off + 8 * (nv + nl)
    if need > len(buf):
        raise FormatError(f"membership lists run {need - len(buf)} bytes past the record")
    ids = struct.unpack_from(f"<{nv + nl}Q", buf, off)
    return ConfState(voters=frozenset(ids[:nv]), learners=frozenset(ids[nv:]))


def snapshot_payload(meta: SnapshotMeta, installed: bool) -> bytes:
    nv, nl, ids = _conf_bytes(meta.conf_state)
    return _SNAP_HEAD.pack(1 if installed else 0, meta.index, meta.term, nv, nl) + ids


def decode_snapshot(payload: bytes | memoryview) -> tuple[SnapshotMeta, bool]:
    if len(payload) < _SNAP_HEAD.size:
        raise FormatError("snapshot record too short")
    installed, index, term, nv, nl = _SNAP_HEAD.unpack_from(payload)
    if installed > 1:
        raise FormatError(f"snapshot record has flag {installed}")
    cs = _conf_from(payload, _SNAP_HEAD.size, nv, nl)
    if _SNAP_HEAD.size + 8 * (nv + nl) != len(payload):
        raise FormatError("snapshot record has trailing bytes")
    return SnapshotMeta(index=index, term=term, conf_state=cs), bool(installed)


class Checkpoint:
    """The storage state a segment starts from (its header's second half)."""

    __slots__ = (
        "format", "cluster_id", "seq", "next_index", "last_term",
        "base_index", "base_term", "hard_state", "snapshot",
    )

    def __init__(
        self,
        *,
        format: int = FORMAT_VERSION,
        cluster_id: int,
        seq: int,
        next_index: int,
        last_term: int,
        base_index: int,
        base_term: int,
        hard_state: HardState,
        snapshot: SnapshotMeta,
    ) -> None:
        self.format = format
        self.cluster_id = cluster_id
        self.seq = seq
        self.next_index = next_index
        self.last_term = last_term
        self.base_index = base_index
        self.base_term = base_term
        self.hard_state = hard_state
        self.snapshot = snapshot

    def state(self) -> tuple[object, ...]:
        """What must equal the replayed state when this segment follows another."""
        return (
            self.next_index, self.last_term, self.base_index, self.base_term,
            self.hard_state, self.snapshot,
        )

    def encode(self) -> bytes:
        hs, sm = self.hard_state, self.snapshot
        nv, nl, ids = _conf_bytes(sm.conf_state)
        return _SEG_HEAD.pack(
            SEGMENT_MAGIC, self.format, self.cluster_id, self.seq,
            self.next_index, self.last_term, self.base_index, self.base_term,
            hs.term, hs.vote, hs.commit,
            sm.index, sm.term, nv, nl,
        ) + ids

    @classmethod
    def decode(cls, payload: bytes | memoryview) -> Checkpoint:
        if len(payload) < _SEG_HEAD.size:
            raise FormatError("segment header too short")
        (magic, fmt, cluster_id, seq, next_index, last_term, base_index, base_term,
         term, vote, commit, s_index, s_term, nv, nl) = _SEG_HEAD.unpack_from(payload)
        if magic != SEGMENT_MAGIC:
            raise FormatError(f"segment header magic is {bytes(magic)!r}, not {SEGMENT_MAGIC!r}")
        cs = _conf_from(payload, _SEG_HEAD.size, nv, nl)
        return cls(
            format=fmt, cluster_id=cluster_id, seq=seq, next_index=next_index,
            last_term=last_term, base_index=base_index, base_term=base_term,
            hard_state=HardState(term=term, vote=vote, commit=commit),
            snapshot=SnapshotMeta(index=s_index, term=s_term, conf_state=cs),
        )

    @staticmethod
    def peek_format(payload: bytes | memoryview) -> int | None:
        """The format number of a header payload, if its magic is right."""
        if len(payload) < 12 or bytes(payload[:8]) != SEGMENT_MAGIC:
            return None
        return int(struct.unpack_from("<I", payload, 8)[0])


# -- snapshot files ------------------------------------------------------------------------


def encode_snapshot_file(meta: SnapshotMeta, data: bytes) -> list[bytes]:
    """The pieces of a snapshot file, to be written in order (data is not copied)."""
    head = snapshot_file_head(meta, len(data))
    crc = zlib.crc32(data, zlib.crc32(head))
    return [head, data, snapshot_file_tail(crc)]


def snapshot_file_head(meta: SnapshotMeta, data_length: int) -> bytes:
    """What precedes the data in a snapshot file (its length depends only on ``meta``)."""
    meta_bytes = snapshot_payload(meta, installed=False)[1:]
    return _SNAP_FILE_HEAD.pack(SNAPSHOT_MAGIC, FORMAT_VERSION, len(meta_bytes), data_length) + meta_bytes


def snapshot_file_tail(crc: int) -> bytes:
    """What follows the data: the CRC-32 of the head and the data."""
    return _CRC.pack(crc)


def read_snapshot_file_head(f: BinaryIO, size: int) -> tuple[SnapshotMeta, int, int]:
    """Read and check what precedes the data of the snapshot file open as ``f`` (``size``
    bytes): its meta, the data's length, and the CRC-32 so far (the rest of the file
    continues it, ``snapshot_file_tail``). Raises FormatError saying what is wrong."""
    head = f.read(_SNAP_FILE_HEAD.size)
    if len(head) < _SNAP_FILE_HEAD.size or size < _SNAP_FILE_HEAD.size + 4:
        raise FormatError(f"snapshot file of {size} bytes is shorter than its header")
    magic, fmt, meta_len, data_len = _SNAP_FILE_HEAD.unpack(head)
    if magic != SNAPSHOT_MAGIC:
        raise FormatError(f"snapshot magic is {magic!r}, not {SNAPSHOT_MAGIC!r}")
    if fmt != FORMAT_VERSION:
        raise FormatError(f"snapshot format {fmt} is not {FORMAT_VERSION}")
    total = _SNAP_FILE_HEAD.size + meta_len + data_len + 4
    if total != size:
        raise FormatError(f"snapshot file is {size} bytes, its header says {total}")
    meta_bytes = f.read(meta_len)
    if len(meta_bytes) != meta_len:
        raise FormatError("snapshot file is shorter than its header says")
    meta, _ = decode_snapshot(b"\0" + meta_bytes)
    return meta, data_len, zlib.crc32(meta_bytes, zlib.crc32(head))


def check_snapshot_file_tail(f: BinaryIO, crc: int) -> None:
    """Read the CRC that ends a snapshot file (after its data) and compare it with
    ``crc``, the CRC-32 of everything before it; FormatError when they differ."""
    tail = f.read(4)
    if len(tail) != 4:
        raise FormatError("snapshot file is shorter than its header says")
    if _CRC.unpack(tail)[0] != crc:
        raise FormatError("snapshot checksum mismatch")


def read_snapshot_file_from(f: BinaryIO, size: int) -> tuple[SnapshotMeta, bytes]:
    """Verify and decode the snapshot file open as ``f`` (``size`` bytes); raises
    FormatError saying what is wrong. The data is read straight into its own bytes
    object: slicing it out of the whole file's bytes copied the whole store holding the
    GIL (seconds of stalled loop on a member sending a large snapshot)."""
    meta, data_len, crc = read_snapshot_file_head(f, size)
    data = f.read(data_len)
    if len(data) != data_len:
        raise FormatError("snapshot file is shorter than its header says")
    check_snapshot_file_tail(f, zlib.crc32(data, crc))
    return meta, data
