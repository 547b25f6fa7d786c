"""The deterministic replicated state machine of a coord member.

``StateMachine`` (machine.py) is the only owner of replicated state: the multi-version KV
store, leases, exactly-once client sessions, the member table, and the coordination
tables (locks, elections, rings). The node applies
committed entries to it; the services read from it and check requests at the edge with
the pure functions of ``validation``. Modules, one idea each:

- machine.py: StateMachine, the dispatch of commands and the public surface.
- kv.py: the MVCC store (histories, sorted key index, change log, compaction).
- ranges.py: Range reads (filters, sorting, limit).
- txn.py: Put, DeleteRange and Txn (with comparisons) inside one write.
- leases.py, sessions.py, members.py: the other tables.
- locks.py, elections.py, rings.py: locks and semaphores with fencing tokens, elections,
  consistent-hash ring membership (placement itself is coord_common/hashring.py).
- keys.py: the range_end rules; validation.py: stateless request checks.
- errors.py: domain errors carrying a status Code (no gRPC); limits.py: cluster-wide limits.
- snapshot.py: the StateSnapshot encoding (command.proto).
"""

from __future__ import annotations

from coord_server.errors import (
    Code,
    Compacted,
    FailedPrecondition,
    FutureRevision,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    CoordError,
    from_proto,
)
from .keys import prefix_end
from .limits import min_lease_ttl
from .machine import LeaseInfo, StateMachine
from .snapshot import SnapshotError
from .validation import (
    validate_command,
    validate_compact,
    validate_delete_range,
    validate_lease_grant,
    validate_lease_revoke,
    validate_put,
    validate_range,
    validate_txn,
)

__all__ = [
    "Code",
    "Compacted",
    "FailedPrecondition",
    "FutureRevision",
    "Internal",
    "InvalidArgument",
    "LeaseInfo",
    "NotFound",
    "OutOfRange",
    "ResourceExhausted",
    "SnapshotError",
    "CoordError",
    "StateMachine",
    "from_proto",
    "min_lease_ttl",
    "prefix_end",
    "validate_command",
    "validate_compact",
    "validate_delete_range",
    "validate_lease_grant",
    "validate_lease_revoke",
    "validate_put",
    "validate_range",
    "validate_txn",
]
