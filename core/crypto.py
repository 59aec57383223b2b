"""Encryption at rest for upstream secrets (Fernet: AES-128-CBC with HMAC-SHA256).

Keys come from ``BYTESPIKE_ENCRYPTION_KEYS`` (comma-separated; the first encrypts, all decrypt,
so keys can be rotated) or, on the embedded default, one generated into the data dir.
"""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@cache
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key) for key in settings.BYTESPIKE_ENCRYPTION_KEYS])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as error:
        raise ValueError("The secret cannot be decrypted with the configured keys.") from error


def mask(secret: str) -> str:
    """Enough to recognise a secret, never enough to use it."""
    if not secret:
        return ""
    return f"…{secret[-4:]}" if len(secret) > 8 else "…"
