"""Finding a customer's messages by the phone they were sent to (R-S8 send log), whatever form it is given in."""

from __future__ import annotations

import re

from scrm_common.identity import digits_of, whatsapp_forms
from scrm_common.phones import InvalidPhoneNumber, to_e164

# Text that can only be a phone number: digits with the usual separators, an optional leading `+`.
_PHONE_TEXT = re.compile(r"^\+?[0-9 ()./-]{5,40}$")


def phone_forms(contact: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The numbers a send-log `contact` query may mean: (E.164 numbers sent to, WhatsApp ids answered).

    `+49 151 1234-5678`, `0049 151 12345678`, `4915112345678` (a bare `wa_id`) all give
    `(("+4915112345678",), ("4915112345678",))`; every WhatsApp form of the number sharing its
    `scrm_common.identity.match_key` is included (Mexico 521…/52…, Brazil 8/9-digit mobiles,
    Argentina 549…/54…). Text that is not a phone number (a shop's customer id, an e-mail) gives
    two empty tuples; never raises.
    """
    text = contact.strip()
    if not _PHONE_TEXT.match(text):
        return (), ()
    digits = digits_of(text[2:] if text.startswith("00") else text)
    if len(digits) < 5:
        return (), ()
    forms = list(whatsapp_forms(digits))
    try:
        e164 = to_e164("+" + digits)
    except InvalidPhoneNumber:
        pass
    else:
        forms += [f for f in whatsapp_forms(e164) if f not in forms]
    return tuple(dict.fromkeys("+" + f for f in forms)), tuple(forms)
