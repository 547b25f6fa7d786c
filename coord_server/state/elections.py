"""Elections among client processes (election.proto), inside the state machine.

Per election name: the candidates in FIFO order, each bound to a lease; the first one
leads. A leadership is identified by (name, lease, token, revision): token is the log index
at which the candidate became leader, so tokens strictly increase per name (one entry
starts at most one leadership of an election, and indexes only grow, also across an
election emptied and created again).

Rule 1: every change of leader or value emits one ``LeaderChange`` carrying the state after
        it (leader key and value, or lease 0 for "nobody leads"), in apply order: what
        Observe streams. A candidate that leaves the queue without leading emits
        ``CandidateGone`` (its Campaign call fails).
Rule 2: a lease's end removes every candidacy of every ending lease first, then the
        elections that lost their leader pass to their next candidate, so a candidate
        whose lease ends in the same entry never leads.
Rule 3: checks before changes (machine.py Rule 2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from coord.raft.v1 import command_pb2
from coord.v1 import election_pb2

from coord_server.errors import FailedPrecondition


class LeaderChange(NamedTuple):
    """Event: election ``name`` is now led by ``lease`` (0: nobody) since ``token``, with
    ``value``."""

    name: str
    lease: int
    token: int
    revision: int
    value: bytes

    def leader_key(self) -> election_pb2.LeaderKey | None:
        if not self.lease:
            return None
        return election_pb2.LeaderKey(name=self.name, lease=self.lease, token=self.token, revision=self.revision)


class CandidateGone(NamedTuple):
    """Event: ``lease`` left election ``name`` without leading (lease ended or cancelled)."""

    name: str
    lease: int
    queued_at: int


class Candidate:
    __slots__ = ("lease", "value", "queued_at", "revision", "token")

    def __init__(self, lease: int, value: bytes, queued_at: int, revision: int, token: int = 0) -> None:
        self.lease = lease
        self.value = value
        self.queued_at = queued_at
        self.revision = revision
        self.token = token


class Election:
    __slots__ = ("name", "candidates")

    def __init__(self, name: str) -> None:
        self.name = name
        self.candidates: dict[int, Candidate] = {}
        """lease -> candidate, in queue order; the first one leads."""

    def leader(self) -> Candidate | None:
        for c in self.candidates.values():
            return c
        return None


Emit = Callable[[object], None]


class ElectionTable:
    __slots__ = ("_elections", "_by_lease", "_emit")

    def __init__(self, emit: Emit) -> None:
        self._elections: dict[str, Election] = {}
        self._by_lease: dict[int, set[str]] = {}
        self._emit = emit

    def _unbind(self, lease: int, name: str) -> None:
        names = self._by_lease.get(lease)
        if names is not None:
            names.discard(name)
            if not names:
                del self._by_lease[lease]

    def names_of_lease(self, lease: int) -> list[str]:
        """The elections ``lease`` campaigns in (what its end would resign)."""
        return sorted(self._by_lease.get(lease, ()))

    def _announce(self, e: Election) -> None:
        c = e.leader()
        if c is None:
            self._emit(LeaderChange(e.name, 0, 0, 0, b""))
        else:
            self._emit(LeaderChange(e.name, c.lease, c.token, c.revision, c.value))

    def _promote(self, e: Election, index: int, revision: int) -> None:
        """After the leader left: the next candidate leads (or the election ends)."""
        c = e.leader()
        if c is None:
            del self._elections[e.name]
        else:
            c.token, c.revision = index, revision
        self._announce(e)

    def _current(self, key: election_pb2.LeaderKey) -> tuple[Election, Candidate]:
        e = self._elections.get(key.name)
        c = e.leader() if e is not None else None
        if e is None or c is None or c.lease != key.lease or c.token != key.token:
            raise FailedPrecondition(
                f"the leader key (lease {key.lease}, token {key.token}) does not name the current "
                f"leadership of election {key.name!r}"
            )
        return e, c

    # ------------------------------------------------------------------ commands

    def campaign(
        self, req: election_pb2.ElectionCampaignRequest, index: int, revision: int
    ) -> command_pb2.ElectionCampaignResult:
        """Apply a validated Campaign whose lease exists."""
        result = command_pb2.ElectionCampaignResult()
        e = self._elections.get(req.name)
        if e is None:
            e = self._elections[req.name] = Election(req.name)
        c = e.candidates.get(req.lease)
        if c is None:
            c = e.candidates[req.lease] = Candidate(req.lease, req.value, index, revision)
            self._by_lease.setdefault(req.lease, set()).add(req.name)
            if len(e.candidates) == 1:
                c.token = index
                self._announce(e)
        if c.token:
            result.response.leader.CopyFrom(
                election_pb2.LeaderKey(name=req.name, lease=c.lease, token=c.token, revision=c.revision)
            )
        else:
            result.queued_at = c.queued_at
        return result

    def proclaim(self, req: election_pb2.ElectionProclaimRequest) -> None:
        _, c = self._current(req.leader)
        c.value = req.value
        self._announce(self._elections[req.leader.name])

    def resign(self, req: election_pb2.ElectionResignRequest, index: int, revision: int) -> None:
        e, c = self._current(req.leader)
        del e.candidates[c.lease]
        self._unbind(c.lease, e.name)
        self._promote(e, index, revision)

    def cancel(self, req: command_pb2.WaitCancel) -> bool:
        """Take a waiting candidate out (never the leader); False when it does not wait."""
        e = self._elections.get(req.name)
        c = e.candidates.get(req.lease) if e is not None else None
        if e is None or c is None or c.token or (req.queued_at and c.queued_at != req.queued_at):
            return False
        del e.candidates[req.lease]
        self._unbind(req.lease, e.name)
        self._emit(CandidateGone(e.name, req.lease, c.queued_at))
        return True

    def end_leases(self, ids: Iterable[int], index: int, revision: int) -> None:
        """Rule 2, for leases ``ids`` (ascending) ending at ``index``."""
        lost_leader: set[str] = set()
        for lease in ids:
            for name in sorted(self._by_lease.pop(lease, ())):
                e = self._elections[name]
                c = e.candidates.pop(lease)
                if c.token:
                    lost_leader.add(name)
                else:
                    self._emit(CandidateGone(name, lease, c.queued_at))
        for name in sorted(lost_leader):
            self._promote(self._elections[name], index, revision)

    # ------------------------------------------------------------------ reads

    def leader(self, name: str) -> LeaderChange:
        """The current state of ``name`` as a LeaderChange (lease 0 when nobody leads)."""
        e = self._elections.get(name)
        c = e.leader() if e is not None else None
        if c is None:
            return LeaderChange(name, 0, 0, 0, b"")
        return LeaderChange(name, c.lease, c.token, c.revision, c.value)

    def candidates(self, name: str) -> list[Candidate]:
        """Every candidate of ``name`` in queue order, the leader first."""
        e = self._elections.get(name)
        return list(e.candidates.values()) if e is not None else []

    def candidate(self, name: str, lease: int) -> Candidate | None:
        e = self._elections.get(name)
        return e.candidates.get(lease) if e is not None else None

    # ------------------------------------------------------------------ snapshots

    def records(self) -> list[command_pb2.ElectionRecord]:
        out = []
        for name in sorted(self._elections):
            rec = command_pb2.ElectionRecord(name=name)
            rec.candidates.extend(
                command_pb2.CandidateRecord(lease=c.lease, value=c.value, queued_at=c.queued_at,
                                            revision=c.revision, token=c.token)
                for c in self._elections[name].candidates.values()
            )
            out.append(rec)
        return out

    def load(self, records: Iterable[command_pb2.ElectionRecord], live_leases: Callable[[int], bool]) -> None:
        self._elections, self._by_lease = {}, {}
        for rec in records:
            if not rec.candidates:
                raise ValueError(f"election {rec.name!r} has no candidates")
            e = self._elections[rec.name] = Election(rec.name)
            for i, c in enumerate(rec.candidates):
                if (c.token != 0) != (i == 0) or c.lease in e.candidates or not live_leases(c.lease):
                    raise ValueError(f"election {rec.name!r} has a bad candidate list")
                e.candidates[c.lease] = Candidate(c.lease, c.value, c.queued_at, c.revision, c.token)
                self._by_lease.setdefault(c.lease, set()).add(rec.name)
