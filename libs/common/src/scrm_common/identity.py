"""WhatsApp phone identities: the number a shop stores and the `wa_id` WhatsApp uses for it.

CLOUD-API.md §1: the `wa_id` can differ from the shop's E.164 number. The exact mapping is learned
from each send response (`contacts[0].wa_id` for the number sent to); these country rules are the
fallback that lets a webhook from an unseen form reach the right contact:

- Mexico (52): shops store `+52` + 10 digits; WhatsApp may use `521` + 10 digits (the legacy
  mobile prefix). Match key: `52` + 10 digits.
- Brazil (55): shops store `+55` DD `9` + 8 digits (mobiles since 2012–2016); accounts registered
  before keep `55` DD + 8 digits. Match key: `55` DD `9` + 8 digits (landlines, starting 2–5, as given).
- Argentina (54): mobiles are `+54 9` + 10 digits internationally; `wa_id`s come with and without
  the `9`. Match key: `54` + 10 digits.

Every other number is its own match key. Both forms of a person's number share one match key, so a
lookup by match key finds the contact whichever form a webhook carries.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"^[0-9]{5,20}$")


def digits_of(number: str) -> str:
    """`+52 55 1234-5678` → `525512345678`: the digits only (no validation)."""
    return "".join(ch for ch in number if ch.isdigit())


def match_key(number: str) -> str:
    """The key both WhatsApp forms of one number share (digits, no `+`), per the rules above.

    Accepts E.164 (`+5215512345678`) or a bare `wa_id` (`5215512345678`); never raises.
    """
    d = digits_of(number)
    if d.startswith("521") and len(d) == 13:
        return "52" + d[3:]  # Mexico: drop the legacy mobile `1`
    if d.startswith("55") and len(d) == 12 and d[4] in "6789":
        return d[:4] + "9" + d[4:]  # Brazil: an 8-digit mobile gains its 9th digit
    if d.startswith("549") and len(d) == 13:
        return "54" + d[3:]  # Argentina: the international mobile `9` is not part of the number
    return d


def whatsapp_forms(number: str) -> tuple[str, ...]:
    """Every digit form WhatsApp may use for `number` (its own digits first), per the rules above."""
    d = digits_of(number)
    key = match_key(d)
    forms = [d]
    if key.startswith("52") and len(key) == 12:
        forms += [key, "521" + key[2:]]
    elif key.startswith("55") and len(key) == 13 and key[4] == "9" and key[5] in "6789":
        forms += [key, key[:4] + key[5:]]  # only an 8-digit form that is a mobile maps back to this key
    elif key.startswith("54") and len(key) == 12:
        forms += [key, "549" + key[2:]]
    return tuple(dict.fromkeys(forms))


def is_wa_id(text: str) -> bool:
    """True for a plausible WhatsApp id: 5–20 digits."""
    return bool(_DIGITS.match(text))
