"""StateMachine: the replicated state of one member, changed only by applying log entries.

It owns the multi-version KV store (kv.py), the leases (leases.py), the exactly-once
sessions (sessions.py), the member table (members.py), and the coordination tables: locks
(locks.py), elections (elections.py) and rings (rings.py), and is the only thing the node
applies committed entries to. A lease's end (revoke or expiry) deletes its keys, releases
its locks, resigns its candidacies and removes its ring members, all in the one entry. Reads (``range``, ``lease_info``, ``members``,
``events_since``) are served from it locally; the node puts its ReadIndex barrier in
front of the linearizable ones.

Rule 1: deterministic. No clock, no randomness, no I/O, no iteration over unordered
        containers where order shows: the same entries applied in the same order give the
        same state, the same results and the same ``snapshot()`` bytes on every member.
        Time enters only through entries (a LeaseExpire the leader proposes); IDs come
        from the log index (leases.py Rule 3); sessions are evicted by index.
Rule 2: total. ``apply`` turns any bytes into a CommandResult: a malformed or refused
        command becomes a CommandError (INVALID_ARGUMENT, NOT_FOUND, ...) and changes
        nothing but ``applied_index`` (and, with a client id, its session). Even a bug
        (an unexpected exception) is answered INTERNAL rather than raised, after rolling
        back the write in progress, so one bad entry cannot stop every member at the same
        index (each member hits the same bug the same way, so they stay identical).
Rule 3: every command is checked twice: at the edge by the services (validation.py),
        and again here, because the log is the only thing every member trusts.
Rule 4: results carry ``header.revision`` (the store revision once the command was
        applied, in every nested header too, as each response's comment defines it),
        which only the state machine knows exactly and which a retry must get unchanged;
        the service fills in cluster_id, member_id and raft_term.

Cost per entry: decoding the Command, O(1) dict and list work for a put (plus O(log n)
for a read at a past revision), one response message; a Txn is linear in its operations.
See kv.py for the data structures.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from operator import itemgetter
from typing import Any, NamedTuple

from coord.raft.v1 import command_pb2
from coord.v1 import cluster_pb2, common_pb2, election_pb2, kv_pb2, lease_pb2, lock_pb2, ring_pb2

from . import keys, snapshot as snapshot_codec
from coord_server.errors import (
    Compacted,
    FutureRevision,
    Internal,
    InvalidArgument,
    LeaseExists,
    LeaseNotFound,
    ResourceExhausted,
    CoordError,
)
from .auth import AuthTable
from .authorize import AUTH_OPS, authorize
from .elections import ElectionTable, LeaderChange
from .kv import LEASE, VERSION, MVCCStore, Write, to_event
from .leases import LeaseTable
from .locks import LockTable
from .rings import Ring, RingTable
from .limits import MAX_COMMAND_BYTES, SESSION_RETENTION_ENTRIES
from .members import Members
from .ranges import read_range
from .sessions import Sessions
from .snapshot import SnapshotError, SnapshotImage, SnapshotParts
from .txn import KVWrites, stamp_revision
from .validation import (
    validate_client,
    validate_command,
    validate_key,
    validate_range,
    validate_range_end,
)

CommandResult = command_pb2.CommandResult
Listener = Callable[[int, "list[common_pb2.Event]"], None]
CoordinationListener = Callable[[int, "list[object]"], None]
"""Called with the applied index and the coordination events of that entry: LockGrant,
LockWaitEnd (locks.py), LeaderChange, CandidateGone (elections.py), RingChange (rings.py)."""


class LeaseInfo(NamedTuple):
    """What the state knows of one lease: its granted TTL and attached keys (sorted)."""

    granted_ttl: int
    keys: list[bytes]


class StateMachine:
    """The replicated state machine (see the module docstring for its rules).

    ``session_retention`` is the number of entries an idle exactly-once session survives
    (limits.SESSION_RETENTION_ENTRIES); like every limit it must be the same on every
    member, and exists as a parameter for tests.
    """

    def __init__(self, *, session_retention: int = SESSION_RETENTION_ENTRIES) -> None:
        self.applied_index = 0
        """The index of the last entry applied (NORMAL or CONF_CHANGE); 0 before any."""
        self._store = MVCCStore()
        self._leases = LeaseTable()
        self._auth = AuthTable()
        self._user = ""
        """The user of the command being applied (Command.user): a lease's owner."""
        self._sessions = Sessions(session_retention)
        self._members = Members()
        self._listeners: list[Listener] = []
        self._events: list[common_pb2.Event] = []
        self._coord_listeners: list[CoordinationListener] = []
        self._coord_events: list[object] = []
        emit = self._coord_events.append
        self._locks = LockTable(emit)
        self._elections = ElectionTable(emit)
        self._rings = RingTable(emit)
        # No reference back to this object (_OPS is the class's, the lock-token hook is
        # weak): a replaced state is freed as soon as it is dropped, even frozen.
        self._writes = KVWrites(self._store, self._leases, _weak_lock_tokens(self))

    @property
    def revision(self) -> int:
        """The store's current revision: 1 for the empty store, +1 per changing write."""
        return self._store.revision

    @property
    def size_bytes(self) -> int:
        """The key-value store's kept bytes, history included (MVCCStore.size_bytes)."""
        return self._store.size_bytes

    @property
    def compact_revision(self) -> int:
        """The revision of the last compaction (reads below it fail), 0 if none."""
        return self._store.compact_revision

    # ------------------------------------------------------------------ applying entries

    def apply(self, index: int, data: bytes) -> CommandResult | None:
        """Apply the NORMAL entry at ``index`` holding a serialized Command; None for the
        empty entry a new leader appends. Never raises for any ``data`` (Rule 2); raises
        ValueError only when ``index`` is not after ``applied_index`` (a node bug)."""
        self._advance(index)
        if not data:
            return None
        if len(data) > MAX_COMMAND_BYTES:
            too_big = f"command is {len(data)} bytes; the limit is {MAX_COMMAND_BYTES}"
            return _error(ResourceExhausted(too_big))
        try:
            cmd = command_pb2.Command.FromString(data)
        except Exception:  # noqa: BLE001 - Rule 2: undecodable bytes are a refused command
            return _error(InvalidArgument(f"entry {index} does not hold a valid Command"))
        return self._apply_command(cmd, index)

    def _apply_command(self, cmd: command_pb2.Command, index: int) -> CommandResult:
        client_id = cmd.client_id
        if client_id:
            try:
                validate_client(client_id)
                stored = self._sessions.lookup(client_id, cmd.seq)
            except CoordError as err:
                return _error(err)
            if stored is not None:
                return CommandResult.FromString(stored)
        result = self._execute(cmd, index)
        if client_id:
            self._sessions.record(client_id, cmd.seq, index, result.SerializeToString())
        if self._events:
            events, self._events = self._events, []
            for fn in self._listeners:
                fn(self._store.revision, events)
        if self._coord_events:
            coord_events = list(self._coord_events)
            self._coord_events.clear()  # the tables hold its append method: keep the list
            for cfn in self._coord_listeners:
                cfn(index, coord_events)
        return result

    def _execute(self, cmd: command_pb2.Command, index: int) -> CommandResult:
        try:
            validate_command(cmd)
            which = cmd.WhichOneof("op")
            assert which is not None  # validate_command refused a command without one
            op = getattr(cmd, which)
            if self._auth.enabled:
                authorize(self._auth.principal(cmd.user), cmd.user, which, op, self)
            self._user = cmd.user
            if which in AUTH_OPS:
                return self._auth_change(which, op, index)
            return _OPS[which](self, op, index)
        except CoordError as err:
            return _error(err)
        except Exception as exc:  # noqa: BLE001 - Rule 2: a bug must not stop the cluster
            # Writes not yet committed were rolled back by the operation; events queued
            # for listeners belong to committed writes only, so they still go out.
            return _error(Internal(f"internal error applying the command: {type(exc).__name__}"))

    def apply_member_change(self, index: int, change_type: int, node_id: int, context: bytes) -> None:
        """Apply the CONF_CHANGE entry at ``index``: ``change_type`` is a
        raft.messages.ConfChangeType, ``context`` a serialized MemberInfo or empty."""
        self._advance(index)
        self._members.apply(change_type, node_id, context)

    def _advance(self, index: int) -> None:
        if index <= self.applied_index:
            raise ValueError(
                f"entry {index} applied out of order: entry {self.applied_index} is applied already"
            )
        self.applied_index = index
        self._sessions.evict(index)
        self._locks.advance(index)

    # ------------------------------------------------------------------ operations

    def _begin(self) -> Write:
        return self._store.begin()

    def _commit(self, w: Write) -> None:
        changes = w.commit()
        if changes:
            self._leases.track(changes)
            if self._listeners:
                self._events.extend(to_event(k, rec, prev) for k, prev, rec in changes)

    def _put(self, req: kv_pb2.PutRequest, index: int) -> CommandResult:
        w = self._begin()
        try:
            resp = self._writes.put(w, req)
        except BaseException:
            w.rollback()
            raise
        self._commit(w)
        result = CommandResult(put=resp)
        result.put.header.revision = self._store.revision
        return result

    def _delete_range(self, req: kv_pb2.DeleteRangeRequest, index: int) -> CommandResult:
        w = self._begin()
        try:
            resp = self._writes.delete_range(w, req)
        except BaseException:
            w.rollback()
            raise
        self._commit(w)
        resp.header.revision = self._store.revision
        return CommandResult(delete_range=resp)

    def _txn(self, req: kv_pb2.TxnRequest, index: int) -> CommandResult:
        w = self._begin()
        try:
            resp = self._writes.txn(w, req)
        except BaseException:
            w.rollback()
            raise
        self._commit(w)
        stamp_revision(resp, self._store.revision)
        return CommandResult(txn=resp)

    def _compact(self, req: kv_pb2.CompactRequest, index: int) -> CommandResult:
        store = self._store
        rev = req.revision
        if rev <= store.compact_revision:
            raise Compacted(rev, store.compact_revision)
        if rev > store.revision:
            raise FutureRevision(rev, store.revision)
        store.compact(rev)
        resp = kv_pb2.CompactResponse()
        resp.header.revision = store.revision
        return CommandResult(compact=resp)

    def _lease_grant(self, req: lease_pb2.LeaseGrantRequest, index: int) -> CommandResult:
        if req.id:
            if req.id in self._leases:
                raise LeaseExists(f"lease {req.id} already exists")
            lease_id = req.id
        else:
            lease_id = self._leases.choose_id(index)
        self._leases.grant(lease_id, req.ttl, self._user)
        resp = lease_pb2.LeaseGrantResponse(id=lease_id, ttl=req.ttl)
        resp.header.revision = self._store.revision
        return CommandResult(lease_grant=resp)

    def _lease_revoke(self, req: lease_pb2.LeaseRevokeRequest, index: int) -> CommandResult:
        if req.id not in self._leases:
            raise LeaseNotFound(f"lease {req.id} not found")
        self._end_leases([req.id], index)
        resp = lease_pb2.LeaseRevokeResponse()
        resp.header.revision = self._store.revision
        return CommandResult(lease_revoke=resp)

    def _lease_expire(self, req: command_pb2.LeaseExpire, index: int) -> CommandResult:
        ids = sorted({i for i in req.ids if i in self._leases})
        self._end_leases(ids, index)
        return CommandResult(lease_expire=command_pb2.LeaseExpireResult(revoked=ids))

    def _end_leases(self, ids: list[int], index: int) -> None:
        """Delete every key of the leases ``ids`` (ascending) in one revision, forget the
        leases, then release their locks (granting waiters), resign their candidacies and
        remove their ring members, all at ``index``."""
        w = self._begin()
        try:
            for lease_id in ids:
                lease = self._leases.get(lease_id)
                assert lease is not None
                for key in sorted(lease.keys):
                    w.delete(key)
        except BaseException:
            w.rollback()
            raise
        self._commit(w)
        for lease_id in ids:
            self._leases.remove(lease_id)
        revision = self._store.revision
        self._locks.end_leases(ids, index, revision)
        self._elections.end_leases(ids, index, revision)
        self._rings.end_leases(ids, index)

    def _auth_change(self, which: str, op: Any, index: int) -> CommandResult:
        result = self._auth.apply(which, op, index)
        result.revision = self._store.revision
        return CommandResult(auth_change=result)

    def _require_lease(self, lease_id: int) -> None:
        if lease_id not in self._leases:
            raise LeaseNotFound(f"lease {lease_id} not found")

    def _lock_acquire(self, req: lock_pb2.LockAcquireRequest, index: int) -> CommandResult:
        self._require_lease(req.lease)
        result = self._locks.acquire(req, index, self._store.revision)
        result.response.header.revision = self._store.revision
        return CommandResult(lock_acquire=result)

    def _lock_release(self, req: lock_pb2.LockReleaseRequest, index: int) -> CommandResult:
        self._locks.release(req, index, self._store.revision)
        resp = lock_pb2.LockReleaseResponse()
        resp.header.revision = self._store.revision
        return CommandResult(lock_release=resp)

    def _lock_cancel(self, req: command_pb2.WaitCancel, index: int) -> CommandResult:
        removed = self._locks.cancel(req, index)
        return CommandResult(lock_cancel=command_pb2.WaitCancelResult(removed=removed))

    def _election_campaign(self, req: election_pb2.ElectionCampaignRequest, index: int) -> CommandResult:
        self._require_lease(req.lease)
        result = self._elections.campaign(req, index, self._store.revision)
        result.response.header.revision = self._store.revision
        return CommandResult(election_campaign=result)

    def _election_proclaim(self, req: election_pb2.ElectionProclaimRequest, index: int) -> CommandResult:
        self._elections.proclaim(req)
        resp = election_pb2.ElectionProclaimResponse()
        resp.header.revision = self._store.revision
        return CommandResult(election_proclaim=resp)

    def _election_resign(self, req: election_pb2.ElectionResignRequest, index: int) -> CommandResult:
        self._elections.resign(req, index, self._store.revision)
        resp = election_pb2.ElectionResignResponse()
        resp.header.revision = self._store.revision
        return CommandResult(election_resign=resp)

    def _election_cancel(self, req: command_pb2.WaitCancel, index: int) -> CommandResult:
        removed = self._elections.cancel(req)
        return CommandResult(election_cancel=command_pb2.WaitCancelResult(removed=removed))

    def _ring_join(self, req: ring_pb2.RingJoinRequest, index: int) -> CommandResult:
        if req.lease:
            self._require_lease(req.lease)
        resp = self._rings.join(req, index)
        resp.header.revision = self._store.revision
        return CommandResult(ring_join=resp)

    def _ring_leave(self, req: ring_pb2.RingLeaveRequest, index: int) -> CommandResult:
        resp = self._rings.leave(req, index)
        resp.header.revision = self._store.revision
        return CommandResult(ring_leave=resp)

    # ------------------------------------------------------------------ reads

    def range(self, req: kv_pb2.RangeRequest) -> kv_pb2.RangeResponse:
        """Serve a RangeRequest from the local state. Raises InvalidArgument for a bad
        request, Compacted or FutureRevision (OUT_OF_RANGE) for an unreadable revision.
        ``header.revision`` is the current revision (as etcd), also for a past read."""
        validate_range(req)
        store = self._store
        rev = req.revision
        if rev <= 0:
            resp = read_range(store, req, None)
        elif rev > store.revision:
            raise FutureRevision(rev, store.revision)
        elif rev < store.compact_revision:
            raise Compacted(rev, store.compact_revision)
        else:
            resp = read_range(store, req, rev)
        resp.header.revision = store.revision
        return resp

    def txn_compares_hold(self, req: kv_pb2.TxnRequest) -> bool:
        """Whether every compare of ``req`` (validated) holds on the latest state: the
        branch a Txn would take now. For the etcd API, which checks a Txn's path before
        running it (coord_server/etcd/kv.py)."""
        return all(self._writes.compare(c) for c in req.compare)

    def lease_list(self) -> list[lease_pb2.LeaseStatus]:
        """Every live lease, by ascending ID."""
        return [lease_pb2.LeaseStatus(id=le.id, granted_ttl=le.ttl) for le in self._leases.sorted()]

    def lease_ids(self) -> list[tuple[int, int]]:
        """(ID, granted TTL) of every live lease, by ascending ID: what a new leader needs
        to start its expiry timers."""
        return [(le.id, le.ttl) for le in self._leases.sorted()]

    def lease_count(self) -> int:
        """How many leases are live (metrics, Cluster.Status)."""
        return len(self._leases)

    def lock_counts(self) -> tuple[int, int]:
        """(holders, queued waiters) over every lock (metrics)."""
        return self._locks.counts()

    def lease_info(self, lease_id: int) -> LeaseInfo:
        """The granted TTL and attached keys of a lease; NotFound when it does not exist."""
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFound(f"lease {lease_id} not found")
        return LeaseInfo(lease.ttl, sorted(lease.keys))

    def lease_attachments(self, lease_id: int) -> tuple[list[str], list[str], list[tuple[str, str]]]:
        """(locks held, elections campaigned in or led, (ring, member ID) pairs) bound to
        ``lease_id``: what LeaseTimeToLive lists besides the keys."""
        return (
            self._locks.held_by_lease(lease_id),
            self._elections.names_of_lease(lease_id),
            self._rings.members_of_lease(lease_id),
        )

    def lease_bindings(self, lease_id: int) -> tuple[list[str], list[str], list[str]]:
        """(locks, elections, rings) that ``lease_id`` holds, waits for or is a member
        of: what its end releases, resigns or leaves besides deleting its keys."""
        return (
            self._locks.names_of_lease(lease_id),
            self._elections.names_of_lease(lease_id),
            self._rings.names_of_lease(lease_id),
        )

    def members(self) -> list[cluster_pb2.Member]:
        """Every member (copies), by ascending ID, with is_learner."""
        return self._members.list()

    def lock_tokens(self, name: str) -> set[int]:
        """The fencing tokens of the current holders of lock ``name``, for Txn's
        COMPARE_TARGET_LOCK_TOKEN (empty when the lock is free)."""
        return self._locks.tokens(name)

    def lock_would_queue(self, name: str, lease: int) -> bool:
        """Whether an Acquire of ``name`` by ``lease`` applied now would queue: the lock
        has as many holders as permits, and ``lease`` is not one of them."""
        return self._locks.would_queue(name, lease)

    def lock_inspect(self, name: str) -> lock_pb2.LockInspectResponse:
        """Lock.Inspect from the local state; ``header.revision`` is the current revision."""
        resp = self._locks.inspect(name)
        resp.header.revision = self._store.revision
        return resp

    def lock_holder_token(self, name: str, lease: int) -> int | None:
        """The token with which ``lease`` holds ``name``, or None."""
        return self._locks.holder_token(name, lease)

    def lock_waiting(self, name: str, lease: int) -> int | None:
        """The queued_at of ``lease``'s wait for ``name``, or None when it does not wait."""
        return self._locks.waiting(name, lease)

    def election_leader(self, name: str) -> LeaderChange:
        """The current leadership of ``name`` (lease 0 when nobody leads) and its value."""
        return self._elections.leader(name)

    def election_candidates(self, name: str) -> list[tuple[int, bytes, int, int]]:
        """(lease, value, revision, token) of every candidate of ``name`` in queue order,
        the leader first (token 0 for those that wait)."""
        return [(c.lease, c.value, c.revision, c.token) for c in self._elections.candidates(name)]

    def election_candidate(self, name: str, lease: int) -> tuple[int, int] | None:
        """(token, queued_at) of ``lease``'s candidacy in ``name`` (token 0 unless it
        leads), or None when it is no candidate."""
        c = self._elections.candidate(name, lease)
        return None if c is None else (c.token, c.queued_at)

    def ring(self, name: str) -> Ring | None:
        """Ring ``name`` (read only: do not change it), or None when it does not exist."""
        return self._rings.get(name)

    def has_lease(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def lease_owner(self, lease_id: int) -> str | None:
        """The user that granted lease ``lease_id`` ("" when auth was off then), or None
        when there is no such lease."""
        lease = self._leases.get(lease_id)
        return None if lease is None else lease.owner

    @property
    def auth(self) -> AuthTable:
        """Users, roles, tokens and the auth switch (read only: change them through
        commands)."""
        return self._auth

    # ------------------------------------------------------------------ watches

    def events_since(self, start_revision: int, key: bytes, range_end: bytes) -> list[common_pb2.Event]:
        """Every event at revision >= ``start_revision`` for the keys ``key``/``range_end``
        select (kv.proto rules), in revision order (apply order within one revision), with
        prev_kv filled when the key had a value before. Raises Compacted when
        ``start_revision`` <= ``compact_revision`` (those events may be gone); a future
        start gives an empty list."""
        validate_key(key)
        validate_range_end(range_end)
        store = self._store
        if start_revision <= store.compact_revision:
            raise Compacted(start_revision, store.compact_revision)
        return store.events_since(start_revision, keys.span(key, range_end))

    def puts_at_compact_revision(self, key: bytes, range_end: bytes) -> list[common_pb2.Event]:
        """The puts of the compact revision itself still kept, for the keys ``key``/
        ``range_end`` select, in apply order and without prev_kv: what etcd replays to a
        watch from exactly its compact revision (coord.v1 refuses that start as
        compacted: its deletes are gone). Empty before any compaction."""
        validate_key(key)
        validate_range_end(range_end)
        store = self._store
        if not store.compact_revision:
            return []
        return store.puts_at(store.compact_revision, keys.span(key, range_end))

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(revision, events)`` after each applied entry that changed keys, with
        the new revision and its events (prev_kv filled), before ``apply`` returns. The
        events are shared between listeners: copy before changing one. A listener must
        not raise; the state is complete when it runs."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        """Stop calling ``fn``."""
        self._listeners.remove(fn)

    def add_coordination_listener(self, fn: CoordinationListener) -> None:
        """Call ``fn(index, events)`` after each applied entry that granted a lock, ended a
        wait, changed an election's leader or value, or changed a ring, with the events in
        the order they happened, before ``apply`` returns. The state is complete (the
        entry fully applied) when it runs; it must not raise or change the state."""
        self._coord_listeners.append(fn)

    def remove_coordination_listener(self, fn: CoordinationListener) -> None:
        self._coord_listeners.remove(fn)

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> bytes:
        """The whole state as StateSnapshot bytes (snapshot.py); equal states, equal bytes."""
        return self.image().encode()

    def image(self) -> SnapshotImage:
        """The state now, to encode in chunks while applying goes on (snapshot.py Rule 3)."""
        store = self._store
        head = snapshot_codec.encode_head(
            SnapshotParts(
                applied_index=self.applied_index,
                revision=store.revision,
                compact_revision=store.compact_revision,
                history=[],
                leases=[(le.id, le.ttl, le.owner) for le in self._leases.sorted()],
                sessions=[
                    (c, s.seq, s.last_index, s.result) for c, s in self._sessions.items()
                ],
                members=self._members.list(),
                locks=self._locks.records(),
                elections=self._elections.records(),
                rings=self._rings.records(),
                auth=self._auth.record(),
            )
        )
        return SnapshotImage(head, store)

    @classmethod
    def restore(
        cls, data: bytes, *, session_retention: int = SESSION_RETENTION_ENTRIES
    ) -> StateMachine:
        """A state machine in the state ``snapshot()`` captured (listeners not included).
        Raises snapshot.SnapshotError when ``data`` is not a sound snapshot.

        The cyclic collector is off meanwhile: the million record tuples of a large store
        triggered collection after collection that found nothing to free (about 15% of
        a restore's CPU at 1M keys). The restored state is long-lived: it is frozen
        (gc_policy.py Rule 1) rather than left for the next young collection to walk
        (a second-long pause of a learner after installing a 1M-key snapshot). The state
        it replaces is frozen too, which holds no reference cycle so that it is freed
        all the same when the node drops it."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            restored = cls._restore(data, session_retention)
            gc.freeze()
            return restored
        finally:
            if enabled:
                gc.enable()

    @classmethod
    def _restore(cls, data: bytes, session_retention: int) -> StateMachine:
        parts = snapshot_codec.decode(data, with_history=False)
        if parts.revision < 1 or not 0 <= parts.compact_revision <= parts.revision:
            raise SnapshotError(
                f"state snapshot revision {parts.revision} and compact revision "
                f"{parts.compact_revision} are inconsistent"
            )
        sm = cls(session_retention=session_retention)
        sm.applied_index = parts.applied_index
        columns = parts.columns
        assert columns is not None
        sm._store.load_columns(parts.revision, parts.compact_revision, columns.keys, columns.counts, columns.rows)
        for lease_id, ttl, owner in parts.leases:
            sm._leases.grant(lease_id, ttl, owner)
        if any(map(itemgetter(LEASE), columns.rows)):
            for key in columns.keys:
                rec = sm._store.latest(key)
                if rec is not None and rec[LEASE]:
                    lease = sm._leases.get(rec[LEASE])
                    if lease is None:
                        raise SnapshotError(f"key {key!r} is attached to lease {rec[LEASE]}, which is missing")
                    lease.keys.add(key)
        sm._sessions.load(parts.sessions)
        sm._members.load(parts.members)
        try:
            sm._auth.load(parts.auth)
        except CoordError as err:
            raise SnapshotError(f"state snapshot auth state is inconsistent: {err}") from None
        live = sm._leases.__contains__
        try:
            sm._locks.load(parts.locks, live)
            sm._elections.load(parts.elections, live)
            sm._rings.load(parts.rings, live)
        except ValueError as err:
            raise SnapshotError(f"state snapshot coordination state is inconsistent: {err}") from None
        return sm


_OPS: dict[str, Callable[[StateMachine, Any, int], CommandResult]] = {
    "put": StateMachine._put,
    "delete_range": StateMachine._delete_range,
    "txn": StateMachine._txn,
    "compact": StateMachine._compact,
    "lease_grant": StateMachine._lease_grant,
    "lease_revoke": StateMachine._lease_revoke,
    "lease_expire": StateMachine._lease_expire,
    "lock_acquire": StateMachine._lock_acquire,
    "lock_release": StateMachine._lock_release,
    "lock_cancel": StateMachine._lock_cancel,
    "election_campaign": StateMachine._election_campaign,
    "election_proclaim": StateMachine._election_proclaim,
    "election_resign": StateMachine._election_resign,
    "election_cancel": StateMachine._election_cancel,
    "ring_join": StateMachine._ring_join,
    "ring_leave": StateMachine._ring_leave,
}
"""A command's operation to its handler (the class's functions, not bound methods)."""


def _weak_lock_tokens(sm: StateMachine) -> Callable[[str], set[int]]:
    """``sm.lock_tokens`` (a hook a subclass may override) without a reference to ``sm``:
    a cycle would keep a replaced state in memory while frozen."""
    method = weakref.WeakMethod(sm.lock_tokens)

    def lock_tokens(name: str) -> set[int]:
        bound = method()
        assert bound is not None  # KVWrites lives only as long as its state machine
        return bound(name)

    return lock_tokens


def _error(err: CoordError) -> CommandResult:
    return CommandResult(error=err.to_proto())
