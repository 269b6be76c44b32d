"""A contact's aliases: every identity that names the same person within a tenant.

CONTRACT §2: a contact is one person per tenant; the shop's external ids, E.164 phones, WhatsApp
`wa_id`s and BSUIDs are aliases of it. As strings:

- `ext:<external id>`  — each id the shop used (`guest-777` and `cust-777` can be one person)
- `phone:<E.164>`      — a number the shop or WhatsApp gave, when the phone library accepts it
- `wa:<digits>`        — a WhatsApp id as given (kept even when the phone library rejects it)
- `user:<BSUID>`       — a business-scoped user id
- `match:<digits>`     — `scrm_common.identity.match_key` of a phone or wa_id: the fallback that lets a
  webhook from `5215512345678` reach the contact stored as `+525512345678` before any send has taught
  the exact mapping (CLOUD-API.md §1: Mexico 521…, Brazil's 8-digit mobiles, Argentina 549…)

The first four are exact; a match alias only finds a contact when no exact alias does, and never
joins two contacts on its own.
"""

from __future__ import annotations

from scrm_common.contracts.events import Contact
from scrm_common.identity import digits_of, is_wa_id, match_key
from scrm_common.phones import InvalidPhoneNumber, to_e164

Alias = str

_NUMBER_KINDS = ("phone:", "wa:", "match:")


def ext(external_id: str) -> Alias:
    """The alias of a shop's external id."""
    return f"ext:{external_id}"


def valid_phone(number: str) -> str | None:
    """`number` (E.164 or bare digits) as E.164 when the phone library accepts it, else None."""
    try:
        return to_e164(number if number.startswith("+") else "+" + number)
    except InvalidPhoneNumber:
        return None


def exact_aliases(contact: Contact) -> list[Alias]:
    """The exact aliases an event's contact names, strongest first: external id, phone, wa_id, BSUID."""
    out: list[Alias] = []
    if contact.external_id is not None:
        out.append(ext(contact.external_id))
    if contact.phone is not None:
        out.append(f"phone:{contact.phone}")
    if contact.wa_id is not None:
        out.append(f"wa:{contact.wa_id}")
    if contact.user_id is not None:
        out.append(f"user:{contact.user_id}")
    return out


def match_aliases(contact: Contact) -> list[Alias]:
    """The fallback aliases of an event's contact: the match keys of its phone and wa_id."""
    keys = [match_key(n) for n in (contact.phone, contact.wa_id) if n is not None]
    return [f"match:{k}" for k in dict.fromkeys(keys)]


def number_contact(wa_id: str) -> Contact:
    """A contact named only by a WhatsApp number (a new number of `contact.number_changed`)."""
    return Contact(wa_id=wa_id, phone=valid_phone(wa_id))


def number_key(alias: Alias) -> str | None:
    """The match key of the number an alias names; None for external ids and BSUIDs."""
    for kind in _NUMBER_KINDS:
        if alias.startswith(kind):
            return match_key(alias[len(kind):])
    return None


def lookup_aliases(ref: str) -> list[Alias]:
    """What a caller's reference (external id, phone in any format, wa_id, BSUID) may be, best first.

    Used to find a contact by any alias (`GET /v1/contacts/{contact}`); the match alias comes last.
    """
    digits = digits_of(ref)
    number = is_wa_id(digits) and all(ch.isdigit() or ch in "+-() ." for ch in ref.strip())
    out: list[Alias] = [ext(ref)]
    if number:
        phone = valid_phone(ref.strip())
        if phone is not None:
            out.append(f"phone:{phone}")
        out.append(f"wa:{digits}")
    out.append(f"user:{ref}")
    if number:
        out.append(f"match:{match_key(digits)}")
    return list(dict.fromkeys(out))
