"""The Auth service: users, roles and permissions at run time (auth.proto).

Changes are proposed and applied like any write (the state machine's auth table,
coord_server/state/auth.py, checks them and keeps them); reads come from the member's
state after a ReadIndex round. Passwords are hashed here, on the member that received
them (coord_server/auth/passwords.py): only the salted hash enters the log. Who may call
what is the interceptor's business (admins; Authenticate needs no token) and the state
machine's again at apply.
"""

from __future__ import annotations

from typing import Any

from coord.raft.v1 import command_pb2
from coord.v1 import auth_pb2, auth_pb2_grpc
from coord_server.auth.passwords import (
    MAX_PASSWORD_BYTES,
    hash_password_async,
    new_token,
    token_sha256,
    verify_password_async,
)
from coord_server.state.auth import permission_of, permission_proto, validate_auth_name
from coord_server.errors import FailedPrecondition, InvalidArgument, Unauthenticated
from coord_server.member import Member

from .common import Context, Headers, check_size, command_of, propose, read_barrier, unary

BAD_LOGIN = "authentication failed: unknown user, no password, or wrong password"


def _check_password(password: str) -> None:
    size = len(password.encode())
    if not 1 <= size <= MAX_PASSWORD_BYTES:
        raise InvalidArgument(f"password must be 1 to {MAX_PASSWORD_BYTES} bytes, got {size}")


