"""Tolerant readers of Meta's JSON: a wrong type reads as absent, never as an exception.

Every webhook item is read through an `ItemReader`, which remembers the repairs it made (an
unreadable or out-of-range timestamp replaced by the time received, a control character or lone
surrogate replaced by U+FFFD) so the event can be produced — a customer's message is never lost for
it — and the repair still counted.

Every string that reaches an event, a metric label or a database lookup goes through `clean` (or
`ident`, `ItemReader.text`): a lone UTF-16 surrogate cannot be encoded as UTF-8 (publishing the event
or scraping /metrics would fail), PostgreSQL stores no NUL (a consumer, or the routing lookup, would
fail), and the event contract accepts no control character (`scrm_common.contracts.wire`).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from scrm_common.contracts.events import CLOCK_SKEW, LATEST, MAX_ERROR_CODE, Contact
from scrm_common.phones import InvalidPhoneNumber, to_e164

from .model import BAD_TEXT, BAD_TIMESTAMP, UNSTORABLE, clean

_WA_ID = re.compile(r"^[0-9]{5,20}$")
_USER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ID_LIMIT = 128
_EARLIEST = datetime(2009, 1, 1, tzinfo=UTC)  # WhatsApp did not exist before; earlier is a broken clock


def obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list[Any]:
    """`value` when it is a JSON array, else an empty one (callers check each item's shape)."""
    return value if isinstance(value, list) else []


def ident(value: Any, limit: int = _ID_LIMIT) -> str | None:
    """An id as a string: Meta writes some ids as numbers (`message_template_id`). None if absent/too long.

    Cleaned (`clean`): an id with a NUL could not even be looked up in PostgreSQL.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = clean(value).strip()
    return value if 0 < len(value) <= limit else None


def wa_id(value: Any) -> str | None:
    """A WhatsApp id (`wa_id`, `from`, `recipient_id`): 5–20 digits as given, else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and _WA_ID.match(value) else None


def user_id(value: Any) -> str | None:
    """A business-scoped user id (BSUID, `US.1349…`), else None."""
    return value if isinstance(value, str) and _USER_ID.match(value) else None


def phone_of(digits: str | None) -> str | None:
    """E.164 for a `wa_id` when the phone library accepts it; None otherwise (the `wa_id` is kept anyway)."""
    if digits is None:
        return None
    try:
        return to_e164("+" + digits)
    except InvalidPhoneNumber:
        return None


def error_codes(errors: Any) -> tuple[int, ...]:
    """Meta's error codes in an `errors[]` array, in order; entries without an integer code in
    0..`MAX_ERROR_CODE` are left out."""
    codes = []
    for error in items(errors):
        code = obj(error).get("code")
        if isinstance(code, str) and code.isdigit() and code.isascii():
            code = int(code)
        if isinstance(code, int) and not isinstance(code, bool) and 0 <= code <= MAX_ERROR_CODE:
            codes.append(code)
    return tuple(codes)


def first_error(errors: Any) -> dict[str, Any]:
    """The first error object of an `errors[]` array, or an empty one."""
    for error in items(errors):
        if isinstance(error, dict):
            return error
    return {}


def stable_id(*parts: Any) -> str:
    """A deterministic event id for items Meta gives no id (Meta retries deliveries: same item, same id)."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=True, default=str, separators=(",", ":"))
    return "wa:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()[:40]


def event_id(*parts: str) -> str:
    """`wa:<part>:<part>…` when it fits the contract's 128 characters, else a stable hash of the parts."""
    plain = "wa:" + ":".join(parts)
    return plain if len(plain) <= _ID_LIMIT else stable_id(*parts)


def _in_range(at: datetime) -> bool:
    try:
        return _EARLIEST <= at < LATEST
    except OverflowError:  # year 1 or 9999 pushed past Python's range by its offset
        return False


class ItemReader:
    """Reads the strings and times of one webhook item, noting the repairs needed (R: nothing invisible)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.repairs: list[str] = []

    def text(self, value: Any, limit: int = 4096) -> str | None:
        """A string as the customer wrote it: control characters and lone surrogates become U+FFFD (noted), cut."""
        if not isinstance(value, str):
            return None
        cleaned, replaced = UNSTORABLE.subn("\ufffd", value)
        if replaced:
            self.repairs.append(BAD_TEXT)
        return cleaned[:limit]

    def scalar(self, value: Any, limit: int = 1024) -> str | int | float | bool | None:
        """A JSON scalar for `details`/`referral`; strings cleaned and cut; objects and arrays are None."""
        if isinstance(value, str):
            return self.text(value, limit)
        if isinstance(value, bool | int):
            return value
        if isinstance(value, float) and value == value and abs(value) != float("inf"):
            return value
        return None

    def when(self, raw: Any) -> datetime:
        """Unix seconds (as Meta's string or a number) as an aware time; unreadable → `now`, noted.

        Before WhatsApp existed (2009) or more than the contract's CLOCK_SKEW after `now` is a broken
        clock, not a time: `now` too, noted (the event contract would refuse it).
        """
        try:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise ValueError(raw)
            at = datetime.fromtimestamp(int(raw), UTC)
        except (TypeError, ValueError, OverflowError, OSError):
            self.repairs.append(BAD_TIMESTAMP)
            return self.now
        if not _EARLIEST <= at <= self.now + CLOCK_SKEW:
            self.repairs.append(BAD_TIMESTAMP)
            return self.now
        return at

    def iso_time(self, raw: Any) -> datetime | None:
        """An ISO-8601 (`2026-04-19T13:59:20+0000`) or Unix time; None when absent; unreadable → None, noted.

        An ISO time outside the contract's range (2009 … 2100) is unreadable too: None, noted.
        """
        if raw is None or raw == "":
            return None
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return self.when(raw)
        if isinstance(raw, str):
            if raw.isdigit():
                return self.when(raw)
            try:
                at = datetime.fromisoformat(raw)
            except ValueError:
                at = None
            if at is not None and at.tzinfo is not None and _in_range(at):
                return at
        self.repairs.append(BAD_TIMESTAMP)
        return None

    def contact(self, *, wa: Any, user: Any, profile_name: Any) -> Contact | None:
        """The customer: `wa_id` as given, E.164 phone only when valid, BSUID, profile name (never `name`).

        None when the item names neither a `wa_id` nor a user id.
        """
        digits, bsuid = wa_id(wa), user_id(user)
        if digits is None and bsuid is None:
            return None
        return Contact(wa_id=digits, phone=phone_of(digits), user_id=bsuid,
                       profile_name=self.text(profile_name, 256) or None)
