"""Who may call, at run time: the replicated auth state, or the auth file until it is set.

The users, roles and tokens live in the state machine (coord_server/state/auth.py) and
change through the log. A member started with ``--auth-file`` proposes the file's content
as the first auth state (bootstrap.py); until some auth state is applied, that file
decides, so the member is never open in between. Once the replicated state is set the
file is not read again.

A member that just started serves before it has applied its own log, and a new member
starts with nothing: either would see auth off, or an older set of users. So before it
admits its first call it catches up once (``catch_up``): a restarted member applies
what its log holds as committed (no leader needed); a new member, whose log holds
nothing, takes a ReadIndex round (the leader's commit index) and applies that far.
What a restarted member cannot know before it hears from the leader (changes committed
while it was down) is the ordinary lag: writes are checked again when applied, and
linearizable reads after their ReadIndex round.
"""

from __future__ import annotations

from typing import Any

from coord_server.services.common import bounded, read_barrier, timeout_of
from coord_server.state.permissions import Principal
from coord_server.member import Member

from .config import AuthConfig
from .passwords import token_sha256


class RuntimeAuth:
    def __init__(self, node: Member, bootstrap: AuthConfig | None) -> None:
        self.node = node
        self.bootstrap = bootstrap
        self._startup_commit: int = node.commit_index
        self.caught_up = False
        """Set once ``catch_up`` passed; from then on a lag is the ordinary one that
        ReadIndex and the apply-time check take care of."""

    async def catch_up(self, context: Any) -> None:
        """Apply the log this far once, before the first call is admitted."""
        if not self.caught_up:
            if self._startup_commit:
                await bounded(self.node.wait_applied(self._startup_commit), timeout_of(context), "its log was applied")
            else:
                await read_barrier(self.node, context)
            self.caught_up = True

    @property
    def enabled(self) -> bool:
        """Whether calls are checked (also, so that they are refused, while this member
        has not caught up)."""
        if not self.caught_up:
            return True
        table = self.node.state.auth
        return bool(table.enabled) if table.initialised else self.bootstrap is not None

    @property
    def replicated(self) -> bool:
        """Whether the replicated auth state decides (not the auth file)."""
        return bool(self.node.state.auth.initialised)

    def authenticate(self, token: str) -> Principal | None:
        """The user whose token this is, or None."""
        table = self.node.state.auth
        if table.initialised:
            principal: Principal | None = table.user_of_token(token_sha256(token))
            return principal
        return self.bootstrap.authenticate(token) if self.bootstrap is not None else None
