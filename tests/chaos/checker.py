"""Checkers for chaos histories: linearizable registers, lock safety, no lost writes,
watch delivery.

Registers: the Wing & Gong search with Lowe's memoisation, as Porcupine implements it
(``check_linearizable``): a doubly linked list of call and return entries ordered by
time; linearize the first call whose step the model accepts, unless the (set of
linearized operations, model state) pair was seen before; on reaching a return entry
whose call is not yet linearized, backtrack. The history is split per key first (a
register per key: P-compositionality). Operations whose outcome is unknown get an
infinite completion time, so they may take effect anywhere after their invocation, or
(by being linearized last, where nothing observes them) not at all.

Two safe reductions keep unknown operations cheap (both proven in ``_prepare``):
reads that failed or timed out are dropped (they constrain nothing), and so are writes
with unknown outcome whose value no operation observed.

When a key is not linearizable, ``shrink`` removes operations while the rest still fails,
keeping the sub-history closed under "reads from" (an operation that observed value v
stays only with the write of v), which guarantees the small history is a genuine
violation of the big one (see ``shrink``).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .history import FAIL, OK, UNKNOWN, Op

# ------------------------------------------------------------------ results


@dataclass
class CheckResult:
    name: str
    valid: bool | None = True
    """True: no violation; False: a violation (``errors``); None: could not decide."""
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    witness: list[Op] = field(default_factory=list)
    """The minimal failing sub-histories (of every failing key), for linearizability
    violations."""
    max_errors: int = 12
    suppressed: int = 0

    def fail(self, message: str) -> None:
        self.valid = False
        if len(self.errors) < self.max_errors:
            self.errors.append(message)
        else:
            self.suppressed += 1


# ------------------------------------------------------------------ register model

READ, WRITE, CAS, CAS_UNKNOWN = 0, 1, 2, 3


def _encode(op: Op) -> tuple[int, Any, Any]:
    """(kind, a, b) for the model step."""
    if op.f == "read":
        return READ, op.output, None
    if op.f == "write":
        return WRITE, op.value, None
    if op.f == "cas":
        expected, new = op.value
        if op.outcome != OK:
            return CAS_UNKNOWN, expected, new
        succeeded, seen = op.output
        if succeeded:
            return CAS, expected, new
        return READ, seen, expected  # a failed cas is a read of ``seen`` (which differs from expected)
    raise ValueError(f"not a register operation: {op.f}")


def _step(state: Any, kind: int, a: Any, b: Any) -> tuple[bool, Any]:
    if kind == READ:
        return (state == a and (b is None or state != b)), state
    if kind == WRITE:
        return True, a
    if kind == CAS:
        return state == a, b
    # CAS_UNKNOWN: it succeeds if and only if the value is the expected one when it runs.
    return True, (b if state == a else state)


def observed_values(ops: Iterable[Op]) -> set[Any]:
    """Values some operation saw: read outputs, the expected value of a successful cas,
    the value a failed cas saw, and the expected value of a cas of unknown outcome (if it
    took effect, it saw that value)."""
    seen = set()
    for op in ops:
        if op.f == "cas" and op.outcome == UNKNOWN:
            seen.add(op.value[0])
            continue
        if op.outcome != OK:
            continue
        if op.f == "read":
            seen.add(op.output)
        elif op.f == "cas":
            succeeded, value = op.output
            seen.add(op.value[0] if succeeded else value)
    return seen


def written_value(op: Op) -> Any:
    if op.f == "write":
        return op.value
    if op.f == "cas":
        return op.value[1]
    return None


def _prepare(ops: Sequence[Op]) -> list[Op]:
    """The operations the search needs.

    * Failed or unknown reads: dropped; a read has no effect.
    * Failed writes and cas: dropped; they certainly did not happen.
    * Unknown writes and cas whose written value nobody observed: dropped. If the history
      without such a write W is linearizable, so is the history with it: put W last in the
      linearization (its completion is infinite, so that respects real time); nothing
      after it observes anything. Conversely, remove W from a linearization of the full
      history: no operation read W's value, so every read still sees what it saw.
    """
    kept = [op for op in ops if op.outcome != FAIL and not (op.f == "read" and op.outcome != OK)]
    while True:  # a kept unknown cas observes its expected value: iterate to a fixpoint
        seen = observed_values(kept)
        smaller = [op for op in kept if op.outcome == OK or written_value(op) in seen]
        if len(smaller) == len(kept):
            return kept
        kept = smaller


@dataclass
class LinearizabilityResult:
    ok: bool | None
    """None when the step budget ran out."""
    steps: int = 0
    ops: int = 0
    max_linearized: int = 0
    """The longest partial linearization found (diagnostics)."""


def check_linearizable(ops: Sequence[Op], initial: Any = None, budget: int = 20_000_000) -> LinearizabilityResult:
    """Whether ``ops`` (one register) is linearizable, starting from ``initial``."""
    ops = _prepare(ops)
    n = len(ops)
    if n == 0:
        return LinearizabilityResult(True)
    codes = [_encode(op) for op in ops]
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.invoke, 0, i))
        events.append((op.end, 1, i))
    events.sort()  # by time; at equal times calls first (concurrent, the permissive choice)
    m = len(events)
    # Node 0 is the head sentinel; nodes 1..m are the entries; -1 ends the list.
    nxt = list(range(1, m + 1)) + [-1]
    nxt[m] = -1
    prv = list(range(-1, m))
    call_op = [-1] * (m + 1)
    match = [0] * (m + 1)
    ret_of = [0] * n
    for k, (_, kind, i) in enumerate(events, start=1):
        if kind == 1:
            ret_of[i] = k
    for k, (_, kind, i) in enumerate(events, start=1):
        if kind == 0:
            call_op[k] = i
            match[k] = ret_of[i]

    def lift(k: int) -> None:
        nxt[prv[k]] = nxt[k]
        prv[nxt[k]] = prv[k]  # a call is always followed by (at least) its return
        r = match[k]
        nxt[prv[r]] = nxt[r]
        if nxt[r] != -1:
            prv[nxt[r]] = prv[r]

    def unlift(k: int) -> None:
        r = match[k]
        nxt[prv[r]] = r
        if nxt[r] != -1:
            prv[nxt[r]] = r
        nxt[prv[k]] = k
        prv[nxt[k]] = k

    cache: set[tuple[int, Any]] = set()
    calls: list[tuple[int, Any]] = []
    state = initial
    linearized = 0
    entry = nxt[0]
    steps = 0
    best = 0
    while nxt[0] != -1:
        steps += 1
        if steps > budget:
            return LinearizabilityResult(None, steps, n, best)
        i = call_op[entry]
        if i >= 0:
            kind, a, b = codes[i]
            ok, new_state = _step(state, kind, a, b)
            if ok:
                bit = 1 << i
                key = (linearized | bit, new_state)
                if key not in cache:
                    cache.add(key)
                    calls.append((entry, state))
                    state = new_state
                    linearized |= bit
                    lift(entry)
                    if len(calls) > best:
                        best = len(calls)
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:
            if not calls:
                return LinearizabilityResult(False, steps, n, best)
            entry, state = calls.pop()
            linearized &= ~(1 << call_op[entry])
            unlift(entry)
            entry = nxt[entry]
    return LinearizabilityResult(True, steps, n, best)


# ------------------------------------------------------------------ shrinking


def _readers_of(ops: Sequence[Op], values: set[Any]) -> set[str]:
    out = set()
    for op in ops:
        if op.f == "cas" and op.outcome == UNKNOWN and op.value[0] in values:
            out.add(op.id)
        if op.outcome != OK:
            continue
        if op.f == "read" and op.output in values:
            out.add(op.id)
        elif op.f == "cas":
            succeeded, seen = op.output
            if (op.value[0] if succeeded else seen) in values:
                out.add(op.id)
    return out


def remove_closed(ops: Sequence[Op], remove: set[str]) -> list[Op]:
    """``ops`` without ``remove`` and without every operation that observed a value written
    only by a removed operation (transitively: a removed cas is a removed write)."""
    remove = set(remove)
    while True:
        removed_values = {written_value(op) for op in ops if op.id in remove and written_value(op) is not None}
        kept_values = {written_value(op) for op in ops if op.id not in remove and written_value(op) is not None}
        orphaned = removed_values - kept_values
        more = _readers_of([op for op in ops if op.id not in remove], orphaned) if orphaned else set()
        if not more:
            return [op for op in ops if op.id not in remove]
        remove |= more


def shrink(
    ops: Sequence[Op],
    fails: Callable[[Sequence[Op]], bool],
    time_limit: float = 60.0,
) -> list[Op]:
    """A small sub-history of ``ops`` on which ``fails`` still holds (ddmin).

    Only sub-histories closed under "reads from" are tried: if such a sub-history H' is not
    linearizable, neither is H (restrict a linearization of H to H': every operation of
    H' that observed v still follows the write of v with no write of H' in between, and the
    real-time order is kept), so the witness is a genuine violation, not an artefact."""
    current = list(ops)
    deadline = time.monotonic() + time_limit
    chunk = max(1, len(current) // 2)
    while time.monotonic() < deadline:
        removed_any = False
        start = 0
        while start < len(current) and time.monotonic() < deadline:
            candidate_ids = {op.id for op in current[start : start + chunk]}
            candidate = remove_closed(current, candidate_ids)
            if len(candidate) < len(current) and fails(candidate):
                current = candidate
                removed_any = True
            else:
                start += chunk
        if chunk == 1 and not removed_any:
            break
        if not removed_any:
            chunk = max(1, chunk // 2)
    return current


# ------------------------------------------------------------------ registers


def check_registers(
    ops: Sequence[Op], budget: int = 50_000_000, shrink_time: float = 60.0
) -> CheckResult:
    """Linearizability of every key's register history (split per key)."""
    result = CheckResult("linearizable registers")
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    started = time.monotonic()
    steps = 0
    for key in sorted(by_key):
        key_ops = sorted(by_key[key], key=lambda o: o.invoke)
        t = time.monotonic()
        res = check_linearizable(key_ops, budget=budget)
        steps += res.steps
        result.notes.append(
            f"key {key}: {len(key_ops)} ops ({res.ops} searched), {res.steps} steps, "
            f"{time.monotonic() - t:.2f} s: {'linearizable' if res.ok else 'NOT linearizable' if res.ok is False else 'undecided (budget)'}"
        )
        if res.ok is None:
            if result.valid:
                result.valid = None
            result.errors.append(f"key {key}: search budget of {budget} steps exhausted; undecided")
        elif res.ok is False:
            witness = shrink(key_ops, lambda h: check_linearizable(h, budget=budget).ok is False, shrink_time)
            result.fail(f"key {key}: not linearizable; minimal failing sub-history has {len(witness)} ops")
            result.witness.extend(witness)
    result.stats = {
        "keys": len(by_key), "ops": len(ops), "steps": steps, "seconds": round(time.monotonic() - started, 3),
    }
    return result


