"""etcd's Auth service over coord's runtime users and roles (coord.v1.Auth).

Each etcd call becomes the coord.v1.Auth call that means the same, admitted and applied
as that call (calls.py), with etcd's error wording. What does not map is refused with
INVALID_ARGUMENT (docs/etcd.md): coord grants key permissions on prefixes only, so an
etcd permission must be a prefix range (``--prefix``) or every key; coord has no
write-only access; coord keeps scrypt hashes, so etcd's bcrypt ``hashedPassword`` is not
taken. etcd's ``root`` role is a coord admin role.
"""

from __future__ import annotations

from typing import Any

import grpc

from coord.etcd.authpb import auth_pb2 as authpb
from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.etcdserverpb import rpc_pb2_grpc as etcd_grpc
from coord.v1 import auth_pb2
from coord_server.member import Member
from coord_server.state.keys import prefix_end

from . import convert, errors
from .calls import CoordCalls
from .cluster import _run
from .errors import EtcdError

ROOT = "root"
"""etcd's all-powerful role (and the user AuthEnable needs)."""

AUTH = "/coord.v1.Auth/"
METHODS = (
    "Authenticate", "Enable", "Disable", "UserAdd", "UserGet", "UserList", "UserDelete", "UserChangePassword",
    "UserGrantRole", "UserRevokeRole", "RoleAdd", "RoleGet", "RoleList", "RoleDelete", "RoleGrantPermission",
    "RoleRevokePermission",
)
EVERY_KEY = b"\x00"
"""etcd's range_end for every key (prefix_end of an empty prefix)."""




def key_prefix(key: bytes, range_end: bytes) -> bytes | None:
    """The coord prefix an etcd key range covers, or None when it is not a prefix."""
    if range_end == EVERY_KEY and key in (b"", EVERY_KEY):
        return b""
    if key and range_end == prefix_end(key):
        return key
    return None


def permission(perm: authpb.Permission) -> auth_pb2.Permission:
    """coord's permission for etcd's ``perm``; EtcdError for what coord cannot express."""
    prefix = key_prefix(perm.key, perm.range_end)
    if prefix is None:
        raise EtcdError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "coord grants key permissions on prefixes only: use a prefix range (etcdctl --prefix) or every key",
        )
    if perm.permType == authpb.Permission.WRITE:
        raise EtcdError(grpc.StatusCode.INVALID_ARGUMENT, "coord has no write-only permission: grant readwrite")
    access = auth_pb2.ACCESS_READ if perm.permType == authpb.Permission.READ else auth_pb2.ACCESS_READWRITE
    return auth_pb2.Permission(kind=auth_pb2.PERMISSION_KIND_KEYS, prefix=prefix, access=access)


def etcd_permission(perm: auth_pb2.Permission) -> authpb.Permission:
    prefix = bytes(perm.prefix)
    kind = authpb.Permission.READ if perm.access == auth_pb2.ACCESS_READ else authpb.Permission.READWRITE
    return authpb.Permission(permType=kind, key=prefix or EVERY_KEY, range_end=prefix_end(prefix))


