"""Users, roles, tokens and the auth switch: the replicated auth state (etcd's auth store).

Rule 1: changed only by applying auth commands (command.proto, auth_enable to
        auth_bootstrap), so every member has the same users and roles at the same log
        index, and the state machine can check a command against them when it applies it
        (``authorize``): a revoke committed before a write makes that write fail.
Rule 2: no secret is kept in clear. A password arrives already hashed (scrypt with a
        random salt, chosen by the member that accepted it: randomness stays out of the
        state machine) and a token as its SHA-256; a token is 256 random bits, so its
        digest can be neither reversed nor precomputed.
Rule 3: nobody is locked out: auth cannot be turned on without a user holding an admin
        role, and while it is on no change may leave no such user.
Rule 4: deterministic like the rest of the state: dictionaries are exported sorted; the
        principal cache is derived (dropped on every change, never snapshotted).
"""

from __future__ import annotations

from typing import Any

from coord.raft.v1 import command_pb2
from coord.v1 import auth_pb2

from coord_server.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from .permissions import KINDS, Permission, Principal, Role

MAX_AUTH_NAME_BYTES = 256
MAX_TOKENS_PER_USER = 16
"""Tokens a user keeps; Authenticate past it drops the oldest."""

KIND_OF_PROTO = {
    auth_pb2.PERMISSION_KIND_KEYS: "keys",
    auth_pb2.PERMISSION_KIND_LOCKS: "locks",
    auth_pb2.PERMISSION_KIND_ELECTIONS: "elections",
    auth_pb2.PERMISSION_KIND_RINGS: "rings",
}
PROTO_OF_KIND = {kind: number for number, kind in KIND_OF_PROTO.items()}


def validate_auth_name(name: str, what: str) -> None:
    if not name:
        raise InvalidArgument(f"{what} must not be empty")
    size = len(name.encode())
    if size > MAX_AUTH_NAME_BYTES:
        raise InvalidArgument(f"{what} is {size} bytes; the limit is {MAX_AUTH_NAME_BYTES}")


def permission_of(p: auth_pb2.Permission) -> Permission:
    """The model's Permission for a protobuf one; InvalidArgument for an unspecified kind
    or access."""
    kind = KIND_OF_PROTO.get(p.kind)
    if kind is None:
        raise InvalidArgument("permission kind must be keys, locks, elections or rings")
    if p.access not in (auth_pb2.ACCESS_READ, auth_pb2.ACCESS_READWRITE):
        raise InvalidArgument("permission access must be read or readwrite")
    return Permission(kind, bytes(p.prefix), p.access == auth_pb2.ACCESS_READWRITE)


def permission_proto(p: Permission) -> auth_pb2.Permission:
    access = auth_pb2.ACCESS_READWRITE if p.write else auth_pb2.ACCESS_READ
    return auth_pb2.Permission(kind=PROTO_OF_KIND[p.kind], prefix=p.prefix, access=access)


def _sorted_permissions(perms: list[Permission]) -> tuple[Permission, ...]:
    return tuple(sorted(perms, key=lambda p: (KINDS.index(p.kind), p.prefix)))


class User:
    """One user: roles, hashed password (None: cannot Authenticate), token digests."""

    __slots__ = ("name", "roles", "password", "password_index", "tokens")

    def __init__(self, name: str) -> None:
        self.name = name
        self.roles: set[str] = set()
        self.password: command_pb2.PasswordHash | None = None
        self.password_index = 0
        self.tokens: list[bytes] = []


