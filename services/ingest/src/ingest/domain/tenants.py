"""Tenants and their API keys: the rules ingest applies to names, ids and how keys are shown (pure).

A tenant's id is what every event, key and record of it carries (`^[a-z0-9][a-z0-9-]{1,62}$`); a key has a
public id (`key_` + 12 hex digits: what lists show and `DELETE …/keys/{id}` names), a role (`events`,
`read`, `admin`) and is shown once; afterwards only its prefix (its first 12 characters) identifies it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
TENANT_ID_RULE = "must be 2 to 63 characters: lowercase letters, digits and '-', not starting with '-'"
KEY_ID_PATTERN = r"^key_[0-9a-f]{12}$"
# How many characters of a key are kept in clear to recognise it in lists (`scrm_` + 7).
KEY_PREFIX_LENGTH = 12
# What lists show for a key made before prefixes were kept.
UNKNOWN_PREFIX = "scrm_…"
# `last_used_at` moves at most this often (a write per key and minute, not per request).
LAST_USED_RESOLUTION = timedelta(minutes=1)

TenantStatus = Literal["active", "disabled"]

_TENANT_ID = re.compile(TENANT_ID_PATTERN)
_KEY_ID = re.compile(KEY_ID_PATTERN)


def tenant_id_problem(tenant: str) -> str | None:
    """Why `tenant` cannot be a tenant id (`TENANT_ID_RULE`), or None when it can."""
    return None if _TENANT_ID.fullmatch(tenant) else TENANT_ID_RULE


def is_key_id(value: str) -> bool:
    """True for a well-formed public key id (`key_3fa9c1d2e4b5`)."""
    return _KEY_ID.fullmatch(value) is not None


def key_id(random_hex: str) -> str:
    """The public id of a key from 12 random hex digits (the caller draws them); ValueError otherwise."""
    out = "key_" + random_hex
    if not is_key_id(out):
        raise ValueError(f"a key id needs 12 lowercase hex digits, got {random_hex!r}")
    return out


def key_prefix(api_key: str) -> str:
    """What is kept of a key in clear: its first `KEY_PREFIX_LENGTH` characters."""
    return api_key[:KEY_PREFIX_LENGTH]


def shown_prefix(prefix: str | None) -> str:
    """A key's prefix as lists show it (`UNKNOWN_PREFIX` for keys made before prefixes were kept)."""
    return prefix or UNKNOWN_PREFIX


def status_of(disabled_at: datetime | None) -> TenantStatus:
    """A tenant is disabled from `disabled_at` on, active while it is unset."""
    return "active" if disabled_at is None else "disabled"


def last_use_due(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether a use at `now` should be recorded: never recorded, or the record is a minute old or more."""
    return last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION
