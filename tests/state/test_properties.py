"""Property tests: determinism, an MVCC model check, watch replay, exactly-once.

The model (model.py) is a brute-force twin that keeps a dict copy per revision.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coord.raft.v1 import command_pb2
from coord.v1 import kv_pb2
from coord_server.state import Compacted, StateMachine
from coord_server.state.snapshot import SnapshotError

from . import strategies as S
from .model import Model, in_span, kv_tuple, summarize

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

READ_SPANS = [(b"\x00", b"\x00"), (b"a", b""), (b"a", b"b"), (b"ab", b"\x00"), (b"b", b"c"),
              (b"a\x00", b""), (b"c", b"a")]


# -- (1) determinism ---------------------------------------------------------------------


@SETTINGS
@given(st.lists(S.entries(), max_size=40), st.integers(0, 43))
def test_same_log_same_bytes_with_or_without_a_snapshot(log: list[bytes], cut: int) -> None:
    # Leases 1-3 first, so that locks, candidacies and ring members bound to them exist.
    log = [c.SerializeToString() for c in S.PRELUDE] + log
    a, b = StateMachine(), StateMachine()
    for index, data in enumerate(log, 1):
        ra, rb = a.apply(index, data), b.apply(index, data)
        assert ra == rb
        if index == cut:
            b = StateMachine.restore(b.snapshot())
    assert a.snapshot() == b.snapshot()
    assert StateMachine.restore(a.snapshot()).snapshot() == a.snapshot()


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_apply_without_raising(data: bytes) -> None:
    sm = StateMachine()
    sm.apply(1, data)
    sm.apply(2, command_pb2.Command(put=kv_pb2.PutRequest(key=b"k")).SerializeToString())
    assert sm.revision >= 2


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_restore_cleanly_or_refuse(data: bytes) -> None:
    try:
        sm = StateMachine.restore(data)
    except SnapshotError:
        return
    sm.range(kv_pb2.RangeRequest(key=b"\x00", range_end=b"\x00"))


# -- (2) MVCC model check, (3) watch replay ----------------------------------------------


def run_both(cmds: list[command_pb2.Command]) -> tuple[StateMachine, Model]:
    sm, model = StateMachine(), Model()
    for index, cmd in enumerate(cmds, 1):
        got = summarize(sm.apply(index, cmd.SerializeToString()))
        want = model.apply(index, cmd)
        assert got == want, f"command {index}: {cmd}"
        assert sm.revision == model.revision and sm.compact_revision == model.compact_revision
    assert sm.lease_ids() == sorted(model.leases.items())
    return sm, model


@SETTINGS
@given(S.logs(S.commands(), max_size=40))
def test_reads_at_every_revision_match_the_model(cmds: list[command_pb2.Command]) -> None:
    sm, model = run_both(cmds)
    for rev in range(0, model.revision + 2):
        for key, end in READ_SPANS:
            req = kv_pb2.RangeRequest(key=key, range_end=end, revision=rev)
            if rev > model.revision:
                continue
            if 0 < rev < model.compact_revision:
                try:
                    sm.range(req)
                except Compacted:
                    continue
                raise AssertionError(f"revision {rev} below {model.compact_revision} was readable")
            snap = model.snaps[rev] if rev else model.kv
            want = sorted((k, v) for k, v in snap.items() if in_span(k, key, end))
            got = [(kv.key, kv_tuple(kv)) for kv in sm.range(req).kvs]
            assert got == want, (rev, key, end)
    for lease_id in model.leases:
        want_keys = sorted(k for k, v in model.kv.items() if v[4] == lease_id)
        assert sm.lease_info(lease_id).keys == want_keys


@SETTINGS
@given(S.logs(S.commands(), max_size=40))
def test_events_since_replays_exactly_the_changes(cmds: list[command_pb2.Command]) -> None:
    sm, model = run_both(cmds)
    for start in range(model.compact_revision + 1, model.revision + 2):
        for key, end in READ_SPANS:
            want = [
                (rev, kind, k, new, prev)
                for rev, kind, k, new, prev in model.events
                if rev >= start and in_span(k, key, end)
            ]
            got = [
                (
                    e.kv.mod_revision,
                    "PUT" if e.type == 1 else "DELETE",
                    e.kv.key,
                    kv_tuple(e.kv) if e.type == 1 else None,
                    kv_tuple(e.prev_kv) if e.HasField("prev_kv") else None,
                )
                for e in sm.events_since(start, key, end)
            ]
            assert got == want, (start, key, end)
    if model.compact_revision:
        try:
            sm.events_since(model.compact_revision, b"\x00", b"\x00")
        except Compacted:
            pass
        else:
            raise AssertionError("events at the compact revision were served")


@SETTINGS
@given(S.logs(S.commands(compaction=False), max_size=30))
def test_listener_sees_what_events_since_replays(cmds: list[command_pb2.Command]) -> None:
    sm = StateMachine()
    heard = []
    sm.add_listener(lambda rev, events: heard.extend((rev, e.SerializeToString()) for e in events))
    for index, cmd in enumerate(cmds, 1):
        sm.apply(index, cmd.SerializeToString())
    replay = [(e.kv.mod_revision, e.SerializeToString()) for e in sm.events_since(1, b"\x00", b"\x00")]
    assert heard == replay


# -- (4) exactly-once --------------------------------------------------------------------


@SETTINGS
@given(
    st.lists(st.tuples(S.commands(), st.integers(0, 2), st.booleans()), max_size=30),
)
def test_duplicates_never_change_state(plan: list[tuple[command_pb2.Command, int, bool]]) -> None:
    """Machine A sees every command of a client, then 0-2 retries of it (same client id
    and seq), some right away and some after other commands; machine B sees each command
    once, at the same index as A's first copy. Their KV state, leases and revisions agree
    at the end, and every retry got the first result or, once the client moved on,
    FAILED_PRECONDITION."""
    a, b = StateMachine(), StateMachine()
    index = 0
    first: dict[int, command_pb2.CommandResult] = {}
    late: list[tuple[int, command_pb2.Command]] = []
    for seq, (cmd, retries, later) in enumerate(plan, 1):
        cmd.client_id, cmd.seq = "client", seq
        data = cmd.SerializeToString()
        index += 1
        ra, rb = a.apply(index, data), b.apply(index, data)
        assert ra == rb
        first[seq] = ra
        for _ in range(retries):
            if later:
                late.append((seq, cmd))
            else:
                index += 1
                assert a.apply(index, data) == first[seq]
    for seq, cmd in late:
        index += 1
        result = a.apply(index, cmd.SerializeToString())
        if seq == len(plan):
            assert result == first[seq]
        else:
            assert result.error.code == 9  # FAILED_PRECONDITION: the client moved on
    assert a.revision == b.revision and a.lease_ids() == b.lease_ids()
    for rev in range(a.compact_revision or 1, a.revision + 1):
        req = kv_pb2.RangeRequest(key=b"\x00", range_end=b"\x00", revision=rev)
        assert a.range(req) == b.range(req)
    assert a.events_since(a.compact_revision + 1, b"\x00", b"\x00") == b.events_since(
        b.compact_revision + 1, b"\x00", b"\x00")