class AuthTable:
    """The auth state of one member (see the module docstring for its rules)."""

    def __init__(self) -> None:
        self.enabled = False
        self.initialised = False
        self.revision = 0
        self._roles: dict[str, Role] = {}
        self._users: dict[str, User] = {}
        self._by_token: dict[bytes, str] = {}
        self._principals: dict[str, Principal] = {}

    # ------------------------------------------------------------------ reads

    def principal(self, name: str) -> Principal | None:
        """The user ``name`` with what its roles grant now; None when there is none."""
        principal = self._principals.get(name)
        if principal is None:
            user = self._users.get(name)
            if user is None:
                return None
            roles = tuple(self._roles[r] for r in sorted(user.roles))
            principal = self._principals[name] = Principal.of(name, roles)
        return principal

    def user_of_token(self, digest: bytes) -> Principal | None:
        """The user a token (by its SHA-256) belongs to, or None."""
        name = self._by_token.get(digest)
        return None if name is None else self.principal(name)

    def find_user(self, name: str) -> User | None:
        return self._users.get(name)

    def user(self, name: str) -> User:
        user = self._users.get(name)
        if user is None:
            raise NotFound(f"user {name!r} not found")
        return user

    def role(self, name: str) -> Role:
        role = self._roles.get(name)
        if role is None:
            raise NotFound(f"role {name!r} not found")
        return role

    def user_names(self) -> list[str]:
        return sorted(self._users)

    def role_names(self) -> list[str]:
        return sorted(self._roles)

    def _has_admin_user(self) -> bool:
        return any(self._roles[r].admin for u in self._users.values() for r in u.roles)

    # ------------------------------------------------------------------ changes

    def apply(self, which: str, op: Any, index: int) -> command_pb2.AuthChangeResult:
        """Apply auth command ``which`` at log ``index`` (CoordError when refused, with
        nothing changed)."""
        if which == "auth_bootstrap":
            if self.initialised:
                return command_pb2.AuthChangeResult(auth_revision=self.revision, applied=False)
            self.load(op)
        else:
            getattr(self, "_" + which)(op, index)
        self.initialised = True
        self.revision += 1
        self._principals.clear()
        return command_pb2.AuthChangeResult(auth_revision=self.revision, applied=True)

    def _auth_enable(self, op: Any, index: int) -> None:
        if not self._has_admin_user():
            raise FailedPrecondition(
                "no user has an admin role: enabling auth would lock everyone out "
                "(add a role with admin, a user, and grant it the role first)"
            )
        self.enabled = True

    def _auth_disable(self, op: Any, index: int) -> None:
        self.enabled = False

    def _user_add(self, op: command_pb2.UserAdd, index: int) -> None:
        validate_auth_name(op.name, "user name")
        if op.name in self._users:
            raise FailedPrecondition(f"user {op.name!r} already exists")
        password = _copy_hash(op.password) if op.HasField("password") else None
        user = self._users[op.name] = User(op.name)
        if password is not None:
            user.password = password
            user.password_index = index

    def _user_delete(self, op: auth_pb2.AuthUserDeleteRequest, index: int) -> None:
        user = self.user(op.name)
        self._guard_admins(lambda name, roles: roles if name != op.name else set())
        for digest in user.tokens:
            del self._by_token[digest]
        del self._users[op.name]

    def _user_change_password(self, op: command_pb2.UserAdd, index: int) -> None:
        user = self.user(op.name)
        if not op.HasField("password"):
            raise InvalidArgument("a new password is needed")
        user.password = _copy_hash(op.password)
        user.password_index = index
        for digest in user.tokens:
            del self._by_token[digest]
        user.tokens = []

    def _user_grant_role(self, op: auth_pb2.AuthUserGrantRoleRequest, index: int) -> None:
        user = self.user(op.name)
        self.role(op.role)
        user.roles.add(op.role)

    def _user_revoke_role(self, op: auth_pb2.AuthUserRevokeRoleRequest, index: int) -> None:
        user = self.user(op.name)
        if op.role not in user.roles:
            raise NotFound(f"user {op.name!r} does not have role {op.role!r}")
        self._guard_admins(lambda name, roles: roles - {op.role} if name == op.name else roles)
        user.roles.discard(op.role)

    def _role_add(self, op: auth_pb2.AuthRoleAddRequest, index: int) -> None:
        validate_auth_name(op.name, "role name")
        if op.name in self._roles:
            raise FailedPrecondition(f"role {op.name!r} already exists")
        self._roles[op.name] = Role(op.name, op.admin, ())

    def _role_delete(self, op: auth_pb2.AuthRoleDeleteRequest, index: int) -> None:
        self.role(op.name)
        self._guard_admins(lambda name, roles: roles - {op.name})
        del self._roles[op.name]
        for user in self._users.values():
            user.roles.discard(op.name)

    def _role_grant_permission(self, op: auth_pb2.AuthRoleGrantPermissionRequest, index: int) -> None:
        role = self.role(op.name)
        granted = permission_of(op.permission)
        kept = [p for p in role.permissions if (p.kind, p.prefix) != (granted.kind, granted.prefix)]
        self._roles[op.name] = Role(role.name, role.admin, _sorted_permissions([*kept, granted]))

    def _role_revoke_permission(self, op: auth_pb2.AuthRoleRevokePermissionRequest, index: int) -> None:
        role = self.role(op.name)
        kind = KIND_OF_PROTO.get(op.kind)
        kept = [p for p in role.permissions if (p.kind, p.prefix) != (kind, bytes(op.prefix))]
        if len(kept) == len(role.permissions):
            raise NotFound(f"role {op.name!r} has no {kind or 'such'} permission on prefix {bytes(op.prefix)!r}")
        self._roles[op.name] = Role(role.name, role.admin, tuple(kept))

    def _token_issue(self, op: command_pb2.TokenIssue, index: int) -> None:
        user = self._users.get(op.name)
        if user is None or user.password is None or user.password_index != op.password_index:
            # The user was deleted or its password changed after Authenticate checked it.
            raise PermissionDenied("the user name or password is no longer valid; authenticate again")
        digest = bytes(op.digest)
        if len(digest) != 32 or digest in self._by_token:
            raise InvalidArgument("a token digest must be 32 new bytes")
        user.tokens.append(digest)
        self._by_token[digest] = user.name
        while len(user.tokens) > MAX_TOKENS_PER_USER:
            del self._by_token[user.tokens.pop(0)]

    def _guard_admins(self, roles_after: Any) -> None:
        """Rule 3: FAILED_PRECONDITION when auth is on and, with every user's roles as
        ``roles_after(name, roles)`` gives them, no user would keep an admin role."""
        if not self.enabled:
            return
        for name in sorted(self._users):
            for role in roles_after(name, self._users[name].roles):
                if role in self._roles and self._roles[role].admin:
                    return
        raise FailedPrecondition(
            "auth is enabled and this would leave no user with an admin role; "
            "grant an admin role to another user first, or disable auth"
        )

    # ------------------------------------------------------------------ snapshots

    def record(self) -> command_pb2.AuthRecord:
        """The whole auth state, sorted (Rule 4)."""
        rec = command_pb2.AuthRecord(enabled=self.enabled, initialised=self.initialised, revision=self.revision)
        for name in sorted(self._roles):
            role = self._roles[name]
            rec.roles.add(name=name, admin=role.admin, permissions=[permission_proto(p) for p in role.permissions])
        for name in sorted(self._users):
            user = self._users[name]
            u = rec.users.add(name=name, roles=sorted(user.roles), password_index=user.password_index)
            if user.password is not None:
                u.password.CopyFrom(user.password)
            u.token_digests.extend(user.tokens)
        return rec

    def load(self, rec: command_pb2.AuthRecord) -> None:
        """Replace the auth state with ``rec`` (a snapshot's, or a bootstrap's: then
        ``enabled`` comes from it too). ValueError when it is inconsistent."""
        roles: dict[str, Role] = {}
        for r in rec.roles:
            validate_auth_name(r.name, "role name")
            if r.name in roles:
                raise InvalidArgument(f"role {r.name!r} is listed twice")
            roles[r.name] = Role(r.name, r.admin, _sorted_permissions([permission_of(p) for p in r.permissions]))
        users: dict[str, User] = {}
        by_token: dict[bytes, str] = {}
        for u in rec.users:
            validate_auth_name(u.name, "user name")
            if u.name in users:
                raise InvalidArgument(f"user {u.name!r} is listed twice")
            missing = [r for r in u.roles if r not in roles]
            if missing:
                raise InvalidArgument(f"user {u.name!r} has undefined role(s) {', '.join(missing)}")
            user = users[u.name] = User(u.name)
            user.roles = set(u.roles)
            if u.HasField("password"):
                user.password = _copy_hash(u.password)
                user.password_index = u.password_index
            for digest in u.token_digests:
                if len(digest) != 32 or digest in by_token:
                    raise InvalidArgument(f"user {u.name!r} has a malformed or shared token digest")
                by_token[bytes(digest)] = u.name
                user.tokens.append(bytes(digest))
        self._roles, self._users, self._by_token = roles, users, by_token
        self.enabled = rec.enabled
        self.initialised = rec.initialised or bool(roles or users)
        self.revision = rec.revision
        self._principals.clear()


def _copy_hash(h: command_pb2.PasswordHash) -> command_pb2.PasswordHash:
    if len(h.salt) < 16 or len(h.hash) != 32 or not (10 <= h.log2_n <= 24) or not h.r or not h.p:
        raise InvalidArgument("a password hash needs a salt of 16 bytes or more, 32 bytes of scrypt output and sane costs")
    copy = command_pb2.PasswordHash()
    copy.CopyFrom(h)
    return copy
