"""Identifiers made at the edge: time-ordered payload ids, request ids, account tokens."""

from __future__ import annotations

import hashlib
import os
import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class _Entropy:
    """Random bytes from the OS, fetched 4 KiB at a time: one system call per 409 ids."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def take(self, size: int = 10) -> bytes:
        if self._at + size > len(self._pool):
            self._pool, self._at = os.urandom(4096), 0
        start, self._at = self._at, self._at + size
        return self._pool[start : self._at]


_entropy = _Entropy()


def new_payload_id(now_ms: int | None = None, entropy: bytes | None = None) -> str:
    """A ULID: 48 bits of Unix milliseconds then 80 random bits, 26 Crockford base32 chars.

    Time-ordered ids keep the log's ``UNIQUE(stream, version)`` index appends local.
    """
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    rand = _entropy.take() if entropy is None else entropy
    value = (millis << 80) | int.from_bytes(rand, "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def new_request_id() -> str:
    return _entropy.take(8).hex()


def new_account_token() -> str:
    """A secret for ``CL-X-TOKEN``: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the log and the read models keep of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()
