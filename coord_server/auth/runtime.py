"""Who may call, at run time: the replicated auth state, or the auth file until it is set.

The users, roles and tokens live in the state machine (coord_server/state/auth.py) and
change through the log. A member started with ``--auth-file`` proposes the file's content
as the first auth state (bootstrap.py); until some auth state is applied, that file
decides, so the member is never open in between. Once the replicated state is set the
file is not read again.
"""

from __future__ import annotations

from typing import Any

from coord_server.state.permissions import Principal

from .config import AuthConfig
from .passwords import token_sha256


class RuntimeAuth:
    def __init__(self, node: Any, bootstrap: AuthConfig | None) -> None:
        self.node = node
        self.bootstrap = bootstrap

    @property
    def enabled(self) -> bool:
        table = self.node.state.auth
        return bool(table.enabled) if table.initialised else self.bootstrap is not None

    def authenticate(self, token: str) -> Principal | None:
        """The user whose token this is, or None."""
        table = self.node.state.auth
        if table.initialised:
            principal: Principal | None = table.user_of_token(token_sha256(token))
            return principal
        return self.bootstrap.authenticate(token) if self.bootstrap is not None else None
