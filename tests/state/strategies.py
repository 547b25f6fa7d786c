"""Hypothesis strategies: random but mostly meaningful Commands over a small key space."""

from __future__ import annotations

from hypothesis import strategies as st

from coord.raft.v1 import command_pb2
from coord.v1 import election_pb2, kv_pb2, lease_pb2, lock_pb2, ring_pb2

KEYS = [b"a", b"ab", b"abc", b"b", b"ba", b"c", b"\x00", b"\xff", b"a\x00"]
VALUES = [b"", b"1", b"2", b"x", b"xyz"]
LEASE_IDS = [0, 0, 0, 1, 2, 3, 5, 8]
PRELUDE = [
    command_pb2.Command(lease_grant=lease_pb2.LeaseGrantRequest(ttl=10, id=i)) for i in (1, 2, 3)
]
"""Leases 1-3 exist from the start, so that lease-bound puts often succeed."""

keys = st.sampled_from(KEYS)
values = st.sampled_from(VALUES)
lease_ids = st.sampled_from(LEASE_IDS)


@st.composite
def spans(draw: st.DrawFn) -> tuple[bytes, bytes]:
    key = draw(keys)
    kind = draw(st.sampled_from(["single", "prefix", "from", "all", "pair"]))
    if kind == "single":
        return key, b""
    if kind == "prefix":
        return key, key[:-1] + bytes([key[-1] + 1]) if key[-1] < 0xFF else b"\x00"
    if kind == "from":
        return key, b"\x00"
    if kind == "all":
        return b"\x00", b"\x00"
    return key, draw(keys)


@st.composite
def puts(draw: st.DrawFn) -> kv_pb2.PutRequest:
    req = kv_pb2.PutRequest(key=draw(keys), prev_kv=draw(st.booleans()))
    flags = draw(st.sampled_from(["", "", "", "ignore_value", "ignore_lease"]))
    if flags == "ignore_value":
        req.ignore_value = True
        req.lease = draw(lease_ids)
    elif flags == "ignore_lease":
        req.ignore_lease = True
        req.value = draw(values)
    else:
        req.value = draw(values)
        req.lease = draw(lease_ids)
    return req


@st.composite
def deletes(draw: st.DrawFn) -> kv_pb2.DeleteRangeRequest:
    key, end = draw(spans())
    return kv_pb2.DeleteRangeRequest(key=key, range_end=end, prev_kv=draw(st.booleans()))


@st.composite
def compares(draw: st.DrawFn) -> kv_pb2.Compare:
    target = draw(st.sampled_from(["VERSION", "CREATE_REVISION", "MOD_REVISION", "VALUE", "LEASE", "LOCK_TOKEN"]))
    result = getattr(kv_pb2, "COMPARE_RESULT_" + draw(st.sampled_from(["EQUAL", "NOT_EQUAL", "LESS", "GREATER"])))
    c = kv_pb2.Compare(target=getattr(kv_pb2, "COMPARE_TARGET_" + target), result=result)
    if target == "LOCK_TOKEN":
        c.lock_name = draw(st.sampled_from(COORD_NAMES))
        c.lock_token = draw(st.integers(0, 40))
        return c
    key, end = draw(spans()) if draw(st.booleans()) else (draw(keys), b"")
    c.key, c.range_end = key, end
    if target == "VALUE":
        c.value = draw(values)
    elif target == "LEASE":
        c.lease = draw(lease_ids)
    else:
        setattr(c, target.lower(), draw(st.integers(0, 8)))
    return c


@st.composite
def request_ops(draw: st.DrawFn, depth: int) -> kv_pb2.RequestOp:
    kinds = ["put", "put", "delete", "range"] + (["txn"] if depth < 2 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "put":
        return kv_pb2.RequestOp(request_put=draw(puts()))
    if kind == "delete":
        return kv_pb2.RequestOp(request_delete_range=draw(deletes()))
    if kind == "range":
        key, end = draw(spans())
        return kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=key, range_end=end))
    return kv_pb2.RequestOp(request_txn=draw(txns(depth + 1)))


@st.composite
def txns(draw: st.DrawFn, depth: int = 0) -> kv_pb2.TxnRequest:
    return kv_pb2.TxnRequest(
        compare=draw(st.lists(compares(), max_size=2)),
        success=draw(st.lists(request_ops(depth), max_size=3)),
        failure=draw(st.lists(request_ops(depth), max_size=3)),
    )


def kv_commands() -> st.SearchStrategy[command_pb2.Command]:
    """Writes only, plus leases so that lease-bound puts can succeed."""
    return st.one_of(
        puts().map(lambda r: command_pb2.Command(put=r)),
        puts().map(lambda r: command_pb2.Command(put=r)),
        deletes().map(lambda r: command_pb2.Command(delete_range=r)),
        txns().map(lambda r: command_pb2.Command(txn=r)),
        st.builds(lambda t, i: command_pb2.Command(lease_grant=lease_pb2.LeaseGrantRequest(ttl=t, id=i)),
                  st.integers(1, 20), lease_ids),
        lease_ids.map(lambda i: command_pb2.Command(lease_revoke=lease_pb2.LeaseRevokeRequest(id=i))),
        st.lists(lease_ids, max_size=3).map(
            lambda ids: command_pb2.Command(lease_expire=command_pb2.LeaseExpire(ids=ids))),
    )


