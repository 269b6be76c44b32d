"""The contact's time zone as the send gate uses it (R-S4 quiet hours, R-S9): their own, else their number's.

``contact_zone(own, number)`` answers ``(zone, derived)``:

- the contact's own IANA zone (``contact.timezone`` of a ``contact.*`` event) when it names one this
  installation's tz database knows — ``derived`` False;
- else the zone of the number's prefix from ``phonenumbers`` (``scrm_common.phones.zone_for_phone``) —
  ``derived`` True. For a prefix phonenumbers maps to several zones (``+7 9…`` Russia's mobiles, ``+61 4…``
  Australia's, toll-free ``+1 800``) it is the FIRST zone of phonenumbers' own tuple, which phonenumbers
  keeps sorted by name (``Asia/Almaty`` before ``Europe/Moscow``; ``Australia/Adelaide`` before
  ``Australia/Sydney``). That choice is deterministic — the same number gives the same zone on every
  replica, every run and every replay, for one locked phonenumbers version — but it is not the most
  populous zone: a shop that knows better sends the contact's ``timezone``, which always wins;
- else (no number, a number phonenumbers cannot parse or places in no zone, or a zone the tz database
  lacks) ``UTC`` — ``derived`` True.

Pure: phonenumbers' metadata and the tz database are read-only data shipped with the code.
"""

from __future__ import annotations

from typing import Final

from scrm_common.phones import is_iana_zone, zone_for_phone

UTC_ZONE: Final = "UTC"


def number_zone(number: str | None) -> str:
    """The IANA zone of ``number``'s prefix (a match key or wa_id: digits, no ``+``; an E.164 number
    works too): phonenumbers' first zone (see the module docstring), ``UTC`` when none is known or the
    tz database lacks it. Never raises."""
    digits = "".join(ch for ch in (number or "") if ch.isdigit())
    if not digits:
        return UTC_ZONE
    zone = zone_for_phone("+" + digits, default=UTC_ZONE)
    return zone if is_iana_zone(zone) else UTC_ZONE


def contact_zone(own: str | None, number: str | None) -> tuple[str, bool]:
    """``(zone, derived)``: the contact's ``own`` IANA zone when valid (``derived`` False), else
    ``number_zone(number)`` (``derived`` True; ``UTC`` when unknown). Never raises."""
    if own and is_iana_zone(own):
        return own, False
    return number_zone(number), True
