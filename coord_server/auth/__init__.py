"""Authentication (bearer tokens), authorisation (roles on key prefixes and on lock,
election and ring names), the backend quota and per-client limits: everything a public
call passes before a servicer runs. See docs/security.md."""

from __future__ import annotations

from typing import Any

from coord_server.errors import PermissionDenied, Unauthenticated

from .admission import CURRENT, Admission, check_pipeline_op
from coord_server.state.permissions import Principal
from coord_server.member import Member

from .config import AuthConfig, AuthFileError, load_auth_file, parse_auth, token_digest
from .interceptor import AdmissionInterceptor
from .quota import LeaseLimit, Quota
from .runtime import RuntimeAuth

__all__ = [
    "CURRENT", "Admission", "AdmissionInterceptor", "AuthConfig", "AuthFileError", "LeaseLimit",
    "PermissionDenied", "Principal", "Quota", "RuntimeAuth", "Unauthenticated", "build_interceptor",
    "check_pipeline_op", "load_auth_file", "parse_auth", "token_digest",
]


def build_interceptor(settings: Any, node: Member, peer_guard: Any = None) -> AdmissionInterceptor:
    """The interceptor for one port of a member with ``settings`` (its loaded ``auth``,
    quota_bytes, max_leases_per_client); ``peer_guard`` checks that port's peer calls."""
    return AdmissionInterceptor(
        RuntimeAuth(node, settings.auth), Quota(node, settings.quota_bytes),
        LeaseLimit(node, settings.max_leases_per_client), peer_guard,
    )
