"""Prometheus metrics of one member, in a registry of its own.

Two kinds of metric, chosen by cost:

- State a member already keeps (role, term, commit and applied index, watchers, leases,
  locks, log and snapshot sizes) is read when Prometheus scrapes, by ``_StateCollector``:
  the request path pays nothing for it.
- Events (entries committed, proposals failed, leader changes, fsync and commit latency,
  peer round trips, gRPC requests) are counted where they happen, once per batch where
  there is a batch: the Node observes one fsync per Ready and one commit latency per
  proposal batch, never per entry.

Every metric lives in ``NodeMetrics.registry`` (a CollectorRegistry per member, not the
process-wide default), so several members can run in one process, as tests do.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from coord_server.raft import Role

if TYPE_CHECKING:
    from coord_server.loop_lag import LoopLag
    from coord_server.node import Node
    from coord_server.watch import WatchHub

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series: noise on every counter, used by no dashboard

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096)
"""Seconds, doubling from 0.5 ms: an fsync, a commit and a peer round trip all fall in
this span on anything from NVMe to a busy shared disk (etcd uses the same shape)."""

ROLE_NAMES = {Role.FOLLOWER: "follower", Role.PRE_CANDIDATE: "pre_candidate", Role.CANDIDATE: "candidate", Role.LEADER: "leader"}

RTT_PROBE_EXPIRY = 5.0
"""A heartbeat unanswered this long (lost, or the peer is down) stops being the one a
response is matched against, so a late answer is not taken for a 5-second round trip."""


class NodeMetrics:
    """The metrics of one member. The Node calls the ``on_*`` methods; ``registry`` is
    what the HTTP endpoint exposes."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.loop_lag: LoopLag | None = None
        """Its longest stall is exported once attached (``attach_loop_lag``)."""
        self.watch_hub: WatchHub | None = None
        """Its watcher count is exported once attached (``attach_watch_hub``)."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.entries_committed = Counter(
            "coord_proposals_committed", "Log entries committed and applied on this member "
            "(every member counts every entry; the leader's rate is the cluster's write rate).", registry=r,
        )
        self.proposals_failed = Counter(
            "coord_proposals_failed", "Proposals made through this member that failed: dropped "
            "(no leader, a transfer under way) or replaced by another leader's entries.", registry=r,
        )
        self.leader_changes = Counter(
            "coord_leader_changes", "Times this member saw a new leader (the first one included).", registry=r,
        )
        self.fsync_seconds = Histogram(
            "coord_disk_wal_fsync_duration_seconds", "Time to write and fsync one batch of "
            "log entries and hard state (one Ready).", buckets=LATENCY_BUCKETS, registry=r,
        )
        self.commit_seconds = Histogram(
            "coord_commit_duration_seconds", "On the leader: from handing a batch of proposals "
            "to Raft to the batch being committed and applied (one sample per batch).",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.peer_rtt_seconds = Histogram(
            "coord_peer_round_trip_seconds", "From the leader sending a heartbeat to a peer to "
            "receiving its acknowledgement, per peer.", ["peer"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.snapshots = Counter(
            "coord_snapshots", "Snapshots taken by this member (origin=local) or installed from "
            "the leader (origin=leader).", ["origin"], registry=r,
        )
        self.grpc_requests = Counter(
            "coord_grpc_requests", "gRPC calls served, by full method name and status code "
            "(a stream counts once, when it ends).", ["method", "code"], registry=r,
        )
        self.loop_lag_seconds = Histogram(
            "coord_event_loop_lag_seconds", "How late the event loop ran a timer due every 10 ms "
            "(loop_lag.py): the time nothing else could run, heartbeats included.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        for origin in ("local", "leader"):
            self.snapshots.labels(origin)
        r.register(_StateCollector(self))
        self._pending_commits: deque[tuple[int, float]] = deque()
        """(last index of a proposal batch, when it was proposed), in index order."""
        self._last_leader = 0
        self._heartbeats_sent: dict[int, float] = {}
        self._rtt_children: dict[int, Any] = {}

    # ------------------------------------------------------------- called by the Node

    def on_proposed(self, last_index: int) -> None:
        self._pending_commits.append((last_index, time.perf_counter()))

    def on_applied(self, count: int, last_index: int) -> None:
        self.entries_committed.inc(count)
        pending = self._pending_commits
        if pending and pending[0][0] <= last_index:
            now = time.perf_counter()
            while pending and pending[0][0] <= last_index:
                self.commit_seconds.observe(now - pending.popleft()[1])

    def on_leader(self, leader: int, role: Role) -> None:
        if leader != 0 and leader != self._last_leader:
            self.leader_changes.inc()
            self._last_leader = leader
        if role != Role.LEADER:
            self._pending_commits.clear()  # those batches commit under another leader, if at all

    def attach_loop_lag(self, lag: LoopLag) -> None:
        """Feed the histogram from a LoopLag and export its longest stall."""
        lag.on_sample = self.loop_lag_seconds.observe
        self.loop_lag = lag

    def attach_watch_hub(self, hub: WatchHub) -> None:
        """Export the member's watcher count."""
        self.watch_hub = hub

    # -------------------------------------------------- called by the peer transport

    def on_heartbeat_sent(self, peer: int) -> None:
        now = time.monotonic()
        sent = self._heartbeats_sent.get(peer)
        if sent is None or now - sent > RTT_PROBE_EXPIRY:
            self._heartbeats_sent[peer] = now

    def on_heartbeat_acked(self, peer: int) -> None:
        sent = self._heartbeats_sent.pop(peer, None)
        if sent is None:
            return
        child = self._rtt_children.get(peer)
        if child is None:
            child = self._rtt_children[peer] = self.peer_rtt_seconds.labels(_peer_label(self.node, peer))
        child.observe(time.monotonic() - sent)


