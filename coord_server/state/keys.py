"""Key ranges: the one place that reads etcd's range_end rules.

A request names keys by ``key`` and ``range_end`` (kv.proto, RangeRequest.range_end):

- empty range_end: only ``key``;
- range_end "\\0" (one zero byte): every key greater than or equal to ``key``;
- otherwise: the half-open interval [key, range_end), empty when range_end <= key.

``span`` turns that into one half-open interval ``(start, end)`` with ``end`` None for
"no upper bound". A single key becomes [key, key + "\\0"), since key + "\\0" is the
smallest byte string greater than key; so every caller handles one shape.
"""

from __future__ import annotations

Span = tuple[bytes, bytes | None]


def span(key: bytes, range_end: bytes) -> Span:
    """The interval [start, end) that ``key`` and ``range_end`` select."""
    if not range_end:
        return key, key + b"\x00"
    if range_end == b"\x00":
        return key, None
    return key, range_end


def contains(s: Span, k: bytes) -> bool:
    """Whether key ``k`` lies in span ``s``."""
    start, end = s
    return start <= k and (end is None or k < end)


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with ``prefix`` (etcd's GetPrefixRangeEnd):
    the prefix with its last byte below 0xff incremented and what follows dropped; "\\0"
    (every key) when the prefix is empty or all 0xff."""
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return b"\x00"
