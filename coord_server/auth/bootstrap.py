"""The auth file as a bootstrap: its users and roles become the first replicated auth state.

A member started with ``--auth-file`` proposes the file's content (roles, users and their
token digests, auth on) as one ``auth_bootstrap`` command, once a leader is known, and
retries until it is applied. The state machine takes it only while no auth state was ever
set, so the first one applied wins and every later one (another member's, or the same
member after a restart) changes nothing: from then on users and roles change only
through the Auth service, and editing the file has no effect (docs/security.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from coord.raft.v1 import command_pb2
from coord_server.errors import Code, CoordError
from coord_server.services.common import propose_within
from coord_server.state.auth import permission_proto
from coord_server.member import Member

from .config import AuthConfig

log = logging.getLogger("coord.auth")

RETRY_DELAY = 0.5
RETRIED = (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED)
"""No leader yet, or the proposal's outcome is unknown: propose again (a second copy
applied is a no-op)."""


def bootstrap_record(config: AuthConfig) -> command_pb2.AuthRecord:
    """The auth file ``config`` as an AuthRecord with auth on."""
    record = command_pb2.AuthRecord(enabled=True, initialised=True)
    for name in sorted(config.roles):
        role = config.roles[name]
        record.roles.add(name=name, admin=role.admin, permissions=[permission_proto(p) for p in role.permissions])
    users = sorted(config.users_by_digest.items(), key=lambda item: item[1].name)
    for digest, principal in users:
        record.users.add(name=principal.name, roles=sorted(r.name for r in principal.roles),
                         token_digests=[bytes.fromhex(digest)])
    return record


async def bootstrap_auth(node: Member, config: AuthConfig) -> None:
    """Propose ``config`` as the first auth state until some auth state is applied."""
    command = command_pb2.Command(auth_bootstrap=bootstrap_record(config))
    while not node.state.auth.initialised:
        try:
            result = await propose_within(node, command, 5.0)
            log.info("auth file %s as the cluster's first auth state",
                     "applied" if result.applied else "not applied: the cluster's auth state was already set")
            return
        except CoordError as err:
            if err.code not in RETRIED:
                log.error("the auth file could not become the cluster's auth state: %s", err)
                return
            log.debug("auth bootstrap not applied yet (%s); retrying", err)
        await asyncio.sleep(RETRY_DELAY)


def start_bootstrap(node: Member, config: AuthConfig | None) -> asyncio.Task[None] | None:
    """The bootstrap as a background task, when there is an auth file and no auth state."""
    if config is None or node.state.auth.initialised:
        return None
    return asyncio.get_running_loop().create_task(bootstrap_auth(node, config), name="auth-bootstrap")