def commands(compaction: bool = True) -> st.SearchStrategy[command_pb2.Command]:
    base = kv_commands()
    if not compaction:
        return base
    return st.one_of(
        base,
        st.integers(-1, 12).map(lambda r: command_pb2.Command(compact=kv_pb2.CompactRequest(revision=r))),
    )


@st.composite
def with_clients(draw: st.DrawFn, cmd: st.SearchStrategy[command_pb2.Command]) -> command_pb2.Command:
    c = draw(cmd)
    if draw(st.booleans()):
        c.client_id = draw(st.sampled_from(["c1", "c2", "c3"]))
        c.seq = draw(st.integers(0, 6))
    return c


COORD_NAMES = ["lock", "l2"]
COORD_LEASES = [1, 2, 3, 5]


@st.composite
def coordination_commands(draw: st.DrawFn) -> command_pb2.Command:
    """Lock, election and ring commands over a few names and the PRELUDE leases; tokens
    and leader keys are small numbers, so that some of them name a current grant."""
    kind = draw(st.sampled_from(["acquire", "acquire", "release", "lock_cancel", "campaign", "proclaim",
                                 "resign", "election_cancel", "join", "join", "leave"]))
    name = draw(st.sampled_from(COORD_NAMES))
    lease = draw(st.sampled_from(COORD_LEASES))
    token = draw(st.integers(0, 40))
    if kind == "acquire":
        return command_pb2.Command(lock_acquire=lock_pb2.LockAcquireRequest(
            name=name, lease=lease, no_wait=draw(st.booleans()), permits=draw(st.sampled_from([0, 1, 2])),
            owner=draw(st.sampled_from(["", "me"]))))
    if kind == "release":
        return command_pb2.Command(lock_release=lock_pb2.LockReleaseRequest(name=name, token=token))
    if kind in ("lock_cancel", "election_cancel"):
        return command_pb2.Command(**{kind: command_pb2.WaitCancel(name=name, lease=lease, queued_at=draw(st.sampled_from([0, token])))})
    key = election_pb2.LeaderKey(name=name, lease=lease, token=token)
    if kind == "campaign":
        return command_pb2.Command(election_campaign=election_pb2.ElectionCampaignRequest(
            name=name, lease=lease, value=draw(values)))
    if kind == "proclaim":
        return command_pb2.Command(election_proclaim=election_pb2.ElectionProclaimRequest(leader=key, value=draw(values)))
    if kind == "resign":
        return command_pb2.Command(election_resign=election_pb2.ElectionResignRequest(leader=key))
    member = draw(st.sampled_from(["m1", "m2", "m3"]))
    if kind == "leave":
        return command_pb2.Command(ring_leave=ring_pb2.RingLeaveRequest(ring=name, member_id=member))
    join = ring_pb2.RingJoinRequest(ring=name, member_id=member, address=draw(st.sampled_from(["", "h:1"])),
                                    weight=draw(st.integers(0, 3)), lease=draw(st.sampled_from([0, *COORD_LEASES])))
    if draw(st.booleans()):
        join.settings.hash_mode = draw(st.sampled_from([0, 1, 2]))
    return command_pb2.Command(ring_join=join)


def entries() -> st.SearchStrategy[bytes]:
    """Any entry data a log may hold: commands (KV, leases, locks, elections, rings), no-ops,
    garbage, and mutated commands."""
    # About 40% lock, election and ring commands (one_of would weigh them as one branch
    # against the eight of commands()).
    any_command = st.sampled_from(["kv", "kv", "kv", "coord", "coord"]).flatmap(
        lambda kind: commands() if kind == "kv" else coordination_commands())
    good = with_clients(any_command).map(lambda c: c.SerializeToString())
    return st.one_of(
        good,
        good,
        good,
        st.just(b""),
        st.binary(max_size=40),
        st.tuples(good, st.integers(0, 200), st.integers(0, 255)).map(
            lambda t: t[0][: t[1] % (len(t[0]) + 1)] + bytes([t[2]]) + t[0][t[1] % (len(t[0]) + 1) + 1 :]
        ),
    )


def logs(cmd: st.SearchStrategy[command_pb2.Command], max_size: int) -> st.SearchStrategy[list[command_pb2.Command]]:
    """A log: the lease PRELUDE, then up to ``max_size`` commands."""
    return st.lists(cmd, max_size=max_size).map(lambda cs: [_copy(c) for c in PRELUDE] + cs)


def _copy(c: command_pb2.Command) -> command_pb2.Command:
    out = command_pb2.Command()
    out.CopyFrom(c)
    return out