# ------------------------------------------------------------------ set (no lost writes)


def check_set(ops: Sequence[Op], final: set[str] | None, t0: float = 0.0) -> CheckResult:
    """Grow-only set: ``add`` ops (value = element) and ``read`` ops (output = elements).

    * every add acknowledged before a read was invoked is in that read;
    * a read that completed before another was invoked is a subset of it;
    * the final read (after healing) holds every acknowledged add, nothing never added and
      nothing whose add certainly failed."""
    result = CheckResult("set: no acknowledged write lost")
    adds = [op for op in ops if op.f == "add"]
    reads = sorted((op for op in ops if op.f == "read" and op.outcome == OK), key=lambda o: o.invoke)
    attempted = {op.value for op in adds}
    acked = sorted(((op.complete, op.value) for op in adds if op.outcome == OK), key=lambda p: p[0])  # type: ignore[arg-type,return-value]
    failed = {op.value for op in adds if op.outcome == FAIL}
    # Acknowledged before each read's invocation.
    j = 0
    known: list[str] = []
    for r in reads:
        while j < len(acked) and acked[j][0] < r.invoke:
            known.append(acked[j][1])
            j += 1
        present = set(r.output)
        missing = [v for v in known if v not in present]
        if missing:
            result.fail(
                f"read {r.id} at {r.invoke - t0:.3f} on {r.node} misses {len(missing)} acknowledged adds, e.g. {missing[:3]}"
            )
        strange = present - attempted
        if strange:
            result.fail(f"read {r.id} holds elements never added: {sorted(strange)[:3]}")
    # Reads ordered in real time grow.
    by_end = sorted(reads, key=lambda o: o.end)
    union: set[str] = set()
    k = 0
    for r in reads:
        while k < len(by_end) and by_end[k].end < r.invoke:
            union |= set(by_end[k].output)
            k += 1
        gone = union - set(r.output)
        if gone:
            result.fail(f"read {r.id} at {r.invoke - t0:.3f} on {r.node} lost {len(gone)} elements an earlier read saw, e.g. {sorted(gone)[:3]}")
    if final is None:
        result.valid = None if result.valid else result.valid
        result.errors.append("no final read")
    else:
        missing = sorted({v for _, v in acked} - final)
        if missing:
            result.fail(f"final read misses {len(missing)} acknowledged adds, e.g. {missing[:5]}")
        strange = sorted(final - attempted)
        if strange:
            result.fail(f"final read holds {len(strange)} elements never added, e.g. {strange[:5]}")
        resurrected = sorted(final & failed)
        if resurrected:
            result.fail(f"final read holds {len(resurrected)} adds that failed definitely, e.g. {resurrected[:5]}")
    unknown = [op.value for op in adds if op.outcome == UNKNOWN]
    result.stats = {
        "adds": len(adds), "acked": len(acked), "failed": len(failed), "unknown": len(unknown),
        "unknown_present": len(set(unknown) & final) if final is not None else 0,
        "reads": len(reads), "final": len(final) if final is not None else None,
    }
    return result


