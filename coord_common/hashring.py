"""Consistent hashing, exactly as ring.proto defines it: the one implementation that the
server's Ring.Lookup and a client's local lookup (from Ring.Get) both use, so they agree
key by key by construction. Pure Python, no gRPC: usable on its own.

    ring = HashRing([("cache-a", 1), ("cache-b", 2)])          # HASH_MODE_FAST, 1024 vnodes
    ring.lookup(b"user:42")        -> ["cache-b"]
    ring.lookup(b"user:42", 2)     -> ["cache-b", "cache-a"]   # preference order
    HashRing(members, mode=KETAMA)                              # libketama / uhashring "ketama"

HASH_MODE_FAST. A member of weight w owns w * vnodes points (vnodes defaults to 1024);
point i sits at H(member_id + "-" + decimal(i)), H = BLAKE2b with an 8-byte digest read as
an unsigned big-endian integer. A key sits at H(key). Why 1024 and not uhashring's 160: a
member's share of the circle is a sum of m random arcs, with a relative standard deviation
of about sqrt(0.9 / m) for 10 members; at m = 160 that is 7.5%, and the most loaded of 10
members is over 10% above the mean for about 70% of member-id sets; at m = 1024 it is
2.9% and the 10% bound holds for about 99.6% of them (bench/ring.py measures it).

HASH_MODE_KETAMA. With N members of total weight W, a member of weight w gets
k = floor(vnodes * N * w / W) MD5 digests of member_id + "-" + decimal(j), j < k (vnodes
defaults to 40, as libketama), each giving four 32-bit little-endian points. A key sits at
the first of the four over MD5(key). uhashring computes the same k with the same integer
arithmetic, so the points are identical.

In both modes points are ordered by position, then by member id bytes (a tie between two
members is broken the same way everywhere), and a key's successor is the first point at or
after the key's position, wrapping around. ``lookup(key, n)`` walks clockwise from there
and returns the first n distinct members (all of them when the ring has fewer).

Speed: the ring is built once: the positions, sorted, in one list (as big-endian bytes,
which compare like the integers they spell, so no int conversion happens per lookup) and
the owner of each point in a parallel list. A lookup is one hash (a copy of a prepared
BLAKE2b state, or CPython's built-in MD5), one ``bisect`` in C and, for n = 1, one list
index.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from hashlib import blake2b

try:  # CPython's own MD5: about twice as fast to start as OpenSSL's for short keys
    from _md5 import md5  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import md5

__all__ = [
    "DEFAULT_VNODES",
    "FAST",
    "KETAMA",
    "MAX_POINTS",
    "MAX_VNODES",
    "MAX_WEIGHT",
    "HashRing",
    "fast_position",
    "ketama_position",
    "point_count",
]

FAST = 1
"""HASH_MODE_FAST (ring.proto's enum value)."""
KETAMA = 2
"""HASH_MODE_KETAMA (ring.proto's enum value)."""

DEFAULT_VNODES = {FAST: 1024, KETAMA: 40}
"""vnodes when a ring's settings leave it at 0: points per weight unit in FAST mode,
libketama's per-server factor in KETAMA mode."""
MAX_VNODES = 1024
MAX_WEIGHT = 65535
MAX_POINTS = 1 << 20
"""A ring has at most 1,048,576 points (ring.proto, Join: RESOURCE_EXHAUSTED)."""

_BLAKE2B_8 = blake2b(digest_size=8)
"""An empty 8-byte BLAKE2b state: copying it is three times faster than constructing one."""


def _fast_key(data: bytes) -> bytes:
    """The FAST position of ``data`` as 8 big-endian bytes (bytes of one length compare
    like the integers they spell, so positions stay bytes and never become ints)."""
    h = _BLAKE2B_8.copy()
    h.update(data)
    return h.digest()


def _ketama_key(data: bytes) -> bytes:
    """The KETAMA position of ``data`` as 4 big-endian bytes (MD5's first 4 bytes,
    reversed: libketama reads them little-endian)."""
    digest: bytes = md5(data).digest()
    return digest[3::-1]


def fast_position(data: bytes) -> int:
    """The FAST-mode position of ``data``: BLAKE2b, 8-byte digest, big-endian."""
    return int.from_bytes(_fast_key(data), "big")


def ketama_position(data: bytes) -> int:
    """The KETAMA-mode position of a key: the first 4 bytes of MD5, little-endian."""
    return int.from_bytes(md5(data).digest()[:4], "little")


def _mode(mode: int) -> int:
    if mode == 0:
        return FAST
    if mode not in (FAST, KETAMA):
        raise ValueError(f"unknown hash mode {mode}")
    return mode


def _ketama_digests(vnodes: int, count: int, weight: int, total: int) -> int:
    """libketama's k, in exact integer arithmetic (as uhashring)."""
    return (vnodes * count * weight) // total if total else 0


def point_count(weights: Sequence[int], mode: int = FAST, vnodes: int = 0) -> int:
    """How many points a ring with these member weights has, without building it."""
    mode = _mode(mode)
    vnodes = vnodes or DEFAULT_VNODES[mode]
    if mode == FAST:
        return vnodes * sum(weights)
    total = sum(weights)
    return 4 * sum(_ketama_digests(vnodes, len(weights), w, total) for w in weights)


class HashRing:
    """An immutable consistent-hash ring over ``members``: (member id, weight) pairs with
    distinct ids and weights >= 1. ``mode`` is FAST (the default; 0 means FAST) or KETAMA;
    ``vnodes_per_weight`` 0 means the mode's default. Raises ValueError for anything
    ring.proto would refuse."""

    __slots__ = ("mode", "vnodes", "members", "_positions", "_owners", "_distinct", "_fast", "_width")

    def __init__(
        self, members: Iterable[tuple[str, int]], mode: int = FAST, vnodes_per_weight: int = 0
    ) -> None:
        self.mode = _mode(mode)
        if not 0 <= vnodes_per_weight <= MAX_VNODES:
            raise ValueError(f"vnodes must be between 0 and {MAX_VNODES}, got {vnodes_per_weight}")
        self.vnodes = vnodes_per_weight or DEFAULT_VNODES[self.mode]
        weights: dict[str, int] = {}
        for member_id, weight in members:
            if not member_id:
                raise ValueError("a member id must not be empty")
            if member_id in weights:
                raise ValueError(f"member {member_id!r} appears twice")
            if not 1 <= weight <= MAX_WEIGHT:
                raise ValueError(f"weight of {member_id!r} must be between 1 and {MAX_WEIGHT}, got {weight}")
            weights[member_id] = weight
        self.members: dict[str, int] = {m: weights[m] for m in sorted(weights, key=str.encode)}
        """Member id -> weight, by ascending id bytes."""
        points = point_count(list(self.members.values()), self.mode, self.vnodes)
        if points > MAX_POINTS:
            raise ValueError(f"the ring would have {points} points; the limit is {MAX_POINTS}")
        self._fast = self.mode == FAST
        self._width = 8 if self._fast else 4
        # Each row is the point's position (big-endian bytes) followed by the member's rank
        # in id-byte order (4 bytes): sorting the rows sorts by position, then member id.
        rows = self._fast_points() if self._fast else self._ketama_points()
        rows.sort()
        ids = list(self.members)
        width = self._width
        self._positions = [r[:width] for r in rows]
        self._owners = [ids[int.from_bytes(r[width:], "big")] for r in rows]
        self._distinct = len(ids)

    def _fast_points(self) -> list[bytes]:
        rows: list[bytes] = []
        append = rows.append
        for rank, (member_id, weight) in enumerate(self.members.items()):
            prefix = (member_id + "-").encode()
            tag = rank.to_bytes(4, "big")
            for i in range(weight * self.vnodes):
                append(_fast_key(prefix + str(i).encode()) + tag)
        return rows

    def _ketama_points(self) -> list[bytes]:
        rows: list[bytes] = []
        append = rows.append
        count = len(self.members)
        total = sum(self.members.values())
        for rank, (member_id, weight) in enumerate(self.members.items()):
            prefix = (member_id + "-").encode()
            tag = rank.to_bytes(4, "big")
            for j in range(_ketama_digests(self.vnodes, count, weight, total)):
                d = md5(prefix + str(j).encode()).digest()
                for h in range(4):
                    append(d[4 * h + 3 : None if h == 0 else 4 * h - 1 : -1] + tag)
        return rows

    # ------------------------------------------------------------------ lookups

    def __len__(self) -> int:
        """The number of points."""
        return len(self._positions)

    def position(self, key: bytes | str) -> int:
        """Where ``key`` sits on the circle."""
        data = key.encode() if isinstance(key, str) else key
        return fast_position(data) if self._fast else ketama_position(data)

    def get(self, key: bytes | str) -> str:
        """The one member responsible for ``key`` (KeyError for an empty ring). The fast
        path: one hash, one C bisect over bytes, one list index."""
        if isinstance(key, str):
            key = key.encode()
        positions = self._positions
        if self._fast:
            h = _BLAKE2B_8.copy()
            h.update(key)
            i = bisect_left(positions, h.digest())
        else:
            i = bisect_left(positions, md5(key).digest()[3::-1])
        if i == len(positions):
            if not positions:
                raise KeyError("the ring has no members")
            i = 0
        return self._owners[i]

    def lookup(self, key: bytes | str, n: int = 1) -> list[str]:
        """The first ``n`` distinct members clockwise from ``key`` (n < 1 counts as 1; all
        members when the ring has fewer than n); [] for an empty ring."""
        positions = self._positions
        if not positions:
            return []
        if isinstance(key, str):
            key = key.encode()
        if self._fast:
            h = _BLAKE2B_8.copy()
            h.update(key)
            i = bisect_left(positions, h.digest())
        else:
            i = bisect_left(positions, md5(key).digest()[3::-1])
        size = len(positions)
        if i == size:
            i = 0
        owners = self._owners
        first = owners[i]
        if n <= 1:
            return [first]
        want = min(n, self._distinct)
        out = [first]
        seen = {first}
        j = i + 1
        while len(out) < want:
            if j == size:
                j = 0
            m = owners[j]
            if m not in seen:
                seen.add(m)
                out.append(m)
            j += 1
        return out

    def points(self) -> list[tuple[int, str]]:
        """Every point as (position, member id), in ring order."""
        return [(int.from_bytes(p, "big"), m) for p, m in zip(self._positions, self._owners)]

    def __repr__(self) -> str:
        mode = "FAST" if self._fast else "KETAMA"
        return f"HashRing({len(self.members)} members, {len(self)} points, {mode}, vnodes={self.vnodes})"
