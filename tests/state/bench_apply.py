"""Apply rate of the state machine: entries per second for 100-byte puts.

    .venv/bin/python -m tests.state.bench_apply [N] [--distinct-keys K] [--client-ids] [--auth]

Prints the median of three runs. Not a test: pytest collects only test_*.py.
"""

from __future__ import annotations

import argparse
import statistics
import time

from coord.raft.v1 import command_pb2
from coord.v1 import auth_pb2, kv_pb2
from coord_server.state import StateMachine


AUTH_SETUP = [
    command_pb2.Command(role_add=auth_pb2.AuthRoleAddRequest(name="root", admin=True)),
    command_pb2.Command(role_add=auth_pb2.AuthRoleAddRequest(name="app")),
    command_pb2.Command(role_grant_permission=auth_pb2.AuthRoleGrantPermissionRequest(name="app", permission=auth_pb2.Permission(
        kind=auth_pb2.PERMISSION_KIND_KEYS, prefix=b"key/", access=auth_pb2.ACCESS_READWRITE))),
    command_pb2.Command(user_add=command_pb2.UserAdd(name="root")),
    command_pb2.Command(user_add=command_pb2.UserAdd(name="app")),
    command_pb2.Command(user_grant_role=auth_pb2.AuthUserGrantRoleRequest(name="root", role="root")),
    command_pb2.Command(user_grant_role=auth_pb2.AuthUserGrantRoleRequest(name="app", role="app")),
    command_pb2.Command(auth_enable=auth_pb2.AuthEnableRequest()),
]
"""With --auth: a non-admin user with read-write on key/, auth on; every put is checked
again at apply (coord_server/state/authorize.py)."""


def entries(n: int, distinct: int, client_ids: bool, auth: bool = False) -> list[bytes]:
    value = b"v" * 100
    out = [c.SerializeToString() for c in AUTH_SETUP] if auth else []
    for i in range(n):
        cmd = command_pb2.Command(put=kv_pb2.PutRequest(key=b"key/%08d" % (i % distinct), value=value))
        if auth:
            cmd.user = "app"
        if client_ids:
            cmd.client_id = "client-%d" % (i % 64)
            cmd.seq = i + 1
        out.append(cmd.SerializeToString())
    return out


def run(data: list[bytes], listener: bool) -> float:
    sm = StateMachine()
    if listener:
        sm.add_listener(lambda rev, events: None)
    start = time.perf_counter()
    apply = sm.apply
    for index, entry in enumerate(data, 1):
        apply(index, entry)
    return len(data) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=200_000)
    parser.add_argument("--distinct-keys", type=int, default=10_000)
    parser.add_argument("--client-ids", action="store_true")
    parser.add_argument("--listener", action="store_true", help="register a no-op watch listener")
    parser.add_argument("--auth", action="store_true", help="auth on: every put checked again at apply")
    args = parser.parse_args()
    data = entries(args.n, args.distinct_keys, args.client_ids, args.auth)
    rates = [run(data, args.listener) for _ in range(3)]
    print(
        f"{args.n} puts of 100 bytes, {args.distinct_keys} distinct keys, "
        f"client ids {'on' if args.client_ids else 'off'}, listener {'on' if args.listener else 'off'}, "
        f"auth {'on' if args.auth else 'off'}: "
        f"median {statistics.median(rates):,.0f} entries/s (runs: {', '.join(f'{r:,.0f}' for r in rates)})"
    )


if __name__ == "__main__":
    main()