# ------------------------------------------------------------------ locks


def decode_fenced(value: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(value)
    return data


def check_locks(ops: Sequence[Op], log: list[tuple[int, str]] | None, t0: float = 0.0) -> CheckResult:
    """Lock safety for one mutex.

    ``ops``: ``acquire`` (value: lease; output: token), ``fenced`` (a Txn comparing the lock
    token: value {"t": token, "op": id, "n": counter}; output [succeeded, revision]),
    ``release``. ``log``: (revision, value) of every fenced write that took effect, in
    revision order (each fenced write also puts a key of its own, read back at the end).

    * tokens: one grant per token (the same token only for the same lease); a grant that
      started after another completed has a higher token;
    * fenced writes, in revision order: tokens never decrease and the guarded counter goes
      up by exactly one each time (no two holders' writes interleave, no lost update);
    * a fenced write invoked after a grant of a higher token completed was rejected;
    * every acknowledged successful write is in the log at its revision, no rejected one is,
      and nothing else is."""
    result = CheckResult("lock safety")
    acquires = [op for op in ops if op.f == "acquire" and op.outcome == OK and op.output]
    fenced = [op for op in ops if op.f == "fenced"]
    by_token: dict[int, set[Any]] = defaultdict(set)
    for op in acquires:
        by_token[int(op.output)].add(op.value)
    for token, leases in by_token.items():
        if len(leases) > 1:
            result.fail(f"token {token} granted to {len(leases)} leases: {sorted(leases)}")
    # Real-time order of grants.
    by_end = sorted(acquires, key=lambda o: o.end)
    max_token_done = 0
    k = 0
    for op in sorted(acquires, key=lambda o: o.invoke):
        while k < len(by_end) and by_end[k].end < op.invoke:
            max_token_done = max(max_token_done, int(by_end[k].output))
            k += 1
        if int(op.output) < max_token_done:
            result.fail(
                f"acquire {op.id} invoked at {op.invoke - t0:.3f} got token {op.output}, lower than token {max_token_done} granted before it started"
            )
    # The log of fenced writes that took effect.
    fenced_by_id = {op.value["op"]: op for op in fenced}
    if log is None:
        result.valid = None if result.valid else result.valid
        result.errors.append("no final read of the fenced-write log")
        applied_ids: set[str] = set()
    else:
        last_token = 0
        last_n: int | None = None
        applied_ids = set()
        for revision, value in log:
            entry = decode_fenced(value)
            op = fenced_by_id.get(entry["op"])
            if op is None:
                result.fail(f"revision {revision}: a fenced write nobody made: {value}")
                continue
            applied_ids.add(entry["op"])
            if entry["t"] < last_token:
                result.fail(
                    f"revision {revision}: write {entry['op']} with token {entry['t']} took effect after a write with token {last_token}"
                )
            if last_n is not None and entry["n"] != last_n + 1:
                result.fail(
                    f"revision {revision}: write {entry['op']} (token {entry['t']}) set the counter to {entry['n']} after {last_n}: "
                    "a lost update (two holders interleaved, or the holder read a stale counter)"
                )
            last_token = max(last_token, entry["t"])
            last_n = entry["n"]
            if op.outcome == OK and op.output[0] and op.output[1] != revision:
                result.fail(f"write {op.id} was acknowledged at revision {op.output[1]} but is in the log at {revision}")
        for op in fenced:
            if op.outcome == OK and op.output[0] and op.value["op"] not in applied_ids:
                result.fail(f"acknowledged fenced write {op.id} (token {op.value['t']}) is not in the log: lost")
            if op.outcome == OK and not op.output[0] and op.value["op"] in applied_ids:
                result.fail(f"fenced write {op.id} (token {op.value['t']}) was rejected but took effect")
    # Stale writes after a newer grant completed.
    grant_done = sorted((op.end, int(op.output)) for op in acquires)
    for op in fenced:
        took_effect = op.value["op"] in applied_ids or (op.outcome == OK and op.output[0])
        if not took_effect:
            continue
        newer = [t for end, t in grant_done if end < op.invoke and t > op.value["t"]]
        if newer:
            result.fail(
                f"fenced write {op.id} with token {op.value['t']} took effect though token {max(newer)} was granted "
                "(and acknowledged) before the write started"
            )
    rejected = sum(1 for op in fenced if op.outcome == OK and not op.output[0])
    result.stats = {
        "grants": len(acquires), "tokens": len(by_token), "fenced": len(fenced),
        "fenced_ok": sum(1 for op in fenced if op.outcome == OK and op.output[0]),
        "fenced_rejected": rejected, "fenced_unknown": sum(1 for op in fenced if op.outcome == UNKNOWN),
        "log": len(log) if log is not None else None,
    }
    return result


# ------------------------------------------------------------------ watches


@dataclass
class WatchStream:
    """What one watcher saw: ``batches`` of events (one WatchResponse each) as
    (revision, type, key, value) tuples, over however many streams it reopened."""

    name: str
    start_revision: int
    batches: list[list[tuple[int, str, str, str]]] = field(default_factory=list)
    reopened: int = 0


def check_watches(
    streams: Sequence[WatchStream],
    replay: list[tuple[int, str, str, str]] | None,
    acked_writes: Sequence[tuple[int, str, str]] = (),
) -> CheckResult:
    """Every watcher got every event once, in order: what it saw is exactly the replay (one
    watch from the same start revision, run at the end) up to its last revision, and one
    revision's events came in one response. ``acked_writes`` (revision, key, value) of
    acknowledged writes cross-check the replay itself."""
    result = CheckResult("watch: every event once, in order")
    total = 0
    if replay is None:
        result.valid = None
        result.errors.append("no final replay")
        return result
    replay_sorted = list(replay)
    for a, b in zip(replay_sorted, replay_sorted[1:]):
        if b[0] < a[0]:
            result.fail(f"the replay itself goes back from revision {a[0]} to {b[0]}")
            break
    index = {(rev, key): (typ, value) for rev, typ, key, value in replay_sorted}
    for rev, key, value in acked_writes:
        got = index.get((rev, key))
        if got is None or got[1] != value:
            result.fail(f"acknowledged write of {key}={value!r} at revision {rev} is not in the replayed history (got {got})")
    for stream in streams:
        events = [e for batch in stream.batches for e in batch]
        total += len(events)
        if not events:
            continue
        last_rev = events[-1][0]
        expected = [e for e in replay_sorted if stream.start_revision <= e[0] <= last_rev]
        if events != expected:
            first = next((i for i, (a, b) in enumerate(zip(events, expected)) if a != b), min(len(events), len(expected)))
            result.fail(
                f"watcher {stream.name}: {len(events)} events up to revision {last_rev}, expected {len(expected)}; "
                f"first difference at #{first}: got {events[first] if first < len(events) else None}, "
                f"expected {expected[first] if first < len(expected) else None}"
            )
        seen_revs: set[int] = set()
        for batch in stream.batches:
            revs = {e[0] for e in batch}
            split = revs & seen_revs
            if split:
                result.fail(f"watcher {stream.name}: the events of revision {min(split)} came in two responses")
                break
            seen_revs |= revs
    result.stats = {"watchers": len(streams), "events": total, "replay": len(replay_sorted),
                    "reopened": sum(s.reopened for s in streams)}
    return result
