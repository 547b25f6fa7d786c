"""Configuration of one Raft core. Times are counted in ticks: the driver decides how long
a tick is (coord-server ticks every heartbeat interval / heartbeat_tick)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Config:
    """Settings of one node's core. ``validate()`` refuses nonsense with both values named."""

    id: int
    """This node's id, a positive integer unique in the cluster."""

    election_tick: int = 10
    """Base election timeout in ticks. A follower that hears no leader for a random time in
    ``[election_tick, 2 * election_tick)`` campaigns. Must exceed ``heartbeat_tick``; about
    10 times it keeps spurious elections away while a dead leader is still found fast."""

    heartbeat_tick: int = 1
    """Ticks between the leader's heartbeats."""

    pre_vote: bool = True
    """Run a pre-vote round before campaigning (thesis §9.6): a node that was partitioned
    away does not bump its term and disrupt a healthy cluster when it returns."""

    check_quorum: bool = True
    """The leader steps down when it has not heard from a quorum during an election
    timeout, and followers that heard from a leader within the minimum election timeout
    ignore vote requests (the leader lease, thesis §6.2 / §9.6)."""

    max_inflight_msgs: int = 256
    """Flow control: at most this many APP messages in flight to one follower in the
    replicating state (each may carry up to ``max_entries_per_msg`` entries)."""

    max_entries_per_msg: int = 512
    """Largest number of entries in one APP message."""

    max_bytes_per_msg: int = 1 << 20
    """Largest total entry data in one APP message (at least one entry is always sent)."""

    max_committed_bytes_per_ready: int = 256 << 10
    """Largest total entry data handed to the state machine in one Ready (at least one
    entry): applying is synchronous on the node's loop, and a follower catching up on a
    long log would otherwise apply all of it at once while its heartbeats wait."""

    max_uncommitted_bytes: int = 0
    """The leader refuses proposals while this many bytes of entry data are uncommitted
    (0 = no limit): back-pressure instead of unbounded memory."""

    def validate(self) -> None:
        """Raise ConfigError if any setting is out of range."""
        if self.id <= 0:
            raise ConfigError(f"node id must be a positive integer, got {self.id}")
        if self.heartbeat_tick <= 0:
            raise ConfigError(f"heartbeat tick must be positive, got {self.heartbeat_tick}")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigError(
                f"election tick ({self.election_tick}) must be greater than heartbeat tick "
                f"({self.heartbeat_tick})"
            )
        if self.max_inflight_msgs <= 0:
            raise ConfigError(f"max inflight messages must be positive, got {self.max_inflight_msgs}")
        if self.max_entries_per_msg <= 0:
            raise ConfigError(
                f"max entries per message must be positive, got {self.max_entries_per_msg}"
            )
        if self.max_bytes_per_msg <= 0:
            raise ConfigError(f"max bytes per message must be positive, got {self.max_bytes_per_msg}")
        if self.max_uncommitted_bytes < 0:
            raise ConfigError(
                f"max uncommitted bytes must be 0 (no limit) or positive, got {self.max_uncommitted_bytes}"
            )
