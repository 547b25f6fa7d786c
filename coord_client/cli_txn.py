"""``coordctl txn``: a transaction written as text, as with ``etcdctl txn``.

Three sections separated by one blank line, each one item a line: the comparisons,
the operations to run when all hold (success), and those to run otherwise (failure):

    mod("config") > 0
    value("owner") = "me"

    put config v2
    get config

    get config

Comparisons: ``TARGET("KEY") OP VALUE`` with TARGET one of ``value``, ``version``
(``ver``), ``create`` (``c``), ``mod`` (``m``), ``lease``, or ``lock("NAME")`` (a lock's
fencing token); OP one of ``=``, ``!=``, ``<``, ``>``; VALUE a quoted string for value,
an integer otherwise. Operations: ``put KEY VALUE [--lease ID]``, ``get KEY [RANGE_END]
[--prefix]``, ``del KEY [RANGE_END] [--prefix]``, with shell quoting. ``#`` starts a
comment line. The text comes from stdin (``-i`` prompts for each section, as
``etcdctl txn -i`` does) or from ``--file``. The output says which branch ran
(SUCCESS or FAILURE), then each operation's result as put, get and del print it.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from typing import Any, TextIO

from coord.v1 import kv_pb2

from .aio import AsyncClient
from .txn import Compare, Op
from .types import DeleteResult, OpResult, PutResult, RangeResult, TxnResult, key_range

_TARGETS = {
    "value": Compare.value, "version": Compare.version, "ver": Compare.version,
    "create": Compare.create_revision, "c": Compare.create_revision,
    "mod": Compare.mod_revision, "m": Compare.mod_revision, "lease": Compare.lease,
}
_COMPARE = re.compile(r'^\s*(\w+)\s*\(\s*("(?:[^"\\]|\\.)*"|[^)\s]+)\s*\)\s*(!=|=|==|<|>)\s*(.+?)\s*$')
_PROMPTS = ("compares:", "success requests (get, put, del):", "failure requests (get, put, del):")


class TxnSyntaxError(ValueError):
    """A line of the transaction text that does not parse (a usage error)."""


def _unquote(text: str, line: str) -> str:
    try:
        parts = shlex.split(text)
    except ValueError as err:
        raise TxnSyntaxError(f"{line!r}: {err}") from None
    if len(parts) != 1:
        raise TxnSyntaxError(f"{line!r}: {text!r} is not one quoted string")
    return parts[0]


def parse_compare(line: str, to_bytes: Any = str.encode) -> Compare:
    """One comparison line -> a Compare."""
    m = _COMPARE.match(line)
    if m is None:
        raise TxnSyntaxError(f"{line!r} is not a comparison such as mod(\"key\") > 0 or value(\"key\") = \"v\"")
    target, key_text, op, value_text = m.groups()
    key = _unquote(key_text, line)
    if target == "lock":
        operand = Compare.lock_token(key)
    elif target in _TARGETS:
        operand = _TARGETS[target](to_bytes(key))
    else:
        raise TxnSyntaxError(f"{line!r}: unknown target {target!r} (value, version, create, mod, lease, lock)")
    expected: int | bytes
    if target == "value":
        expected = to_bytes(_unquote(value_text, line))
    else:
        try:
            expected = int(value_text)
        except ValueError:
            raise TxnSyntaxError(f"{line!r}: {target} compares with an integer, not {value_text!r}") from None
    return {"=": operand.eq, "==": operand.eq, "!=": operand.ne, "<": operand.lt, ">": operand.gt}[op](expected)


def parse_op(line: str, to_bytes: Any = str.encode) -> Op:
    """One operation line -> an Op."""
    try:
        words = shlex.split(line)
    except ValueError as err:
        raise TxnSyntaxError(f"{line!r}: {err}") from None
    parser = argparse.ArgumentParser(prog=words[0] if words else "op", add_help=False, exit_on_error=False)
    parser.add_argument("key")
    verb = words[0] if words else ""
    if verb == "put":
        parser.add_argument("value")
        parser.add_argument("--lease", type=int, default=0)
    elif verb in ("get", "del", "delete"):
        parser.add_argument("range_end", nargs="?")
        parser.add_argument("--prefix", action="store_true")
    else:
        raise TxnSyntaxError(f"{line!r}: an operation is put, get or del")
    try:
        args = parser.parse_args(words[1:])
    except (argparse.ArgumentError, SystemExit) as err:
        raise TxnSyntaxError(f"{line!r}: {err}") from None
    if verb == "put":
        return Op.put(to_bytes(args.key), to_bytes(args.value), lease=args.lease)
    if args.prefix and args.range_end is not None:
        raise TxnSyntaxError(f"{line!r}: give either --prefix or RANGE_END")
    key, end = key_range(to_bytes(args.key), args.prefix, to_bytes(args.range_end or ""))
    if verb == "get":
        return Op(kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=key, range_end=end)))
    return Op(kv_pb2.RequestOp(request_delete_range=kv_pb2.DeleteRangeRequest(key=key, range_end=end)))


def read_sections(stream: TextIO, prompt: TextIO | None) -> list[list[str]]:
    """The three sections of lines (blank line ends a section; end of input ends all)."""
    sections: list[list[str]] = [[], [], []]
    i = 0
    if prompt is not None:
        prompt.write(_PROMPTS[0] + "\n")
        prompt.flush()
    for raw in stream:
        line = raw.strip()
        if line.startswith("#"):
            continue
        if not line:
            i += 1
            if i == len(sections):
                break
            if prompt is not None:
                prompt.write("\n" + _PROMPTS[i] + "\n")
                prompt.flush()
            continue
        sections[i].append(line)
    return sections


def parse_txn(text_sections: list[list[str]], to_bytes: Any = str.encode) -> tuple[list[Compare], list[Op], list[Op]]:
    compares, success, failure = text_sections
    return ([parse_compare(c, to_bytes) for c in compares], [parse_op(o, to_bytes) for o in success],
            [parse_op(o, to_bytes) for o in failure])


def result_json(r: OpResult) -> dict[str, Any]:
    from .cli import kv_json

    if isinstance(r, RangeResult):
        return {"get": {"revision": r.revision, "count": r.count, "more": r.more, "kvs": [kv_json(kv) for kv in r.kvs]}}
    if isinstance(r, PutResult):
        return {"put": {"revision": r.revision, "prev_kv": kv_json(r.prev_kv) if r.prev_kv else None}}
    if isinstance(r, DeleteResult):
        return {"del": {"revision": r.revision, "deleted": r.deleted, "prev_kvs": [kv_json(kv) for kv in r.prev_kvs]}}
    return {"txn": {"succeeded": r.succeeded, "revision": r.revision, "responses": [result_json(x) for x in r.responses]}}


def write_result(out: TextIO, args: argparse.Namespace, r: OpResult) -> None:
    from .cli import show

    if isinstance(r, RangeResult):
        for kv in r.kvs:
            out.write(f"{show(args, kv.key)}\n{show(args, kv.value)}\n")
    elif isinstance(r, PutResult):
        out.write("OK\n")
    elif isinstance(r, DeleteResult):
        out.write(f"{r.deleted}\n")
    elif isinstance(r, TxnResult):
        out.write("SUCCESS\n" if r.succeeded else "FAILURE\n")
        for x in r.responses:
            write_result(out, args, x)


async def cmd_txn(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    from .cli import EXIT_OK, UsageError, arg_bytes, emit

    if args.file and args.interactive:
        raise UsageError("give either --file or -i (interactive), not both")
    try:
        if args.file:
            with open(args.file, encoding="utf-8", errors="surrogateescape") as f:
                sections = read_sections(f, None)
        else:
            sections = read_sections(sys.stdin, sys.stderr if args.interactive else None)
        compares, success, failure = parse_txn(sections, lambda text: arg_bytes(args, text))
    except OSError as err:
        raise UsageError(f"cannot read {args.file}: {err.strerror}") from None
    except TxnSyntaxError as err:
        raise UsageError(str(err)) from None
    result = await client.txn().when(*compares).then(*success).otherwise(*failure).commit()
    if args.json:
        emit(out, {"succeeded": result.succeeded, "revision": result.revision,
                   "responses": [result_json(r) for r in result.responses]})
    else:
        write_result(out, args, result)
    return EXIT_OK


def add_commands(sub: Any, leaf: Any) -> None:
    """Add ``txn`` to coordctl's subcommands."""
    p = leaf(sub, "txn", cmd_txn, "run a transaction read from stdin or --file: comparisons, blank line, "
                                  "success operations, blank line, failure operations")
    p.description = __doc__.split("\n\n", 1)[1] if __doc__ else None
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("-i", "--interactive", action="store_true", help="prompt for each section (on stderr)")
    p.add_argument("--file", help="read the transaction from this file instead of stdin")
