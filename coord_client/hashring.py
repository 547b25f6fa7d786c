"""Consistent hashing as ring.proto defines it; the implementation lives in
``coord_common.hashring`` (shared with the server, so a local lookup and Ring.Lookup agree
key by key). Kept here so ``coord_client.hashring`` stays the client's public name."""

from coord_common.hashring import (
    DEFAULT_VNODES,
    FAST,
    KETAMA,
    MAX_POINTS,
    MAX_VNODES,
    MAX_WEIGHT,
    HashRing,
    fast_position,
    ketama_position,
    point_count,
)

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
