"""Who may call each gRPC service a member serves: the one table a new service goes into.

Every method a member registers (on any port) falls under exactly one access rule, by
its service's full name:

- OPEN: answers anyone, no token. Only services that are harmless by construction:
  grpc.health.v1 (says whether the member can serve) and server reflection (describes
  the API, which ``protos/`` publishes anyway).
- PEER: the members' own traffic (coord.raft.v1.Raft). The caller proves membership
  with the cluster's peer secret (metadata ``coord-peer-secret``) and/or, on a peer port
  with mutual TLS, a peer certificate naming the member it claims to be
  (coord_server/transport/peer_auth.py). Client tokens never open it.
- PUBLIC: the client API (coord.v1): a bearer token when auth is on, then the
  per-request permissions of coord_server/auth/requirements.py (an RPC that table does
  not know needs an admin role).

- TRANSLATED: etcd's v3 API (coord_server/etcd). The caller must hold a valid token
  (etcd's ``token`` metadata or a bearer token) before anything runs; each call is then
  admitted as the coord.v1 call it becomes (coord_server/etcd/calls.py), by the same
  requirements, and a call with no coord.v1 equivalent needs an admin role. etcd's
  Authenticate (the login) and AuthStatus are OPEN.

A service this table does not name is refused to everyone while auth is on
(PERMISSION_DENIED): a new service is closed until someone adds it here and decides who
may call it. tests/security/test_enumeration.py walks every method each port of a real
member registered (coord_server/registry.py) and fails on any without a rule.
"""

from __future__ import annotations

import enum


class Access(enum.Enum):
    OPEN = "open"
    PEER = "peer"
    PUBLIC = "public"
    TRANSLATED = "translated"


SERVICE_RULES: dict[str, Access] = {
    "grpc.health.v1.Health": Access.OPEN,
    "grpc.reflection.v1alpha.ServerReflection": Access.OPEN,
    "grpc.reflection.v1.ServerReflection": Access.OPEN,
    "coord.raft.v1.Raft": Access.PEER,
    "coord.v1.KV": Access.PUBLIC,
    "coord.v1.Lease": Access.PUBLIC,
    "coord.v1.Lock": Access.PUBLIC,
    "coord.v1.Election": Access.PUBLIC,
    "coord.v1.Ring": Access.PUBLIC,
    "coord.v1.Cluster": Access.PUBLIC,
    "coord.v1.Maintenance": Access.PUBLIC,
    "etcdserverpb.KV": Access.TRANSLATED,
    "etcdserverpb.Watch": Access.TRANSLATED,
    "etcdserverpb.Lease": Access.TRANSLATED,
    "etcdserverpb.Cluster": Access.TRANSLATED,
    "etcdserverpb.Maintenance": Access.TRANSLATED,
    "etcdserverpb.Auth": Access.TRANSLATED,
    "v3lockpb.Lock": Access.TRANSLATED,
    "v3electionpb.Election": Access.TRANSLATED,
}


METHOD_RULES: dict[str, Access] = {
    # etcd's login (it checks the password itself) and whether auth is on at all.
    "/etcdserverpb.Auth/Authenticate": Access.OPEN,
    "/etcdserverpb.Auth/AuthStatus": Access.OPEN,
}
"""Per method (``/pkg.Service/Method``), before SERVICE_RULES: for a method whose rule
differs from its service's, e.g. a call that exchanges a password for a token must be
OPEN."""


def service_of(method: str) -> str:
    """``/pkg.Service/Method`` -> ``pkg.Service``."""
    return method.lstrip("/").partition("/")[0]


def access_of(method: str) -> Access | None:
    """The rule of a full method name; None when neither it nor its service has one
    (refused with auth on)."""
    rule = METHOD_RULES.get(method)
    return rule if rule is not None else SERVICE_RULES.get(service_of(method))