def _peer_label(node: Node, peer: int) -> str:
    """A peer's member name when the member table knows it, else its id in hex."""
    for member in node.state.members():
        if member.id == peer and member.name:
            return str(member.name)
    return f"{peer:x}"


class _StateCollector(Collector):
    """Gauges read from the member's state at scrape time (on the event loop)."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # unchecked: names come from collect(), which must not run at register time

    def collect(self) -> Iterator[Metric]:
        node = self.metrics.node
        core = node.core
        config = node.config
        yield _gauge("coord_member_info", "Always 1; labels name this member and its cluster.", 1,
                     {"name": config.name, "member_id": f"{config.node_id:x}", "cluster_id": f"{config.cluster_id:x}"})
        role = GaugeMetricFamily("coord_raft_role", "1 for this member's current Raft role, 0 for the others.",
                                 labels=["role"])
        for value, name in ROLE_NAMES.items():
            role.add_metric([name], 1.0 if core.role == value else 0.0)
        yield role
        yield _gauge("coord_is_leader", "1 when this member is the leader.", 1 if core.role == Role.LEADER else 0)
        yield _gauge("coord_has_leader", "1 when this member knows a leader.", 1 if core.lead else 0)
        yield _gauge("coord_raft_term", "Current Raft term.", core.term)
        commit, applied = core.log.committed, node.applied_index
        yield _gauge("coord_raft_commit_index", "Highest log index known committed.", commit)
        yield _gauge("coord_raft_applied_index", "Highest log index applied to the state machine.", applied)
        yield _gauge("coord_apply_lag_entries", "Committed entries not yet applied (commit - applied).",
                     max(0, commit - applied))
        yield _gauge("coord_raft_log_entries", "Entries held in the log (after compaction).",
                     max(0, core.log.last_index() - core.log.first_index() + 1))
        yield _gauge("coord_proposals_pending", "Proposals of this member waiting to be applied.",
                     node.pending_proposals)
        usage = getattr(node.storage, "disk_usage", None)
        if usage is not None:
            sizes = usage()
            yield _gauge("coord_log_size_bytes", "Bytes of log segments on disk.", sizes.get("wal_bytes", 0))
            yield _gauge("coord_snapshot_size_bytes", "Bytes of snapshot files on disk.", sizes.get("snapshot_bytes", 0))
        lag = self.metrics.loop_lag
        if lag is not None:
            yield _gauge("coord_event_loop_longest_stall_seconds", "The longest time the event loop "
                         "could not run anything since the member started.", lag.longest)
        hub = self.metrics.watch_hub
        if hub is not None:
            yield _gauge("coord_watchers", "Watchers open on this member.", hub.watcher_count)
        state = node.state
        yield _gauge("coord_leases", "Live leases.", state.lease_count())
        held, waiting = state.lock_counts()
        yield _gauge("coord_locks_held", "Lock (and semaphore permit) holders.", held)
        yield _gauge("coord_locks_waiting", "Lock acquisitions queued behind a holder.", waiting)


def _gauge(name: str, documentation: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    if labels is None:
        return GaugeMetricFamily(name, documentation, value=value)
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family