class AuthService(auth_pb2_grpc.AuthServicer):
    def __init__(self, node: Member) -> None:
        self.node = node
        self.headers = Headers(node)

    async def _change(self, context: Context, response: Any, **op: Any) -> Any:
        result = await propose(self.node, command_of(context, **op), context)
        return self.headers.stamp(response, result.revision)

    async def _table(self, context: Context) -> Any:
        await read_barrier(self.node, context)
        return self.node.state.auth

    # ------------------------------------------------------------------ the switch

    @unary
    async def Enable(self, request: auth_pb2.AuthEnableRequest, context: Context) -> auth_pb2.AuthEnableResponse:
        if not self.node.peers_authenticated:
            raise FailedPrecondition(
                "this member's peer service accepts anyone, so auth on could be walked around: start every "
                "member with the same --peer-secret-file, or peer mutual TLS, first (docs/security.md)"
            )
        return await self._change(context, auth_pb2.AuthEnableResponse(), auth_enable=request)  # type: ignore[no-any-return]

    @unary
    async def Disable(self, request: auth_pb2.AuthDisableRequest, context: Context) -> auth_pb2.AuthDisableResponse:
        return await self._change(context, auth_pb2.AuthDisableResponse(), auth_disable=request)  # type: ignore[no-any-return]

    @unary
    async def Status(self, request: auth_pb2.AuthStatusRequest, context: Context) -> auth_pb2.AuthStatusResponse:
        table = await self._table(context)
        response = auth_pb2.AuthStatusResponse(enabled=table.enabled, auth_revision=table.revision)
        return self.headers.stamp(response)  # type: ignore[return-value]

    @unary
    async def Authenticate(
        self, request: auth_pb2.AuthAuthenticateRequest, context: Context
    ) -> auth_pb2.AuthAuthenticateResponse:
        if not request.name or len(request.password.encode()) > MAX_PASSWORD_BYTES:
            raise Unauthenticated(BAD_LOGIN)
        table = await self._table(context)
        user = table.find_user(request.name)
        if user is None or user.password is None or not await verify_password_async(request.password, user.password):
            raise Unauthenticated(BAD_LOGIN)
        token = new_token()
        issue = command_pb2.TokenIssue(name=user.name, digest=token_sha256(token), password_index=user.password_index)
        result = await propose(self.node, command_pb2.Command(token_issue=issue), context)
        return self.headers.stamp(auth_pb2.AuthAuthenticateResponse(token=token), result.revision)  # type: ignore[return-value]

    # ------------------------------------------------------------------ users

    @unary
    async def UserAdd(self, request: auth_pb2.AuthUserAddRequest, context: Context) -> auth_pb2.AuthUserAddResponse:
        check_size(request)
        validate_auth_name(request.name, "user name")
        add = command_pb2.UserAdd(name=request.name)
        if request.no_password:
            if request.password:
                raise InvalidArgument("no_password needs an empty password")
        else:
            _check_password(request.password)
            add.password.CopyFrom(await hash_password_async(request.password))
        return await self._change(context, auth_pb2.AuthUserAddResponse(), user_add=add)  # type: ignore[no-any-return]

    @unary
    async def UserGet(self, request: auth_pb2.AuthUserGetRequest, context: Context) -> auth_pb2.AuthUserGetResponse:
        user = (await self._table(context)).user(request.name)
        response = auth_pb2.AuthUserGetResponse(
            roles=sorted(user.roles), has_password=user.password is not None, tokens=len(user.tokens)
        )
        return self.headers.stamp(response)  # type: ignore[return-value]

    @unary
    async def UserList(self, request: auth_pb2.AuthUserListRequest, context: Context) -> auth_pb2.AuthUserListResponse:
        response = auth_pb2.AuthUserListResponse(users=(await self._table(context)).user_names())
        return self.headers.stamp(response)  # type: ignore[return-value]

    @unary
    async def UserDelete(self, request: auth_pb2.AuthUserDeleteRequest, context: Context) -> auth_pb2.AuthUserDeleteResponse:
        return await self._change(context, auth_pb2.AuthUserDeleteResponse(), user_delete=request)  # type: ignore[no-any-return]

    @unary
    async def UserChangePassword(
        self, request: auth_pb2.AuthUserChangePasswordRequest, context: Context
    ) -> auth_pb2.AuthUserChangePasswordResponse:
        check_size(request)
        _check_password(request.password)
        change = command_pb2.UserAdd(name=request.name, password=await hash_password_async(request.password))
        return await self._change(  # type: ignore[no-any-return]
            context, auth_pb2.AuthUserChangePasswordResponse(), user_change_password=change
        )

    @unary
    async def UserGrantRole(
        self, request: auth_pb2.AuthUserGrantRoleRequest, context: Context
    ) -> auth_pb2.AuthUserGrantRoleResponse:
        return await self._change(context, auth_pb2.AuthUserGrantRoleResponse(), user_grant_role=request)  # type: ignore[no-any-return]

    @unary
    async def UserRevokeRole(
        self, request: auth_pb2.AuthUserRevokeRoleRequest, context: Context
    ) -> auth_pb2.AuthUserRevokeRoleResponse:
        return await self._change(context, auth_pb2.AuthUserRevokeRoleResponse(), user_revoke_role=request)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ roles

    @unary
    async def RoleAdd(self, request: auth_pb2.AuthRoleAddRequest, context: Context) -> auth_pb2.AuthRoleAddResponse:
        validate_auth_name(request.name, "role name")
        return await self._change(context, auth_pb2.AuthRoleAddResponse(), role_add=request)  # type: ignore[no-any-return]

    @unary
    async def RoleGet(self, request: auth_pb2.AuthRoleGetRequest, context: Context) -> auth_pb2.AuthRoleGetResponse:
        role = (await self._table(context)).role(request.name)
        response = auth_pb2.AuthRoleGetResponse(admin=role.admin, permissions=[permission_proto(p) for p in role.permissions])
        return self.headers.stamp(response)  # type: ignore[return-value]

    @unary
    async def RoleList(self, request: auth_pb2.AuthRoleListRequest, context: Context) -> auth_pb2.AuthRoleListResponse:
        response = auth_pb2.AuthRoleListResponse(roles=(await self._table(context)).role_names())
        return self.headers.stamp(response)  # type: ignore[return-value]

    @unary
    async def RoleDelete(self, request: auth_pb2.AuthRoleDeleteRequest, context: Context) -> auth_pb2.AuthRoleDeleteResponse:
        return await self._change(context, auth_pb2.AuthRoleDeleteResponse(), role_delete=request)  # type: ignore[no-any-return]

    @unary
    async def RoleGrantPermission(
        self, request: auth_pb2.AuthRoleGrantPermissionRequest, context: Context
    ) -> auth_pb2.AuthRoleGrantPermissionResponse:
        check_size(request)
        permission_of(request.permission)  # INVALID_ARGUMENT before proposing
        return await self._change(  # type: ignore[no-any-return]
            context, auth_pb2.AuthRoleGrantPermissionResponse(), role_grant_permission=request
        )

    @unary
    async def RoleRevokePermission(
        self, request: auth_pb2.AuthRoleRevokePermissionRequest, context: Context
    ) -> auth_pb2.AuthRoleRevokePermissionResponse:
        return await self._change(  # type: ignore[no-any-return]
            context, auth_pb2.AuthRoleRevokePermissionResponse(), role_revoke_permission=request
        )
