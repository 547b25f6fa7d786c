"""Users, roles and permissions at run time: the coord.v1.Auth service (etcd's shape).

    async with AsyncClient(token=admin_token) as client:
        await client.auth.role_add("app")
        await client.auth.role_grant_permission("app", "keys", "app/", "readwrite")
        await client.auth.user_add("billing", "a password")
        await client.auth.user_grant_role("billing", "app")
    token = await AsyncClient().auth.authenticate("billing", "a password")
    client = AsyncClient(token=token)

``client.auth`` (AsyncAuth) and, on the synchronous Client, ``client.auth`` (Auth, the
same methods, blocking). Every call but ``authenticate`` needs an admin's token while
auth is on (``status``: any user's). See docs/security.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coord.v1 import auth_pb2

from ._transport import Transport

if TYPE_CHECKING:
    from .sync import Client

KINDS = {
    "keys": auth_pb2.PERMISSION_KIND_KEYS,
    "locks": auth_pb2.PERMISSION_KIND_LOCKS,
    "elections": auth_pb2.PERMISSION_KIND_ELECTIONS,
    "rings": auth_pb2.PERMISSION_KIND_RINGS,
}
ACCESS = {"read": auth_pb2.ACCESS_READ, "readwrite": auth_pb2.ACCESS_READWRITE}
_KIND_NAMES = {number: name for name, number in KINDS.items()}
_ACCESS_NAMES = {number: name for name, number in ACCESS.items()}


@dataclass(frozen=True)
class Permission:
    kind: str
    """keys, locks, elections or rings."""
    prefix: bytes
    access: str
    """read or readwrite."""


@dataclass(frozen=True)
class UserInfo:
    name: str
    roles: tuple[str, ...]
    has_password: bool
    tokens: int


@dataclass(frozen=True)
class RoleInfo:
    name: str
    admin: bool
    permissions: tuple[Permission, ...]


@dataclass(frozen=True)
class AuthStatus:
    enabled: bool
    revision: int
    """The number of auth changes applied so far."""


def _kind(kind: str) -> auth_pb2.PermissionKind.ValueType:
    if kind not in KINDS:
        raise ValueError(f"permission kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return KINDS[kind]


def _prefix(prefix: str | bytes) -> bytes:
    return prefix.encode() if isinstance(prefix, str) else prefix


class AsyncAuth:
    """The Auth service through one client's transport (leader following, retries).
    Every change returns the key-value revision at which it was applied."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def _change(self, method: Callable[[Any], Any], request: object, timeout: float | None) -> int:
        response = await self._transport.call(method, request, timeout=timeout, mutating=True)
        revision: int = response.header.revision
        return revision

    async def enable(self, *, timeout: float | None = None) -> int:
        """Turn authentication on (refused unless some user has an admin role)."""
        return await self._change(lambda s: s.auth.Enable, auth_pb2.AuthEnableRequest(), timeout)

    async def disable(self, *, timeout: float | None = None) -> int:
        return await self._change(lambda s: s.auth.Disable, auth_pb2.AuthDisableRequest(), timeout)

    async def status(self, *, timeout: float | None = None) -> AuthStatus:
        response = await self._transport.call(lambda s: s.auth.Status, auth_pb2.AuthStatusRequest(), timeout=timeout)
        return AuthStatus(response.enabled, response.auth_revision)

    async def authenticate(self, name: str, password: str, *, timeout: float | None = None) -> str:
        """A new bearer token for user ``name`` (errors.Unauthenticated for a wrong name
        or password); pass it as ``token=`` to a client."""
        request = auth_pb2.AuthAuthenticateRequest(name=name, password=password)
        response = await self._transport.call(lambda s: s.auth.Authenticate, request, timeout=timeout)
        return response.token

    async def user_add(self, name: str, password: str | None, *, timeout: float | None = None) -> int:
        """Create a user; ``password`` None: a user that cannot authenticate."""
        request = auth_pb2.AuthUserAddRequest(name=name, password=password or "", no_password=password is None)
        return await self._change(lambda s: s.auth.UserAdd, request, timeout)

    async def user_get(self, name: str, *, timeout: float | None = None) -> UserInfo:
        response = await self._transport.call(lambda s: s.auth.UserGet, auth_pb2.AuthUserGetRequest(name=name), timeout=timeout)
        return UserInfo(name, tuple(response.roles), response.has_password, response.tokens)

    async def user_list(self, *, timeout: float | None = None) -> list[str]:
        response = await self._transport.call(lambda s: s.auth.UserList, auth_pb2.AuthUserListRequest(), timeout=timeout)
        return list(response.users)

    async def user_delete(self, name: str, *, timeout: float | None = None) -> int:
        return await self._change(lambda s: s.auth.UserDelete, auth_pb2.AuthUserDeleteRequest(name=name), timeout)

    async def user_change_password(self, name: str, password: str, *, timeout: float | None = None) -> int:
        """Set a new password; the user's tokens stop working."""
        request = auth_pb2.AuthUserChangePasswordRequest(name=name, password=password)
        return await self._change(lambda s: s.auth.UserChangePassword, request, timeout)

    async def user_grant_role(self, name: str, role: str, *, timeout: float | None = None) -> int:
        request = auth_pb2.AuthUserGrantRoleRequest(name=name, role=role)
        return await self._change(lambda s: s.auth.UserGrantRole, request, timeout)

    async def user_revoke_role(self, name: str, role: str, *, timeout: float | None = None) -> int:
        request = auth_pb2.AuthUserRevokeRoleRequest(name=name, role=role)
        return await self._change(lambda s: s.auth.UserRevokeRole, request, timeout)

    async def role_add(self, name: str, *, admin: bool = False, timeout: float | None = None) -> int:
        return await self._change(lambda s: s.auth.RoleAdd, auth_pb2.AuthRoleAddRequest(name=name, admin=admin), timeout)

    async def role_get(self, name: str, *, timeout: float | None = None) -> RoleInfo:
        response = await self._transport.call(lambda s: s.auth.RoleGet, auth_pb2.AuthRoleGetRequest(name=name), timeout=timeout)
        permissions = tuple(
            Permission(_KIND_NAMES[p.kind], p.prefix, _ACCESS_NAMES[p.access]) for p in response.permissions
        )
        return RoleInfo(name, response.admin, permissions)

    async def role_list(self, *, timeout: float | None = None) -> list[str]:
        response = await self._transport.call(lambda s: s.auth.RoleList, auth_pb2.AuthRoleListRequest(), timeout=timeout)
        return list(response.roles)

    async def role_delete(self, name: str, *, timeout: float | None = None) -> int:
        return await self._change(lambda s: s.auth.RoleDelete, auth_pb2.AuthRoleDeleteRequest(name=name), timeout)

    async def role_grant_permission(
        self, name: str, kind: str, prefix: str | bytes, access: str = "readwrite", *, timeout: float | None = None
    ) -> int:
        """Let role ``name`` read (``access="read"``) or read and write everything of
        ``kind`` (keys, locks, elections, rings) that starts with ``prefix``."""
        if access not in ACCESS:
            raise ValueError(f"access must be read or readwrite, got {access!r}")
        permission = auth_pb2.Permission(kind=_kind(kind), prefix=_prefix(prefix), access=ACCESS[access])
        request = auth_pb2.AuthRoleGrantPermissionRequest(name=name, permission=permission)
        return await self._change(lambda s: s.auth.RoleGrantPermission, request, timeout)

    async def role_revoke_permission(
        self, name: str, kind: str, prefix: str | bytes, *, timeout: float | None = None
    ) -> int:
        request = auth_pb2.AuthRoleRevokePermissionRequest(name=name, kind=_kind(kind), prefix=_prefix(prefix))
        return await self._change(lambda s: s.auth.RoleRevokePermission, request, timeout)


