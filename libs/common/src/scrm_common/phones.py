"""Phone-number and time-zone helpers: E.164 normalisation and a zone for a number's country."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones


class InvalidPhoneNumber(ValueError):
    """The text is not a valid international phone number."""


@lru_cache(maxsize=65_536)
def to_e164(raw: str) -> str:
    """Normalise a phone number to E.164 (`+4915112345678`); raise InvalidPhoneNumber otherwise.

    Cached: every event and command carries a phone, and parsing one costs tens of microseconds.
    """
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+"):
        # Without a country code a number is ambiguous: Meta would prepend the business's own
        # country code and possibly reach the wrong person (CLOUD-API.md §1), so we refuse it.
        raise InvalidPhoneNumber("phone number must be international, starting with + and a country code")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber("not a valid phone number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def zone_for_phone(e164: str, default: str = "UTC") -> str:
    """IANA zone of a number's country (the first one when a country has several)."""
    try:
        zones = phone_timezones.time_zones_for_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return default
    for zone in zones:
        if zone != "Etc/Unknown":
            return zone
    return default


def is_iana_zone(name: str) -> bool:
    """True when `name` is a known IANA time-zone name.

    A name of a tzdata directory (`Europe`, `America/Argentina`) or of a file that is no zone (`zone.tab`) is
    not one: ZoneInfo raises IsADirectoryError (an OSError) or ValueError for those.
    """
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True
