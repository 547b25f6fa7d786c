"""The limits every member applies: request sizes, TTL bounds, session retention.

Rule 1: these are cluster-wide constants, not per-node settings. The state machine must
        give the same answer on every member and on every replay of the log, so nothing in
        it may depend on a member's configuration. The one limit that does depend on it,
        the minimum lease TTL, is applied by the leader before it proposes a grant
        (``min_lease_ttl``), so the log records the TTL actually granted.
Rule 2: changing a value here changes how old log entries replay; do it only together
        with a format change that every member understands.
"""

from __future__ import annotations

import math

MAX_KEY_BYTES = 4096
"""A key, a range end, or a lock name is at most 4 KiB (DESIGN.md "Errors")."""

MAX_TXN_OPS = 128
"""A Txn holds at most 128 operations, counting every RequestOp of both branches at every
nesting level (a nested txn counts as one plus its own operations). Comparisons are
capped separately at the same number, again over the whole tree (etcd's --max-txn-ops)."""

MAX_REQUEST_BYTES = 3 * 512 * 1024
"""A request is at most 1.5 MiB (as etcd); the services enforce it at the edge."""

MAX_COMMAND_BYTES = MAX_REQUEST_BYTES + 1024
"""A log entry's Command: a maximal request plus room for the client id, seq and tags.
Anything larger is refused with RESOURCE_EXHAUSTED when applied."""

MIN_LEASE_TTL = 1
"""The smallest TTL, in seconds, a grant may ask for (lease.proto); smaller is invalid."""

MAX_LEASE_TTL = 9_000_000_000
"""The largest TTL, in seconds (lease.proto, as etcd's MaxLeaseTTL)."""

MAX_KEEPALIVE_IDS = 10_000
"""The most leases one LeaseKeepAliveRequest renews through ``ids`` (lease.proto)."""

MAX_CLIENT_ID_BYTES = 128
"""The longest `coord-client-id` (common.proto "Exactly-once"), in UTF-8 bytes."""

SESSION_RETENTION_ENTRIES = 100_000
"""An exactly-once session is forgotten once this many log entries were applied after the
last command it applied (every entry counts: no-ops and membership changes too). Counting
entries rather than seconds keeps eviction deterministic; at the apply rates coord sees
(hundreds to a few thousand writes per second) it keeps a session for tens of seconds to
minutes of idleness, far longer than a client's retry of an unanswered call takes. Since
each applied entry refreshes at most one session, there are never more than this many
sessions, which bounds their memory."""


def min_lease_ttl(election_timeout: float) -> int:
    """The smallest TTL a grant gets, in whole seconds, for a base election timeout in
    seconds: 1.5 election timeouts rounded up (lease.proto, as etcd), at least 1.

    The leader raises a grant's TTL to this before proposing it (Rule 1)::

        validate_lease_grant(req)
        req.ttl = max(req.ttl, min_lease_ttl(config.election_timeout))
    """
    return max(MIN_LEASE_TTL, math.ceil(1.5 * election_timeout - 1e-9))

MAX_NAME_BYTES = MAX_KEY_BYTES
"""A lock, election or ring name, or a ring member id, is at most 4 KiB of UTF-8
(common.proto "Default limits")."""

MAX_OWNER_BYTES = 256
"""LockAcquireRequest.owner is at most 256 bytes (lock.proto)."""

MAX_ELECTION_VALUE_BYTES = 1 << 20
"""An election value is at most 1 MiB (election.proto)."""
