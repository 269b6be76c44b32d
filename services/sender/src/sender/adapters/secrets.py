"""Access tokens at rest: Fernet (the `cryptography` package) under the keys of `SCRM_SECRETS_KEY`.

`SCRM_SECRETS_KEY` is a comma-separated list of Fernet keys (32 url-safe base64-encoded bytes each, as
`Fernet.generate_key()` makes them): the first encrypts, every one decrypts (`MultiFernet`). Rotating:

1. every replica gets `old,new` (both decrypt; still encrypting with `old`),
2. then `new,old`: at its start each sender re-encrypts every row not under `new`,
3. once the start log says no row is left under `old`, `new` alone.

Without a key (dev and test only) a fixed, public development key is used and a warning logged; with
`SCRM_ENV=prod` the settings refuse an empty value, and every environment refuses a malformed one.

With keys set, the development key stays as the LAST, decrypt-only key in every environment: going from an
empty `SCRM_SECRETS_KEY` to a real one then loses no token — the start's pass re-encrypts the rows under the
development key under the first key (and says how many). The development key is public, so a row under it
is as good as plain: reading it is no weaker than reading the plain rows of earlier releases, which the same
pass encrypts; nothing is ever encrypted with it while a key is set. Every start logs how many rows are left
not under the first key (0 included): step 3 of rotating waits for that 0.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# Derived from a public string: it keeps tokens out of plain sight in a dev database, nothing more.
DEV_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"scrm development secrets key; never for production").digest())
_CACHE_SIZE = 1024


class UnreadableToken(Exception):
    """A stored token no configured key decrypts (its key left `SCRM_SECRETS_KEY`, or the row is damaged)."""


def parse_keys(raw: str) -> list[bytes]:
    """The Fernet keys of a `SCRM_SECRETS_KEY` value, first (encrypting) key first; [] for an empty value.

    Raises ValueError naming the position of a malformed key (never the key itself).
    """
    keys: list[bytes] = []
    for position, part in enumerate((p.strip() for p in raw.split(",")), start=1):
        if not part:
            if raw.strip():
                raise ValueError(f"SCRM_SECRETS_KEY: key {position} is empty")
            continue
        try:
            Fernet(part.encode())
        except (ValueError, TypeError):
            raise ValueError(f"SCRM_SECRETS_KEY: key {position} is not a Fernet key (32 url-safe base64 "
                             "bytes, e.g. from `python -c 'from cryptography.fernet import Fernet; "
                             "print(Fernet.generate_key().decode())'`)") from None
        keys.append(part.encode())
    return keys


class TokenCipher:
    """Encrypts access tokens for storage and decrypts them for the Cloud API call.

    `keys`: Fernet keys, the first encrypting. Decrypted tokens are kept in a small in-memory cache keyed
    by the stored value (the dispatcher reads an account's token on every pass).
    """

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("TokenCipher needs at least one key")
        self._primary = Fernet(keys[0])
        self._dev = Fernet(DEV_KEY) if DEV_KEY in keys[1:] else None
        self._all = MultiFernet([Fernet(k) for k in keys])
        self._cache: OrderedDict[str, str] = OrderedDict()

    @classmethod
    def from_setting(cls, raw: str) -> tuple[TokenCipher, bool]:
        """The cipher for a `SCRM_SECRETS_KEY` value and whether it fell back to the dev key (empty value).

        With keys, the dev key is added as the last, decrypt-only key (rows written without a key are
        re-encrypted at start, never left unreadable)."""
        keys = parse_keys(raw)
        if not keys:
            return cls([DEV_KEY]), True
        return cls(keys + ([DEV_KEY] if DEV_KEY not in keys else [])), False

    def under_dev_key(self, stored: str) -> bool:
        """True when `stored` is encrypted under the public development key (and that is not the first key)."""
        if self._dev is None:
            return False
        try:
            self._dev.decrypt(stored.encode())
        except InvalidToken:
            return False
        return True

    def encrypt(self, token: str) -> str:
        """The value to store for `token` (a Fernet token, ASCII)."""
        return self._primary.encrypt(token.encode()).decode()

    def decrypt(self, stored: str) -> str:
        """The token a stored value holds; raises `UnreadableToken`."""
        hit = self._cache.get(stored)
        if hit is not None:
            self._cache.move_to_end(stored)
            return hit
        try:
            token = self._all.decrypt(stored.encode()).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise UnreadableToken("no key of SCRM_SECRETS_KEY decrypts this token") from None
        self._cache[stored] = token
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return token

    def is_current(self, stored: str) -> bool:
        """True when `stored` is encrypted under the first (encrypting) key."""
        try:
            self._primary.decrypt(stored.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, stored: str) -> str:
        """`stored` re-encrypted under the first key; raises `UnreadableToken`."""
        try:
            return self._all.rotate(stored.encode()).decode()
        except InvalidToken:
            raise UnreadableToken("no key of SCRM_SECRETS_KEY decrypts this token") from None
