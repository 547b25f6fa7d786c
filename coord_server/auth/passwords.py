"""Password hashing for the Auth service: scrypt with a random per-user salt.

Why here and not in the state machine: the salt is random, and randomness must stay out
of the state machine (it would differ on every member). The member that accepts UserAdd
or UserChangePassword hashes the password and proposes only the hash; Authenticate
verifies on the member the client talks to. Cost: n=2^14, r=8, p=1 (scrypt's interactive
parameters), about 16 MiB and some 50 ms of CPU per hash, run in a thread so the member's
loop keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets

from coord.raft.v1 import command_pb2

LOG2_N, R, P = 14, 8, 1
MAX_PASSWORD_BYTES = 1024


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * r * n + (1 << 20), dklen=32)


def hash_password(password: str) -> command_pb2.PasswordHash:
    salt = os.urandom(16)
    return command_pb2.PasswordHash(salt=salt, hash=_scrypt(password, salt, LOG2_N, R, P), log2_n=LOG2_N, r=R, p=P)


def verify_password(password: str, stored: command_pb2.PasswordHash) -> bool:
    computed = _scrypt(password, stored.salt, stored.log2_n, stored.r, stored.p)
    return hmac.compare_digest(computed, stored.hash)


async def hash_password_async(password: str) -> command_pb2.PasswordHash:
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password: str, stored: command_pb2.PasswordHash) -> bool:
    return await asyncio.to_thread(verify_password, password, stored)


def new_token() -> str:
    """A bearer token: 256 random bits, URL-safe text."""
    return secrets.token_urlsafe(32)


def token_sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