class Auth:
    """AsyncAuth for the synchronous Client: the same methods, blocking."""

    def __init__(self, client: Client, inner: AsyncAuth) -> None:
        self._run = client._run
        self._inner = inner

    # -- BEGIN generated by tools/syncgen.py from coord_client/auth.py:AsyncAuth: edit aio, then `make syncgen` --

    def enable(self, *, timeout: float | None = None) -> int:
        """Turn authentication on (refused unless some user has an admin role)."""
        return self._run(self._inner.enable(timeout=timeout))

    def disable(self, *, timeout: float | None = None) -> int:
        return self._run(self._inner.disable(timeout=timeout))

    def status(self, *, timeout: float | None = None) -> AuthStatus:
        return self._run(self._inner.status(timeout=timeout))

    def authenticate(self, name: str, password: str, *, timeout: float | None = None) -> str:
        """A new bearer token for user ``name`` (errors.Unauthenticated for a wrong name
        or password); pass it as ``token=`` to a client."""
        return self._run(self._inner.authenticate(name, password, timeout=timeout))

    def user_add(self, name: str, password: str | None, *, timeout: float | None = None) -> int:
        """Create a user; ``password`` None: a user that cannot authenticate."""
        return self._run(self._inner.user_add(name, password, timeout=timeout))

    def user_get(self, name: str, *, timeout: float | None = None) -> UserInfo:
        return self._run(self._inner.user_get(name, timeout=timeout))

    def user_list(self, *, timeout: float | None = None) -> list[str]:
        return self._run(self._inner.user_list(timeout=timeout))

    def user_delete(self, name: str, *, timeout: float | None = None) -> int:
        return self._run(self._inner.user_delete(name, timeout=timeout))

    def user_change_password(self, name: str, password: str, *, timeout: float | None = None) -> int:
        """Set a new password; the user's tokens stop working."""
        return self._run(self._inner.user_change_password(name, password, timeout=timeout))

    def user_grant_role(self, name: str, role: str, *, timeout: float | None = None) -> int:
        return self._run(self._inner.user_grant_role(name, role, timeout=timeout))

    def user_revoke_role(self, name: str, role: str, *, timeout: float | None = None) -> int:
        return self._run(self._inner.user_revoke_role(name, role, timeout=timeout))

    def role_add(self, name: str, *, admin: bool = False, timeout: float | None = None) -> int:
        return self._run(self._inner.role_add(name, admin=admin, timeout=timeout))

    def role_get(self, name: str, *, timeout: float | None = None) -> RoleInfo:
        return self._run(self._inner.role_get(name, timeout=timeout))

    def role_list(self, *, timeout: float | None = None) -> list[str]:
        return self._run(self._inner.role_list(timeout=timeout))

    def role_delete(self, name: str, *, timeout: float | None = None) -> int:
        return self._run(self._inner.role_delete(name, timeout=timeout))

    def role_grant_permission(
        self,
        name: str,
        kind: str,
        prefix: str | bytes,
        access: str = "readwrite",
        *,
        timeout: float | None = None,
    ) -> int:
        """Let role ``name`` read (``access="read"``) or read and write everything of
        ``kind`` (keys, locks, elections, rings) that starts with ``prefix``."""
        return self._run(self._inner.role_grant_permission(name, kind, prefix, access, timeout=timeout))

    def role_revoke_permission(self, name: str, kind: str, prefix: str | bytes, *, timeout: float | None = None) -> int:
        return self._run(self._inner.role_revoke_permission(name, kind, prefix, timeout=timeout))

    # -- END generated by tools/syncgen.py --
