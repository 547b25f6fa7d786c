"""``coordctl``: the command-line client of coord, in the manner of etcdctl.

    coordctl put greeting hello
    coordctl get greeting --print-value-only
    coordctl get app/ --prefix --json
    coordctl watch app/ --prefix
    coordctl lease grant 30
    coordctl lock nightly-report -- ./make-report.sh      # $COORD_FENCING_TOKEN inside
    coordctl elect scheduler host-a                       # campaign, then hold until Ctrl-C
    coordctl elect --observe scheduler
    coordctl ring join cache cache-a 10.0.0.1:11211
    coordctl ring lookup cache user:42 -n 2
    coordctl member list
    coordctl status
    coordctl endpoint health
    coordctl snapshot save backup.snap                    # restore: coord-server restore

Endpoints come from ``--endpoints`` (comma-separated host:port), else $COORD_ENDPOINTS,
else a profile of the config file (cli_config.py), else a local cluster: a bare
coord-server's 127.0.0.1:7379 or `make cluster`'s 127.0.0.1:7001-7003. TLS: ``--cacert``
(the CA of the members' certificates), ``--cert`` and ``--key`` (a client certificate,
when the cluster asks for one), else $COORD_CACERT, $COORD_CERT, $COORD_KEY; plain
connections when none is given.

Human output by default; ``--json`` prints JSON (one object per line for streams), with
one shape per command whatever the data: a key or value is given both as
``key``/``value`` (UTF-8 text, or null when the bytes are not UTF-8) and
``key_base64``/``value_base64``; docs/coordctl.md lists every shape. ``--hex`` takes KEY,
VALUE and RANGE_END as hex and prints keys and values as hex; without it, arguments are
taken byte for byte (also when not valid UTF-8). Member IDs are hexadecimal, as etcdctl
shows them; lease IDs decimal.

Exit status: 0 success; 1 the cluster refused the request (not found, invalid,
precondition, compacted) or a check failed (``endpoint health``, ``status`` with a
member down); 2 usage error; 3 the cluster could not be reached in time; 4 a lease,
lock or leadership was lost while held; 5 ``lock``/``elect`` ``--timeout`` passed while
waiting; 128+N when signal N (130: Ctrl-C) ended a command that runs until interrupted
(``watch``, ``elect --observe``, ``lease keepalive``); ``lock``/``elect`` holding without
a command release and exit 0 on SIGINT or SIGTERM; with a command they exit with the
command's status (128+N when it died of signal N).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TextIO, TypeVar

from . import errors
from ._deathsig import dying_with_parent
from .aio import AsyncClient, Campaign, Lock
from .tls import CACERT_ENV, CERT_ENV, KEY_ENV, TLSConfig
from .types import EventType, HashMode, KeyValue, Leader, Member, RingMember, Status, key_range

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_LOST = 4
EXIT_TIMED_OUT = 5
"""``lock``/``elect`` gave up waiting after ``--timeout`` (the cluster answered)."""

T = TypeVar("T")
Handler = Callable[[AsyncClient, argparse.Namespace, TextIO], Awaitable[int]]


class UsageError(Exception):
    """A bad argument found after parsing (exit 2)."""


class WaitTimedOut(Exception):
    """``--timeout`` passed while waiting for a lock or leadership (exit 5)."""


def positive_seconds(text: str) -> float:
    """argparse type: a number of seconds greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds greater than 0")
    return value


def non_negative_seconds(text: str) -> float:
    """argparse type: seconds, 0 allowed (``--timeout 0``: do not wait)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds, 0 or more")
    return value


def arg_bytes(args: argparse.Namespace, text: str) -> bytes:
    """A KEY, VALUE or RANGE_END argument as bytes: hex digits with ``--hex``, else the
    argument's own bytes (arguments that are not valid UTF-8 are kept byte for byte)."""
    if getattr(args, "hex", False):
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise UsageError(f"{text!r} is not hexadecimal (--hex)") from None
    return os.fsencode(text)


def show(args: argparse.Namespace, data: bytes) -> str:
    """Bytes for human output: hex with ``--hex``, else UTF-8 text (invalid bytes as U+FFFD)."""
    return data.hex() if getattr(args, "hex", False) else _text(data)


# ----------------------------------------------------------------------- output helpers


def _text(data: bytes) -> str:
    return data.decode(errors="replace")


def _bytes_field(out: dict[str, Any], name: str, data: bytes) -> None:
    """Both ``name`` (the UTF-8 text, or null when the bytes are not valid UTF-8) and
    ``name_base64`` (always): one shape whatever the bytes are."""
    try:
        out[name] = data.decode()
    except UnicodeDecodeError:
        out[name] = None
    out[f"{name}_base64"] = base64.b64encode(data).decode()


def kv_json(kv: KeyValue) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _bytes_field(out, "key", kv.key)
    _bytes_field(out, "value", kv.value)
    out.update(create_revision=kv.create_revision, mod_revision=kv.mod_revision, version=kv.version, lease=kv.lease)
    return out


def leader_json(leader: Leader | None, name: str) -> dict[str, Any]:
    """``{"name": NAME, "leader": null}`` while nobody leads, else ``"leader"`` holds the
    leader's value, lease, token and revision."""
    if leader is None:
        return {"name": name, "leader": None}
    held: dict[str, Any] = {}
    _bytes_field(held, "value", leader.value)
    held.update(lease=leader.lease, token=leader.token, revision=leader.revision)
    return {"name": leader.name, "leader": held}


def member_json(m: Member) -> dict[str, Any]:
    return {"id": f"{m.id:x}", "name": m.name, "peer_address": m.peer_address,
            "client_address": m.client_address, "is_learner": m.is_learner}