class EtcdAuth(etcd_grpc.AuthServicer):
    """etcd's Auth service (see the module docstring)."""

    def __init__(self, node: Member, interceptor: Any, calls: CoordCalls) -> None:
        self.node = node
        self.interceptor = interceptor
        self.calls = calls

    def _enabled(self) -> bool:
        auth = getattr(self.interceptor, "auth", None)
        return auth is not None and bool(auth.enabled)

    async def _call(self, name: str, request: Any, context: Any) -> Any:
        return await self.calls.call(AUTH + name, request, context)

    async def _run(self, context: Any, work: Any) -> Any:
        return await _run(context, work)

    async def Authenticate(self, request: etcd.AuthenticateRequest, context: Any) -> etcd.AuthenticateResponse:
        """A password user gets a new coord token; a token user (auth file) gives its token
        as the password and gets it back."""

        async def work() -> etcd.AuthenticateResponse:
            if not self._enabled():
                raise errors.AUTH_NOT_ENABLED
            if not request.name:
                raise errors.USER_EMPTY
            principal = self.interceptor.auth.authenticate(request.password)
            if principal is not None and principal.name == request.name:
                return etcd.AuthenticateResponse(header=etcd.ResponseHeader(), token=request.password)
            try:
                r = await self.calls.call(
                    AUTH + "Authenticate", auth_pb2.AuthAuthenticateRequest(name=request.name, password=request.password), context
                )
            except EtcdError as err:
                if err.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT):
                    raise errors.AUTH_FAILED from None
                raise
            return etcd.AuthenticateResponse(header=convert.header(r.header), token=r.token)

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def AuthStatus(self, request: etcd.AuthStatusRequest, context: Any) -> etcd.AuthStatusResponse:
        return etcd.AuthStatusResponse(header=etcd.ResponseHeader(), enabled=self._enabled())

    async def AuthEnable(self, request: etcd.AuthEnableRequest, context: Any) -> etcd.AuthEnableResponse:
        async def work() -> etcd.AuthEnableResponse:
            try:
                r = await self._call("Enable", auth_pb2.AuthEnableRequest(), context)
            except EtcdError as err:
                if err is errors.INVALID_AUTH_MGMT:  # coord's NoAdmin: etcd needs a root user with role root
                    no_root = self.node.state.auth.find_user(ROOT) is None
                    raise (errors.ROOT_USER_NOT_EXIST if no_root else errors.ROOT_ROLE_NOT_EXIST) from None
                raise
            return etcd.AuthEnableResponse(header=convert.header(r.header))

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def AuthDisable(self, request: etcd.AuthDisableRequest, context: Any) -> etcd.AuthDisableResponse:
        async def work() -> etcd.AuthDisableResponse:
            r = await self._call("Disable", auth_pb2.AuthDisableRequest(), context)
            return etcd.AuthDisableResponse(header=convert.header(r.header))

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def UserAdd(self, request: etcd.AuthUserAddRequest, context: Any) -> etcd.AuthUserAddResponse:
        async def work() -> etcd.AuthUserAddResponse:
            self.calls.precheck(AUTH + "UserAdd", auth_pb2.AuthUserAddRequest(), context)  # admins first
            if request.hashedPassword:
                raise EtcdError(
                    grpc.StatusCode.INVALID_ARGUMENT, "coord keeps scrypt hashes it makes itself: send the password"
                )
            add = auth_pb2.AuthUserAddRequest(
                name=request.name, password=request.password, no_password=request.options.no_password
            )
            r = await self._call("UserAdd", add, context)
            return etcd.AuthUserAddResponse(header=convert.header(r.header))

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def UserGet(self, request: etcd.AuthUserGetRequest, context: Any) -> etcd.AuthUserGetResponse:
        async def work() -> etcd.AuthUserGetResponse:
            r = await self._call("UserGet", auth_pb2.AuthUserGetRequest(name=request.name), context)
            return etcd.AuthUserGetResponse(header=convert.header(r.header), roles=r.roles)

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def UserList(self, request: etcd.AuthUserListRequest, context: Any) -> etcd.AuthUserListResponse:
        async def work() -> etcd.AuthUserListResponse:
            r = await self._call("UserList", auth_pb2.AuthUserListRequest(), context)
            return etcd.AuthUserListResponse(header=convert.header(r.header), users=r.users)

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def UserDelete(self, request: etcd.AuthUserDeleteRequest, context: Any) -> etcd.AuthUserDeleteResponse:
        async def work() -> etcd.AuthUserDeleteResponse:
            r = await self._call("UserDelete", auth_pb2.AuthUserDeleteRequest(name=request.name), context)
            return etcd.AuthUserDeleteResponse(header=convert.header(r.header))

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def UserChangePassword(
        self, request: etcd.AuthUserChangePasswordRequest, context: Any
    ) -> etcd.AuthUserChangePasswordResponse:
        async def work() -> etcd.AuthUserChangePasswordResponse:
            self.calls.precheck(AUTH + "UserChangePassword", auth_pb2.AuthUserChangePasswordRequest(), context)  # admins first
            if request.hashedPassword:
                raise EtcdError(
                    grpc.StatusCode.INVALID_ARGUMENT, "coord keeps scrypt hashes it makes itself: send the password"
                )
            change = auth_pb2.AuthUserChangePasswordRequest(name=request.name, password=request.password)
            r = await self._call("UserChangePassword", change, context)
            return etcd.AuthUserChangePasswordResponse(header=convert.header(r.header))

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def UserGrantRole(self, request: etcd.AuthUserGrantRoleRequest, context: Any) -> etcd.AuthUserGrantRoleResponse:
        async def work() -> etcd.AuthUserGrantRoleResponse:
            grant = auth_pb2.AuthUserGrantRoleRequest(name=request.user, role=request.role)
            r = await self._call("UserGrantRole", grant, context)
            return etcd.AuthUserGrantRoleResponse(header=convert.header(r.header))

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def UserRevokeRole(
        self, request: etcd.AuthUserRevokeRoleRequest, context: Any
    ) -> etcd.AuthUserRevokeRoleResponse:
        async def work() -> etcd.AuthUserRevokeRoleResponse:
            revoke = auth_pb2.AuthUserRevokeRoleRequest(name=request.name, role=request.role)
            r = await self._call("UserRevokeRole", revoke, context)
            return etcd.AuthUserRevokeRoleResponse(header=convert.header(r.header))

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def RoleAdd(self, request: etcd.AuthRoleAddRequest, context: Any) -> etcd.AuthRoleAddResponse:
        async def work() -> etcd.AuthRoleAddResponse:
            add = auth_pb2.AuthRoleAddRequest(name=request.name, admin=request.name == ROOT)
            r = await self._call("RoleAdd", add, context)
            return etcd.AuthRoleAddResponse(header=convert.header(r.header))

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def RoleGet(self, request: etcd.AuthRoleGetRequest, context: Any) -> etcd.AuthRoleGetResponse:
        """Key permissions only: etcd has no lock, election or ring permissions."""

        async def work() -> etcd.AuthRoleGetResponse:
            r = await self._call("RoleGet", auth_pb2.AuthRoleGetRequest(name=request.role), context)
            perms = [etcd_permission(p) for p in r.permissions if p.kind == auth_pb2.PERMISSION_KIND_KEYS]
            return etcd.AuthRoleGetResponse(header=convert.header(r.header), perm=perms)

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def RoleList(self, request: etcd.AuthRoleListRequest, context: Any) -> etcd.AuthRoleListResponse:
        async def work() -> etcd.AuthRoleListResponse:
            r = await self._call("RoleList", auth_pb2.AuthRoleListRequest(), context)
            return etcd.AuthRoleListResponse(header=convert.header(r.header), roles=r.roles)

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def RoleDelete(self, request: etcd.AuthRoleDeleteRequest, context: Any) -> etcd.AuthRoleDeleteResponse:
        async def work() -> etcd.AuthRoleDeleteResponse:
            r = await self._call("RoleDelete", auth_pb2.AuthRoleDeleteRequest(name=request.role), context)
            return etcd.AuthRoleDeleteResponse(header=convert.header(r.header))

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def RoleGrantPermission(
        self, request: etcd.AuthRoleGrantPermissionRequest, context: Any
    ) -> etcd.AuthRoleGrantPermissionResponse:
        async def work() -> etcd.AuthRoleGrantPermissionResponse:
            self.calls.precheck(AUTH + "RoleGrantPermission", auth_pb2.AuthRoleGrantPermissionRequest(), context)
            grant = auth_pb2.AuthRoleGrantPermissionRequest(name=request.name, permission=permission(request.perm))
            r = await self._call("RoleGrantPermission", grant, context)
            return etcd.AuthRoleGrantPermissionResponse(header=convert.header(r.header))

        return await self._run(context, work())  # type: ignore[no-any-return]

    async def RoleRevokePermission(
        self, request: etcd.AuthRoleRevokePermissionRequest, context: Any
    ) -> etcd.AuthRoleRevokePermissionResponse:
        """A range coord could not have granted (not a prefix) is not granted."""

        async def work() -> etcd.AuthRoleRevokePermissionResponse:
            self.calls.precheck(AUTH + "RoleRevokePermission", auth_pb2.AuthRoleRevokePermissionRequest(), context)
            prefix = key_prefix(request.key, request.range_end)
            if prefix is None:
                raise errors.PERMISSION_NOT_GRANTED
            revoke = auth_pb2.AuthRoleRevokePermissionRequest(
                name=request.role, kind=auth_pb2.PERMISSION_KIND_KEYS, prefix=prefix
            )
            r = await self._call("RoleRevokePermission", revoke, context)
            return etcd.AuthRoleRevokePermissionResponse(header=convert.header(r.header))

        return await self._run(context, work())  # type: ignore[no-any-return]
