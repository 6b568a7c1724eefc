"""Provider API keys at rest: Fernet tokens, never plain text.

Keys come from ``FLEXIAI["ENCRYPTION_KEYS"]`` (first encrypts, all decrypt) or, when
that is empty, are derived from ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` so
rotating Django's secret the documented way keeps stored keys readable.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from flexiai_django.conf import get_settings
from flexiai_django.errors import ConfigurationError

_INFO = b"flexiai-django provider api keys v1"


def _derive(secret: str) -> Fernet:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(raw))


@lru_cache(maxsize=4)
def _fernet(secrets: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_derive(s) for s in secrets])


def _secrets() -> tuple[str, ...]:
    configured = tuple(get_settings().ENCRYPTION_KEYS)
    if configured:
        return configured
    return (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ()))


def encrypt(plaintext: str) -> str:
    return _fernet(_secrets()).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet(_secrets()).decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise ConfigurationError(
            "a stored provider API key cannot be decrypted with the configured keys"
        ) from None