def ring_member_json(m: RingMember) -> dict[str, Any]:
    return {"id": m.id, "address": m.address, "weight": m.weight, "lease": m.lease}


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def emit(out: TextIO, obj: Any) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


def parse_member_id(text: str) -> int:
    try:
        return int(text.lower().removeprefix("0x"), 16)
    except ValueError:
        raise UsageError(f"member ID {text!r} is not hexadecimal (as `coordctl member list` shows it)") from None


def exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


@contextlib.contextmanager
def stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, received: list[int] | None = None) -> Any:
    """SIGINT and SIGTERM set ``stop`` (and are appended to ``received``) instead of
    killing the process, so that what is held is released first."""
    installed = []

    def handler(sig: int) -> None:
        if received is not None:
            received.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handler, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on the main thread
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _first(*aws: Awaitable[Any]) -> set[asyncio.Future[Any]]:
    tasks: set[asyncio.Future[Any]] = {asyncio.ensure_future(a) for a in aws}
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    return done


# ----------------------------------------------------------------------------- KV


async def cmd_put(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.value is not None:
        value = arg_bytes(args, args.value)
    else:
        value = sys.stdin.buffer.read()
        if args.hex:
            value = arg_bytes(args, value.decode(errors="replace").strip())
    result = await client.put(arg_bytes(args, args.key), value, lease=args.lease, prev_kv=args.prev_kv)
    if args.json:
        emit(out, {"revision": result.revision, "prev_kv": kv_json(result.prev_kv) if result.prev_kv else None})
    else:
        out.write("OK\n")
        if result.prev_kv is not None:
            out.write(f"{show(args, result.prev_kv.key)}\n{show(args, result.prev_kv.value)}\n")
    return EXIT_OK


def range_of(args: argparse.Namespace) -> tuple[bytes, bytes]:
    """(key, range_end) from KEY, RANGE_END, --prefix and --from-key."""
    given = [name for name, on in (("--prefix", args.prefix), ("RANGE_END", args.range_end is not None),
                                   ("--from-key", getattr(args, "from_key", False))) if on]
    if len(given) > 1:
        raise UsageError(f"give one of --prefix, --from-key and RANGE_END, not {' and '.join(given)}")
    key = arg_bytes(args, args.key)
    if getattr(args, "from_key", False):
        return key or b"\0", b"\0"
    end = arg_bytes(args, args.range_end) if args.range_end is not None else b""
    return key_range(key, args.prefix, end)


async def cmd_get(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    key, end = range_of(args)
    result = await client.range(
        key, end, revision=args.rev, limit=args.limit, keys_only=args.keys_only,
        serializable=args.consistency == "s", count_only=args.count_only,
        sort_order=args.order, sort_target=args.sort_by,
    )
    if args.json:
        emit(out, {"revision": result.revision, "count": result.count, "more": result.more,
                   "kvs": [kv_json(kv) for kv in result.kvs]})
    elif args.count_only:
        out.write(f"{result.count}\n")
    else:
        for kv in result.kvs:
            if args.print_value_only:
                out.write(show(args, kv.value) + "\n")
            elif args.keys_only:
                out.write(show(args, kv.key) + "\n")
            else:
                out.write(f"{show(args, kv.key)}\n{show(args, kv.value)}\n")
    return EXIT_OK


async def cmd_del(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    key, end = range_of(args)
    result = await client.delete(key, range_end=end, prev_kv=args.prev_kv)
    if args.json:
        emit(out, {"revision": result.revision, "deleted": result.deleted,
                   "prev_kvs": [kv_json(kv) for kv in result.prev_kvs]})
    else:
        out.write(f"{result.deleted}\n")
        for kv in result.prev_kvs:
            out.write(f"{show(args, kv.key)}\n{show(args, kv.value)}\n")
    return EXIT_OK


async def cmd_compact(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.compact(args.revision, physical=args.physical)
    if args.json:
        emit(out, {"compacted": args.revision})
    else:
        out.write(f"compacted revision {args.revision}\n")
    return EXIT_OK


async def next_or_stop(iterator: AsyncIterator[T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """(True, item) for the next item of ``iterator``; (False, None) when it ended or
    ``stop`` was set first (the pending step is cancelled and its outcome consumed, so
    nothing is left to be reported as "never retrieved")."""
    step: asyncio.Future[T] = asyncio.ensure_future(iterator.__anext__())
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([step, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not step.done():
            step.cancel()
        step.add_done_callback(lambda f: f.cancelled() or f.exception())
    if step.cancelled() or not step.done():
        return False, None
    if isinstance(step.exception(), StopAsyncIteration):
        return False, None
    return True, step.result()


def interrupted_status(received: list[int]) -> int:
    """128+N after signal N ended a command that runs until interrupted (130 for Ctrl-C)."""
    return 128 + received[0] if received else EXIT_OK


async def cmd_watch(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    stop = asyncio.Event()
    received: list[int] = []
    seen = 0
    with stop_on_signals(asyncio.get_running_loop(), stop, received):
        key, end = range_of(args)
        async with client.watch(key, range_end=end, start_revision=args.rev, prev_kv=args.prev_kv) as events:
            iterator = events.__aiter__()
            while not stop.is_set():
                got, event = await next_or_stop(iterator, stop)
                if not got or event is None:
                    break
                if args.json:
                    item: dict[str, Any] = {"type": event.type.name, **kv_json(event.kv),
                                            "prev_kv": kv_json(event.prev_kv) if event.prev_kv is not None else None}
                    emit(out, item)
                else:
                    lines = [event.type.name, show(args, event.kv.key)]
                    if event.prev_kv is not None:
                        lines.append(show(args, event.prev_kv.value))
                    if event.type == EventType.PUT:
                        lines.append(show(args, event.kv.value))
                    out.write("\n".join(lines) + "\n")
                    out.flush()
                if args.command:
                    from .cli_watch_exec import run_for_event

                    await run_for_event(args.command, event)
                seen += 1
                if args.count and seen >= args.count:
                    break
    return interrupted_status(received)


# ----------------------------------------------------------------------------- leases


async def cmd_lease_grant(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    lease = await client.grant_lease(args.ttl, lease_id=args.id, keepalive=False)
    if args.json:
        emit(out, {"id": lease.id, "ttl": lease.ttl})
    else:
        out.write(f"lease {lease.id} granted with TTL {lease.ttl}s\n")
    return EXIT_OK


async def cmd_lease_revoke(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.revoke_lease(args.id)
    if args.json:
        emit(out, {"id": args.id, "revoked": True})
    else:
        out.write(f"lease {args.id} revoked\n")
    return EXIT_OK


async def cmd_lease_keepalive(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    stop = asyncio.Event()
    received: list[int] = []
    with stop_on_signals(asyncio.get_running_loop(), stop, received):
        while not stop.is_set():
            ttl = await client.keepalive_once(args.id)
            if ttl <= 0:
                if args.json:
                    emit(out, {"id": args.id, "ttl": 0})
                print(f"coordctl: lease {args.id} expired or was revoked", file=sys.stderr)
                return EXIT_LOST
            if args.json:
                emit(out, {"id": args.id, "ttl": ttl})
            else:
                out.write(f"lease {args.id} keepalived with TTL {ttl}\n")
                out.flush()
            if args.once:
                break
            await _first(stop.wait(), asyncio.sleep(max(0.1, ttl / 3)))
    return interrupted_status(received)


async def cmd_lease_list(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    leases = await client.leases()
    if args.json:
        emit(out, [{"id": l.id, "granted_ttl": l.granted_ttl} for l in leases])
    else:
        out.write(f"found {len(leases)} leases\n")
        for l in leases:
            out.write(f"{l.id} (granted TTL {l.granted_ttl}s)\n")
    return EXIT_OK


async def cmd_lease_ttl(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    info = await client.lease_info(args.id, attachments=args.keys)
    if args.json:
        keys: list[dict[str, Any]] = []
        for k in info.keys:
            entry: dict[str, Any] = {}
            _bytes_field(entry, "key", k)
            keys.append(entry)
        emit(out, {"id": info.id, "ttl": info.ttl, "granted_ttl": info.granted_ttl,
                   "keys": [e["key"] for e in keys], "keys_base64": [e["key_base64"] for e in keys],
                   "locks": list(info.locks),
                   "elections": list(info.elections),
                   "ring_members": [{"ring": r, "member_id": m} for r, m in info.ring_members]})
    else:
        line = f"lease {info.id} granted with TTL {info.granted_ttl}s, remaining {info.ttl}s"
        if args.keys:
            members = [f"{r}/{m}" for r, m in info.ring_members]
            line += (f", keys {[show(args, k) for k in info.keys]}, locks {list(info.locks)}, "
                     f"elections {list(info.elections)}, ring members {members}")
        out.write(line + "\n")
    return EXIT_OK


# ----------------------------------------------------------------------------- locks, elections


async def run_holding(
    held: Lock | Campaign, command: list[str], env: dict[str, str], out: TextIO, what: str, quiet_line: str,
    json_obj: dict[str, Any] | None,
) -> int:
    """Run ``command`` while ``held`` is held (or, without a command, hold until SIGINT or
    SIGTERM); then release. Exit with the command's status, or EXIT_LOST.

    SIGINT and SIGTERM are passed on to the command, which is waited for. When the lock
    (or leadership) is lost, the command is sent SIGTERM (SIGKILL 10 s later): work must
    not go on unprotected. Unless stdin is a terminal (an interactive command), the command
    runs in a process group of its own, so that the signals reach everything it started."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []
    with stop_on_signals(loop, stop, received):
        if not command:
            if json_obj is not None:
                emit(out, json_obj)
            else:
                out.write(quiet_line + "\n")
                out.flush()
            await _first(stop.wait(), held.lost.wait())
            if held.lost.is_set():
                print(f"coordctl: {what} was lost: {held.lost_reason}", file=sys.stderr)
                return EXIT_LOST
            return EXIT_OK
        own_group = not sys.stdin.isatty()
        try:
            proc = await asyncio.create_subprocess_exec(
                *dying_with_parent(command, os.getpid()), env={**os.environ, **env},
                process_group=0 if own_group else None,
            )
        except OSError as err:
            print(f"coordctl: cannot run {command[0]!r}: {err}", file=sys.stderr)
            return 127 if isinstance(err, FileNotFoundError) else 126

        def send(sig: int) -> None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if own_group:
                    os.killpg(proc.pid, sig)
                else:
                    proc.send_signal(sig)

        waiter = asyncio.ensure_future(proc.wait())
        while True:
            await _first(asyncio.shield(waiter), held.lost.wait(), stop.wait())
            if waiter.done():
                return exit_status(waiter.result())
            if held.lost.is_set():
                print(f"coordctl: {what} was lost ({held.lost_reason}); stopping the command", file=sys.stderr)
                send(signal.SIGTERM)
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), 10)
                except TimeoutError:
                    send(signal.SIGKILL)
                    await waiter
                return EXIT_LOST
            if stop.is_set():  # pass the signal on, then wait for the command
                while received:
                    send(received.pop(0))
                stop.clear()


async def cmd_lock(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.inspect or args.target is not None:
        from .cli_inspect import inspect_lock

        if args.command or (args.target is not None and args.name != "inspect"):
            raise UsageError("inspect a lock with `lock inspect NAME` (or `lock --inspect NAME`)")
        return await inspect_lock(client, args.target if args.target is not None else args.name, args, out)
    if args.permits > 1:
        lock = client.semaphore(args.name, args.permits, ttl=args.ttl, timeout=args.timeout)
    else:
        lock = client.lock(args.name, ttl=args.ttl, timeout=args.timeout)
    try:
        await lock.acquire()
    except errors.DeadlineExceeded:
        if args.timeout is None:
            raise
        raise WaitTimedOut(f"lock {args.name!r} was not acquired within {args.timeout:g}s") from None
    try:
        lease_id = lock.lease.id if lock.lease is not None else 0
        env = {"COORD_FENCING_TOKEN": str(lock.fencing_token), "COORD_LOCK_NAME": args.name, "COORD_LEASE_ID": str(lease_id)}
        return await run_holding(
            lock, args.command, env, out, f"lock {args.name!r}",
            f"{args.name} {lock.fencing_token}",
            {"name": args.name, "token": lock.fencing_token, "lease": lease_id} if args.json else None,
        )
    finally:
        try:
            await asyncio.shield(lock.release())
        except errors.CoordError as err:
            print(f"coordctl: could not release lock {args.name!r} ({err}); it is released when its lease ends",
                  file=sys.stderr)


async def cmd_elect(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.leader:
        from .cli_inspect import show_leader

        if args.value is not None or args.command or args.observe:
            raise UsageError("elect --leader NAME takes no VALUE, COMMAND or --observe")
        return await show_leader(client, args.name, args, out)
    if args.observe:
        if args.value is not None or args.command:
            raise UsageError("elect --observe NAME takes no VALUE or COMMAND")
        return await observe(client, args, out)
    if args.value is None:
        raise UsageError("elect NAME VALUE campaigns (or use --observe NAME)")
    campaign = client.campaign(args.name, args.value, ttl=args.ttl, timeout=args.timeout)
    try:
        leader = await campaign.campaign()
    except errors.DeadlineExceeded:
        if args.timeout is None:
            raise
        raise WaitTimedOut(f"did not become leader of {args.name!r} within {args.timeout:g}s") from None
    try:
        env = {"COORD_LEADER_TOKEN": str(leader.token), "COORD_ELECTION_NAME": args.name, "COORD_LEASE_ID": str(leader.lease)}
        return await run_holding(
            campaign, args.command, env, out, f"leadership of {args.name!r}",
            f"{args.name} {args.value} (token {leader.token})",
            leader_json(leader, args.name) if args.json else None,
        )
    finally:
        try:
            await asyncio.shield(campaign.resign())
        except errors.CoordError as err:
            print(f"coordctl: could not resign {args.name!r} ({err}); the leadership ends with its lease",
                  file=sys.stderr)


async def observe(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    stop = asyncio.Event()
    received: list[int] = []
    seen = 0
    with stop_on_signals(asyncio.get_running_loop(), stop, received):
        async with client.observe(args.name) as observation:
            iterator = observation.__aiter__()
            while not stop.is_set():
                got, leader = await next_or_stop(iterator, stop)
                if not got:
                    break
                if args.json:
                    emit(out, leader_json(leader, args.name))
                else:
                    out.write((leader.value_str if leader is not None else "(no leader)") + "\n")
                    out.flush()
                seen += 1
                if args.count and seen >= args.count:
                    break
    return interrupted_status(received)


# ----------------------------------------------------------------------------- rings


async def cmd_ring_join(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    mode = {"fast": HashMode.FAST, "ketama": HashMode.KETAMA}[args.mode] if args.mode else None
    version = await client.ring_join(args.ring, args.member, args.address, weight=args.weight,
                                     lease=args.lease, hash_mode=mode, vnodes=args.vnodes)
    if args.json:
        emit(out, {"ring": args.ring, "member": args.member, "version": version})
    else:
        out.write(f"{args.member} joined ring {args.ring} (version {version})\n")
    return EXIT_OK


async def cmd_ring_leave(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    version = await client.ring_leave(args.ring, args.member)
    if args.json:
        emit(out, {"ring": args.ring, "member": args.member, "version": version})
    else:
        out.write(f"{args.member} left ring {args.ring} (version {version})\n")
    return EXIT_OK


async def cmd_ring_lookup(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.local:
        async with client.ring_view(args.ring) as view:
            members = view.lookup_members(args.key, args.n)
    else:
        members = await client.ring_lookup(args.ring, args.key, args.n)
    if args.json:
        emit(out, [ring_member_json(m) for m in members])
    else:
        for m in members:
            out.write(f"{m.id} {m.address}".rstrip() + "\n")
    return EXIT_OK


async def cmd_ring_show(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    state = await client.ring_get(args.ring)
    if args.json:
        emit(out, {"ring": state.name, "version": state.version, "hash_mode": state.hash_mode.name.lower(),
                   "vnodes": state.vnodes, "members": [ring_member_json(m) for m in state.members]})
    else:
        out.write(f"ring {state.name}: version {state.version}, {state.hash_mode.name.lower()} hashing, "
                  f"{state.vnodes} vnodes, {len(state.members)} members\n")
        rows = [("ID", "ADDRESS", "WEIGHT", "LEASE")]
        rows += [(m.id, m.address or "-", str(m.weight), str(m.lease) if m.lease else "-") for m in state.members]
        out.write(table(rows) + "\n")
    return EXIT_OK


# ----------------------------------------------------------------------------- cluster


async def cmd_member_list(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    members = await client.members(linearizable=args.consistency == "l")
    if args.json:
        emit(out, [member_json(m) for m in members])
    else:
        rows = [("ID", "NAME", "PEER ADDRESS", "CLIENT ADDRESS", "LEARNER")]
        rows += [(f"{m.id:x}", m.name or "-", m.peer_address, m.client_address, "true" if m.is_learner else "false")
                 for m in members]
        out.write(table(rows) + "\n")
    return EXIT_OK


async def cmd_member_add(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    member = await client.member_add(args.peer_address, client_address=args.client_address or "", name=args.name or "")
    if args.json:
        emit(out, member_json(member))
    else:
        out.write(f"member {member.id:x} added as a learner ({member.peer_address}); start it, then "
                  f"`coordctl member promote {member.id:x}`\n")
    return EXIT_OK


async def cmd_member_promote(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    members = await client.member_promote(parse_member_id(args.id))
    if args.json:
        emit(out, [member_json(m) for m in members])
    else:
        out.write(f"member {args.id} promoted to voter\n")
    return EXIT_OK


async def cmd_member_remove(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    members = await client.member_remove(parse_member_id(args.id))
    if args.json:
        emit(out, [member_json(m) for m in members])
    else:
        out.write(f"member {args.id} removed\n")
    return EXIT_OK


BEHIND_LIMIT = 1000
"""Entries a member's applied index may trail the leader's commit index before status
calls it behind (a follower under load trails by a batch or two)."""


def human_bytes(size: int) -> str:
    """1536 -> "1.5KiB": sizes in a table column (no spaces, so columns stay parseable)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{size}B"


def health_of(s: Status, leader_commit: int | None) -> str:
    """What an operator checks first: a leader known, and applied not far behind the
    leader's commit index (when the leader answered)."""
    if not s.leader:
        return "no-leader"
    if leader_commit is not None and leader_commit - s.applied_index > BEHIND_LIMIT:
        return f"behind:{leader_commit - s.applied_index}"
    return "ok"


STATUS_KEYS = ("name", "endpoint", "error", "id", "role", "term", "leader", "commit", "applied", "lag", "revision",
               "is_learner", "version", "log_entries", "log_size_bytes", "snapshot_index", "snapshot_size_bytes",
               "health")
"""The keys of one ``status --json`` row, reachable or not."""


def status_json(
    name: str, endpoint: str, s: Status | None, names: dict[int, str], error: str, leader_commit: int | None = None
) -> dict[str, Any]:
    if s is None:  # the same keys, null, so that every row has one shape
        return {**dict.fromkeys(STATUS_KEYS), "name": name, "endpoint": endpoint, "error": error,
                "health": "unreachable"}
    return {
        "name": name, "endpoint": endpoint, "error": None, "id": f"{s.member_id:x}", "role": str(s.role),
        "term": s.term, "leader": names.get(s.leader, f"{s.leader:x}") if s.leader else None,
        "commit": s.commit_index, "applied": s.applied_index, "lag": max(0, s.commit_index - s.applied_index),
        "revision": s.revision, "is_learner": s.is_learner, "version": s.version, "log_entries": s.log_entries,
        "log_size_bytes": s.log_size_bytes, "snapshot_index": s.snapshot_index,
        "snapshot_size_bytes": s.snapshot_size_bytes, "health": health_of(s, leader_commit),
    }


async def cmd_status(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    rows = sorted(await client.cluster_status(), key=lambda r: (r.name or "\uffff", r.endpoint))
    names = {r.status.member_id: r.name for r in rows if r.status is not None and r.name}
    leader_commit = next(
        (r.status.commit_index for r in rows if r.status is not None and r.status.member_id == r.status.leader), None
    )
    objects = [status_json(r.name or "-", r.endpoint, r.status, names, r.error, leader_commit) for r in rows]
    if args.json:
        emit(out, objects)
    else:
        lines = [("NAME", "ENDPOINT", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG", "LOG", "SNAPSHOT", "HEALTH")]
        for o in objects:
            if o["error"] is not None:
                lines.append((o["name"], o["endpoint"], "unreachable", *["-"] * 7, o["health"]))
            else:
                role = o["role"] + (" (learner)" if o["is_learner"] else "")
                lines.append((o["name"], o["endpoint"], role, str(o["term"]), o["leader"] or "none",
                              str(o["commit"]), str(o["applied"]), str(o["lag"]),
                              f"{o['log_entries']}/{human_bytes(o['log_size_bytes'])}",
                              f"{o['snapshot_index']}/{human_bytes(o['snapshot_size_bytes'])}", o["health"]))
        out.write(table(lines) + "\n")
        for r in rows:
            if r.error:
                print(f"coordctl: {r.endpoint}: {r.error}", file=sys.stderr)
    answered = sum(1 for r in rows if r.status is not None)
    if answered == 0:
        return EXIT_UNAVAILABLE
    return EXIT_OK if answered == len(rows) else EXIT_FAILED


async def cmd_endpoint_health(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    results = await client.health()
    if args.json:
        emit(out, [{"endpoint": h.endpoint, "healthy": h.healthy, "took_ms": round(h.took * 1000, 3),
                    "error": h.error or None} for h in results])
    else:
        for h in results:
            if h.healthy:
                out.write(f"{h.endpoint} is healthy: took = {h.took * 1000:.1f}ms\n")
            else:
                out.write(f"{h.endpoint} is unhealthy: {h.error}\n")
    return EXIT_OK if all(h.healthy for h in results) else EXIT_FAILED


async def cmd_snapshot_save(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    from .snapshot import SnapshotFileError, save_snapshot

    try:
        info = await save_snapshot(client, args.file, endpoint=args.endpoint, linearizable=not args.serializable)
    except OSError as err:
        raise SnapshotFileError(f"cannot write {args.file}: {err.strerror}") from None
    if args.json:
        emit(out, {"path": info.path, "endpoint": info.endpoint, "size": info.size, "applied_index": info.applied_index,
                   "revision": info.revision, "sha256": info.sha256, "cluster_id": f"{info.cluster_id:x}",
                   "member_id": f"{info.member_id:x}", "took_ms": round(info.took * 1000, 1)})
    else:
        out.write(f"Snapshot saved at {info.path}: {info.size} bytes, revision {info.revision}, "
                  f"index {info.applied_index}, from {info.endpoint} ({info.took:.2f}s)\n")
    return EXIT_OK


async def cmd_snapshot_status(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    import hashlib

    from coord.raft.v1 import command_pb2

    from .snapshot import SnapshotFileError, read_snapshot_file

    data = read_snapshot_file(args.file)
    try:
        snap = command_pb2.StateSnapshot.FromString(data)
    except Exception:  # noqa: BLE001 - any decoding failure: not a state snapshot
        raise SnapshotFileError(f"{args.file} passes its checksum but does not hold a coord state snapshot") from None
    status = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "applied_index": snap.applied_index,
              "revision": snap.revision, "compact_revision": snap.compact_revision, "keys": len(snap.history.keys),
              "leases": len(snap.leases), "members": [m.name or f"{m.id:x}" for m in snap.members]}
    if args.json:
        emit(out, status)
    else:
        rows = [["SHA256", "SIZE", "INDEX", "REVISION", "KEYS", "LEASES"],
                [str(status["sha256"])[:16], str(len(data)), str(snap.applied_index), str(snap.revision),
                 str(len(snap.history.keys)), str(len(snap.leases))]]
        out.write(table(rows) + "\n")
    return EXIT_OK


# ----------------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser, top: bool = False) -> None:
    """Options accepted before or after the command name."""
    default = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    p.add_argument("--endpoints", default=default(None), metavar="HOST:PORT,...",
                   help="members to talk to (default: $COORD_ENDPOINTS, else 127.0.0.1:7379 and 127.0.0.1:7001-7003)")
    p.add_argument("--token", default=default(None), metavar="TOKEN",
                   help="bearer token for a cluster with authentication on (default: $COORD_TOKEN)")
    p.add_argument("--profile", default=default(None), metavar="NAME",
                   help="settings from this profile of the config file (default: $COORD_PROFILE, else 'default'; "
                        "docs/coordctl.md)")
    p.add_argument("--command-timeout", type=positive_seconds, default=default(None), metavar="SECONDS",
                   help="time limit of each request, retries included (default: the profile's, else 10)")
    p.add_argument("--cacert", dest="tls_cacert", default=default(None), metavar="PEM",
                   help="connect with TLS, trusting this CA (default: $COORD_CACERT)")
    p.add_argument("--cert", dest="tls_cert", default=default(None), metavar="PEM",
                   help="client certificate for TLS (default: $COORD_CERT)")
    p.add_argument("--key", dest="tls_key", default=default(None), metavar="PEM",
                   help="private key of --cert (default: $COORD_KEY)")
    p.add_argument("--json", action="store_true", default=default(False),
                   help="print JSON (one shape per command: docs/coordctl.md)")
    p.add_argument("--hex", action="store_true", default=default(False),
                   help="keys and values are hex: the KEY, VALUE and RANGE_END arguments, and the human output")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``coordctl``."""
    parser = argparse.ArgumentParser(
        prog="coordctl",
        description="Command-line client of coord: keys, watches, leases, locks, elections, hash rings, "
                    "cluster members and status.",
        epilog="Exit status: 0 ok; 1 refused or check failed; 2 usage; 3 cluster unreachable or timed out; "
               "4 lease/lock/leadership lost; 5 lock/elect --timeout passed while waiting; 128+N ended by signal N "
               "(130: Ctrl-C) while watching or observing; lock/elect with a command: the command's status.",
    )
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)

    def leaf(parent: Any, name: str, handler: Handler, help: str, **kw: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help, **kw)
        _common(p)
        p.set_defaults(handler=handler, usage_parser=p)
        return p

    p = leaf(sub, "put", cmd_put, "set a key (VALUE from stdin when omitted)")
    p.add_argument("key")
    p.add_argument("value", nargs="?")
    p.add_argument("--lease", type=int, default=0, help="attach the key to this lease ID")
    p.add_argument("--prev-kv", action="store_true", help="print the previous pair")

    p = leaf(sub, "get", cmd_get, "read a key, a range [KEY, RANGE_END), a prefix or every key from KEY on")
    p.add_argument("key")
    p.add_argument("range_end", nargs="?")
    p.add_argument("--prefix", action="store_true", help="every key starting with KEY")
    p.add_argument("--from-key", action="store_true", help="every key greater than or equal to KEY")
    p.add_argument("--rev", type=int, default=0, help="read at this revision")
    p.add_argument("--limit", type=int, default=0, help="return at most this many keys (0: all)")
    p.add_argument("--keys-only", action="store_true", help="print the keys only, without their values")
    p.add_argument("--count-only", action="store_true", help="print how many keys match, nothing else")
    p.add_argument("--print-value-only", action="store_true", help="print the values only")
    p.add_argument("--order", choices=["ascend", "descend"], help="sort the keys in this order (default: by key, "
                                                                   "ascending)")
    p.add_argument("--sort-by", choices=["key", "version", "create", "mod", "value"], default="key",
                   help="what --order sorts by (default: key)")
    p.add_argument("--consistency", choices=["l", "s"], default="l",
                   help="l: linearizable (default), s: serializable (possibly stale, no leader needed)")

    p = leaf(sub, "del", cmd_del, "delete a key, a range or a prefix; prints how many were deleted")
    p.add_argument("key")
    p.add_argument("range_end", nargs="?")
    p.add_argument("--prefix", action="store_true", help="every key starting with KEY")
    p.add_argument("--from-key", action="store_true", help="every key greater than or equal to KEY")
    p.add_argument("--prev-kv", action="store_true", help="print the deleted pairs")

    p = leaf(sub, "compact", cmd_compact, "discard the history before a revision")
    p.add_argument("revision", type=int)
    p.add_argument("--physical", action="store_true", help="wait until every member applied it")

    p = leaf(sub, "watch", cmd_watch, "print changes to a key, range or prefix until interrupted; with "
                                       "-- COMMAND, run it for each event ($COORD_WATCH_KEY, ...)")
    p.usage = "coordctl watch [options] KEY [RANGE_END] [-- COMMAND [ARG...]]"
    p.add_argument("key")
    p.add_argument("range_end", nargs="?")
    p.add_argument("--prefix", action="store_true", help="every key starting with KEY")
    p.add_argument("--from-key", action="store_true", help="every key greater than or equal to KEY")
    p.add_argument("--rev", type=int, default=0, help="start at this revision (replaying history)")
    p.add_argument("--prev-kv", action="store_true", help="also print the value before each change")
    p.add_argument("--count", type=int, default=0, help="exit after this many events")

    lease = sub.add_parser("lease", help="grant, revoke, keep alive and list leases")
    lsub = lease.add_subparsers(dest="lease_command", metavar="SUBCOMMAND", required=True)
    p = leaf(lsub, "grant", cmd_lease_grant, "grant a lease of TTL seconds (not kept alive)")
    p.add_argument("ttl", type=int)
    p.add_argument("--id", type=int, default=0, help="the lease ID to ask for")
    p = leaf(lsub, "revoke", cmd_lease_revoke, "revoke a lease (deleting its keys, releasing its locks)")
    p.add_argument("id", type=int)
    p = leaf(lsub, "keepalive", cmd_lease_keepalive, "keep a lease alive until interrupted")
    p.add_argument("id", type=int)
    p.add_argument("--once", action="store_true", help="renew once and exit")
    p = leaf(lsub, "list", cmd_lease_list, "list the live leases")
    p = leaf(lsub, "timetolive", cmd_lease_ttl, "show a lease's remaining TTL")
    p.add_argument("id", type=int)
    p.add_argument("--keys", action="store_true", help="also list what is attached to it")

    p = leaf(sub, "lock", cmd_lock, "acquire a lock; run COMMAND while holding it (token in $COORD_FENCING_TOKEN), "
                                     "or hold it until interrupted")
    p.usage = "coordctl lock [options] NAME [-- COMMAND [ARG...]]\n       coordctl lock inspect NAME"
    p.add_argument("name")
    p.add_argument("target", nargs="?", help=argparse.SUPPRESS)  # `lock inspect NAME`
    p.add_argument("--inspect", action="store_true",
                   help="show who holds NAME (tokens, leases) and who waits, in order; acquire nothing")
    p.add_argument("--ttl", type=int, default=10, help="TTL of the lock's lease, seconds (default 10)")
    p.add_argument("--timeout", type=non_negative_seconds, default=None,
                   help="give up waiting after SECONDS, exit 5 (default: wait)")
    p.add_argument("--permits", type=int, default=1, help="a semaphore with this many holders")

    p = leaf(sub, "elect", cmd_elect, "campaign in an election with VALUE and lead until interrupted (or while "
                                       "COMMAND runs); --observe NAME prints the leader's value on every change")
    p.usage = ("coordctl elect [options] NAME VALUE [-- COMMAND [ARG...]]\n       coordctl elect --observe NAME\n"
               "       coordctl elect --leader NAME")
    p.add_argument("name")
    p.add_argument("value", nargs="?")
    p.add_argument("--observe", action="store_true", help="print the leader's value now and on every change")
    p.add_argument("--leader", action="store_true", help="print the current leader (value, token, lease) and exit")
    p.add_argument("--ttl", type=int, default=10, help="TTL of the campaign's lease, seconds (default 10)")
    p.add_argument("--timeout", type=non_negative_seconds, default=None,
                   help="give up campaigning after SECONDS, exit 5 (default: wait)")
    p.add_argument("--count", type=int, default=0, help="with --observe: exit after this many states")

    ring = sub.add_parser("ring", help="consistent-hash rings: join, leave, lookup, show")
    rsub = ring.add_subparsers(dest="ring_command", metavar="SUBCOMMAND", required=True)
    p = leaf(rsub, "join", cmd_ring_join, "add or update a ring member")
    p.add_argument("ring")
    p.add_argument("member")
    p.add_argument("address", nargs="?", default="")
    p.add_argument("--weight", type=int, default=1, help="share of the keys, relative to the others (default 1)")
    p.add_argument("--lease", type=int, default=0, help="leave the ring when this lease ends")
    p.add_argument("--mode", choices=["fast", "ketama"], help="hash mode, when this join creates the ring")
    p.add_argument("--vnodes", type=int, default=0,
                   help="virtual nodes per unit of weight, when this join creates the ring (0: the default)")
    p = leaf(rsub, "leave", cmd_ring_leave, "remove a ring member")
    p.add_argument("ring")
    p.add_argument("member")
    p = leaf(rsub, "lookup", cmd_ring_lookup, "the members responsible for KEY, in preference order")
    p.add_argument("ring")
    p.add_argument("key")
    p.add_argument("-n", type=int, default=1, help="how many distinct members (default 1)")
    p.add_argument("--local", action="store_true", help="compute locally from the ring (as a RingView does)")
    p = leaf(rsub, "show", cmd_ring_show, "a ring's version, settings and members")
    p.add_argument("ring")

    member = sub.add_parser("member", help="cluster membership: list, add, promote, remove")
    msub = member.add_subparsers(dest="member_command", metavar="SUBCOMMAND", required=True)
    p = leaf(msub, "list", cmd_member_list, "list the members")
    p.add_argument("--consistency", choices=["l", "s"], default="s",
                   help="s: this member's view (default), l: confirmed by the leader")
    p = leaf(msub, "add", cmd_member_add, "add a learner at PEER_ADDRESS (host:port)")
    p.add_argument("peer_address")
    p.add_argument("--client-address", help="host:port the new member serves clients on (default: PEER_ADDRESS)")
    p.add_argument("--name", help="the new member's name (its --name)")
    p = leaf(msub, "promote", cmd_member_promote, "make a caught-up learner a voter (ID in hex)")
    p.add_argument("id")
    p = leaf(msub, "remove", cmd_member_remove, "remove a member (ID in hex)")
    p.add_argument("id")

    leaf(sub, "status", cmd_status, "role, term, leader, commit/applied index and lag, log and snapshot "
         "(entries or index / size) and health of every member")

    endpoint = sub.add_parser("endpoint", help="endpoint health and status")
    esub = endpoint.add_subparsers(dest="endpoint_command", metavar="SUBCOMMAND", required=True)
    leaf(esub, "health", cmd_endpoint_health, "check that every endpoint serves and knows a leader")
    leaf(esub, "status", cmd_status, "the same as `coordctl status`")

    from . import cli_cluster, cli_completion, cli_txn

    cli_cluster.add_commands(sub, leaf)
    cli_txn.add_commands(sub, leaf)
    cli_completion.add_commands(sub, leaf)

    snapshot = sub.add_parser("snapshot", help="back up a member's state to a file; inspect such a file")
    ssub = snapshot.add_subparsers(dest="snapshot_command", metavar="SUBCOMMAND", required=True)
    p = leaf(ssub, "save", cmd_snapshot_save, "save a member's snapshot to FILE (checked by SHA-256), "
                                              "for `coord-server restore`")
    p.add_argument("file")
    p.add_argument("--endpoint", help="the member to ask (default: the first of --endpoints that answers)")
    p.add_argument("--serializable", action="store_true",
                   help="snapshot what that member has applied, without a leader round (possibly stale)")
    p = leaf(ssub, "status", cmd_snapshot_status, "check a snapshot FILE and show its index, revision and size")
    p.add_argument("file")
    return parser


_TAKES_COMMAND = ("lock", "elect", "watch")
_GLOBAL_WITH_VALUE = ("--endpoints", "--command-timeout", "--token", "--cacert", "--cert", "--key", "--profile")


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """For ``lock``, ``elect`` and ``watch``: (coordctl's own arguments, the COMMAND after "--").
    Other commands keep "--" for argparse (``coordctl put -- key -value``)."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    skip = False
    for token in argv[:cut]:
        if skip:
            skip = False
            continue
        if token in _GLOBAL_WITH_VALUE:
            skip = True
            continue
        if token.startswith("-"):
            continue
        if token in _TAKES_COMMAND:
            return argv[:cut], argv[cut + 1 :]
        break
    return argv, []


def tls_from_args(args: argparse.Namespace) -> TLSConfig | None:
    """--cacert/--cert/--key, each falling back to its environment variable; None (plain
    connections) when no option nor variable is set."""
    return TLSConfig.from_env({
        CACERT_ENV: args.tls_cacert or os.environ.get(CACERT_ENV, ""),
        CERT_ENV: args.tls_cert or os.environ.get(CERT_ENV, ""),
        KEY_ENV: args.tls_key or os.environ.get(KEY_ENV, ""),
    })


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    if getattr(args, "offline", False):  # needs no cluster (completion)
        offline: Handler = args.handler
        return await offline(None, args, out)  # type: ignore[arg-type]
    try:
        client = AsyncClient(args.endpoints, timeout=args.command_timeout, token=args.token, tls=tls_from_args(args))
    except errors.InvalidArgument as err:
        raise UsageError(str(err)) from None
    async with client:
        client._transport.fail_when_refused = True
        args.tried_endpoints = client.endpoints
        handler: Handler = args.handler
        return await handler(client, args, out)


def endpoints_hint(args: argparse.Namespace) -> str:
    """Which endpoints were tried, where they came from, and how to choose others."""
    tried = ",".join(getattr(args, "tried_endpoints", None) or [args.endpoints or "?"])
    source = getattr(args, "endpoints_source", "?")
    return (f"coordctl: tried {tried} (from {source}); name the cluster's members with "
            f"--endpoints HOST:PORT,... or export COORD_ENDPOINTS=HOST:PORT,...")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of ``coordctl``; returns the process exit status."""
    parser = build_parser()
    own, command = split_command(list(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(own)
    except SystemExit as exited:  # usage errors return 2 (``--help`` still exits 0)
        if exited.code in (0, None):
            raise
        return int(exited.code) if isinstance(exited.code, int) else EXIT_USAGE
    args.command = command
    from .cli_config import ConfigError, apply_profile

    try:
        apply_profile(args)
    except ConfigError as err:
        print(f"coordctl: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_run(args, out or sys.stdout))
    except UsageError as err:
        getattr(args, "usage_parser", parser).print_usage(sys.stderr)
        print(f"coordctl: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except WaitTimedOut as err:
        print(f"coordctl: {err}", file=sys.stderr)
        return EXIT_TIMED_OUT
    except (errors.LockLost, errors.LeaseLost) as err:
        print(f"coordctl: {err}", file=sys.stderr)
        return EXIT_LOST
    except (errors.Unavailable, errors.DeadlineExceeded) as err:
        print(f"coordctl: {type(err).__name__}: {err}", file=sys.stderr)
        print(endpoints_hint(args), file=sys.stderr)
        return EXIT_UNAVAILABLE
    except errors.CoordError as err:
        print(f"coordctl: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush at exit
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
