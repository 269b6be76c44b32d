"""The contact's time zone as the send gate uses it (R-S4 quiet hours, R-S9): their own, else their number's.

``contact_zone(own, number)`` answers ``(zone, derived)``:

- the contact's own IANA zone (``contact.timezone`` of a ``contact.*`` event) when it names one this
  installation's tz database knows — ``derived`` False;
- else the zone of the number's prefix from ``phonenumbers`` — ``derived`` True. Where phonenumbers
  maps a prefix to several zones (``+7 9…`` Russia's mobiles, ``+61 4…`` Australia's, toll-free
  ``+1 800``), the zone is the country's most populous one from ``MAIN_ZONE`` (Europe/Moscow,
  Australia/Sydney, America/New_York …) when phonenumbers lists it, else the first of phonenumbers'
  tuple (sorted by name). Deterministic: the same number gives the same zone on every replica, run
  and replay; a shop that knows better sends the contact's ``timezone``, which always wins;
- else (no number, a number phonenumbers cannot parse or places in no zone, or a zone the tz database
  lacks) ``UTC`` — ``derived`` True.

Pure: phonenumbers' metadata and the tz database are read-only data shipped with the code.
"""

from __future__ import annotations

from typing import Final

import phonenumbers
from phonenumbers import timezone as phone_timezones

from scrm_common.phones import is_iana_zone

UTC_ZONE: Final = "UTC"

# Countries whose numbers phonenumbers maps to several zones: the zone most of its people live in.
MAIN_ZONE: Final[dict[str, str]] = {
    "RU": "Europe/Moscow", "US": "America/New_York", "CA": "America/Toronto", "AU": "Australia/Sydney",
    "BR": "America/Sao_Paulo", "MX": "America/Mexico_City", "ID": "Asia/Jakarta", "KZ": "Asia/Almaty",
    "AR": "America/Argentina/Buenos_Aires", "CL": "America/Santiago", "CN": "Asia/Shanghai",
    "ES": "Europe/Madrid", "PT": "Europe/Lisbon", "EC": "America/Guayaquil", "MN": "Asia/Ulaanbaatar",
    "CD": "Africa/Kinshasa", "UA": "Europe/Kyiv", "NZ": "Pacific/Auckland", "FR": "Europe/Paris",
    "GB": "Europe/London", "DE": "Europe/Berlin", "PG": "Pacific/Port_Moresby", "FM": "Pacific/Pohnpei",
    "KI": "Pacific/Tarawa", "MY": "Asia/Kuala_Lumpur", "UZ": "Asia/Tashkent", "GL": "America/Nuuk",
}


def number_zone(number: str | None) -> str:
    """The IANA zone of ``number``'s prefix (a match key or wa_id: digits, no ``+``; an E.164 number
    works too): phonenumbers' first zone (see the module docstring), ``UTC`` when none is known or the
    tz database lacks it. Never raises."""
    digits = "".join(ch for ch in (number or "") if ch.isdigit())
    if not digits:
        return UTC_ZONE
    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return UTC_ZONE
    zones = [z for z in phone_timezones.time_zones_for_number(parsed) if z != "Etc/Unknown" and is_iana_zone(z)]
    main = MAIN_ZONE.get(phonenumbers.region_code_for_number(parsed) or "")
    if not zones:  # a form phonenumbers does not place (Mexico's wa_id `521…`): the country's main zone
        return MAIN_ZONE.get(phonenumbers.region_code_for_country_code(parsed.country_code or 0), UTC_ZONE)
    return main if main in zones else zones[0]


def contact_zone(own: str | None, number: str | None) -> tuple[str, bool]:
    """``(zone, derived)``: the contact's ``own`` IANA zone when valid (``derived`` False), else
    ``number_zone(number)`` (``derived`` True; ``UTC`` when unknown). Never raises."""
    if own and is_iana_zone(own):
        return own, False
    return number_zone(number), True
