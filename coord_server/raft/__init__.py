"""coord's Raft core: pure, deterministic, no I/O (the model of etcd's raft library).

Import what you need from here; the submodules are an implementation detail.
"""

from .config import Config
from .core import PeerStatus, RaftCore, RandomSource, Ready, Role, SoftState, Status
from .errors import (
    CompactedError,
    ConfigError,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
    SnapshotOutOfDateError,
    StorageError,
    UnavailableError,
)
from .membership import MembershipError
from .messages import (
    CAMPAIGN_TRANSFER,
    LOCAL_TYPES,
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SnapshotMeta,
)
from .progress import ProgressState
from .storage import MemoryStorage, Storage

__all__ = [
    "CAMPAIGN_TRANSFER", "LOCAL_TYPES", "NONE", "CompactedError", "ConfChange", "ConfChangeType", "ConfState",
    "Config", "ConfigError", "Entry", "EntryType", "HardState", "MembershipError",
    "MemoryStorage", "Message", "MessageType", "NotLeaderError", "PeerStatus",
    "ProgressState", "ProposalDroppedError", "RaftCore", "RaftError", "RandomSource",
    "ReadState", "Ready", "Role", "SnapshotOutOfDateError", "Snapshot", "SnapshotMeta",
    "SoftState", "Status", "Storage", "StorageError", "UnavailableError",
]
