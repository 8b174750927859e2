"""Secrets at rest: values the service must read back (webhook signing secrets, stored idempotent responses) are
sealed with AES-256-GCM under TIERWISE_ENCRYPTION_KEY, so a leaked table or backup alone reveals none of them.

A sealed value is b"\\x01" + a 12-byte random nonce + the ciphertext and its 16-byte tag; the leading byte names the
format, so another key or cipher can be added later without rewriting stored rows blind. `purpose` is bound as
associated data: a value sealed for one purpose does not open as another."""

import base64
import binascii
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = b"\x01"


def key_bytes(key: str) -> bytes:
    """The 32 bytes of a base64url key; ValueError otherwise (Settings calls this at start)."""
    try:
        raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("TIERWISE_ENCRYPTION_KEY is not base64url") from None
    if len(raw) != 32:
        raise ValueError("TIERWISE_ENCRYPTION_KEY must be base64url of exactly 32 bytes")
    return raw


@lru_cache(maxsize=4)
def _cipher(key: str) -> AESGCM:
    return AESGCM(key_bytes(key))


def seal(key: str, purpose: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(12)
    return FORMAT + nonce + _cipher(key).encrypt(nonce, plaintext, purpose.encode())


class CannotOpen(Exception):
    """Sealed under another key (TIERWISE_ENCRYPTION_KEY changed) or for another purpose, or altered."""


def open_sealed(key: str, purpose: str, sealed: bytes) -> bytes:
    if sealed[:1] != FORMAT:
        raise CannotOpen("unknown format")
    try:
        return _cipher(key).decrypt(sealed[1:13], sealed[13:], purpose.encode())
    except InvalidTag:
        raise CannotOpen("wrong key or purpose, or altered") from None
