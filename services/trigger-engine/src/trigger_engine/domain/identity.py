"""One person per tenant and WhatsApp number: the aliases an event names, and whose person they are.

A person is known by aliases, each `<kind>:<value>`:

- `ext:<external_id>` — a shop's id for the person (a guest id, a customer id: several per person);
- `uid:<BSUID>` — WhatsApp's business-scoped user id;
- `wa:<wa_id>` — the number as WhatsApp gives it (kept even when the phone library rejects it);
- `tel:<E.164>` — the number as the shop gave it;
- `mk:<match key>` — `scrm_common.identity.match_key` of a phone or wa_id: both WhatsApp forms of one
  number share it (Mexico `521…`/`52…`, Brazil's 8/9-digit mobiles, Argentina `549…`/`54…`).

An event reaches the person of its strongest known alias (in the order above). When its aliases
name several persons, they were one person all along: the others are absorbed into the strongest,
and every alias the event names belongs to it from then on. A new person's key is the event's
contact key (external id, else phone, else `+wa_id`, else BSUID).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scrm_common.contracts.events import Contact, ContactNumberChanged, Event
from scrm_common.identity import digits_of, is_wa_id, match_key, whatsapp_forms
from scrm_common.phones import InvalidPhoneNumber, to_e164


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def reachable_phone(wa_id: str) -> str | None:
    """The E.164 number a message to `wa_id` can be addressed to: `+wa_id` when the phone library
    accepts it, else the first other WhatsApp form of it that it accepts (`5215512345678` →
    `+525512345678`); None when no form is a valid number."""
    for form in whatsapp_forms(wa_id):
        try:
            return to_e164("+" + form)
        except InvalidPhoneNumber:
            continue
    return None


def number_aliases(*, phone: str | None = None, wa_id: str | None = None) -> tuple[str, ...]:
    """The aliases of a phone number and/or wa_id: `wa:`, `tel:` and their match keys."""
    aliases: list[str] = []
    if wa_id:
        aliases.append(f"wa:{wa_id}")
    if phone:
        aliases.append(f"tel:{phone}")
    aliases += [f"mk:{match_key(number)}" for number in (wa_id, phone) if number]
    return _unique(aliases)


def aliases_of(contact: Contact) -> tuple[str, ...]:
    """Every alias a contact names, strongest first (see the module docstring for the order)."""
    aliases: list[str] = []
    if contact.external_id:
        aliases.append(f"ext:{contact.external_id}")
    if contact.user_id:
        aliases.append(f"uid:{contact.user_id}")
    return _unique(aliases + list(number_aliases(phone=contact.phone, wa_id=contact.wa_id)))


def lookup_aliases(contact: Contact) -> tuple[str, ...]:
    """The aliases to look a contact up by: its own, then the `tel:` of each other WhatsApp form of
    its numbers (finds a person recorded with only the shop's number, before match keys were kept)."""
    forms = [f"tel:+{form}" for number in (contact.wa_id, contact.phone) if number
             for form in whatsapp_forms(number)]
    return _unique(list(aliases_of(contact)) + forms)


def text_aliases(identity: str) -> tuple[str, ...]:
    """The aliases to look up a person by one identity as a user types it: an external id or BSUID,
    a phone (`+4915112345678`) or a wa_id (`5215512345678` or `+5215512345678`)."""
    aliases = [f"ext:{identity}", f"uid:{identity}"]
    digits = digits_of(identity)
    if is_wa_id(digits) and identity.lstrip("+").isdigit():
        aliases += [f"wa:{digits}", f"tel:+{digits}", f"mk:{match_key(digits)}"]
        aliases += [f"tel:+{form}" for form in whatsapp_forms(digits)]
    return _unique(aliases)


def event_aliases(event: Event) -> tuple[str, ...]:
    """The aliases an event makes its person's: its contact's; for `contact.number_changed` also the
    new number's (the old number stays an alias). Empty for an event without a contact."""
    if event.contact is None:
        return ()
    aliases = aliases_of(event.contact)
    if isinstance(event, ContactNumberChanged):
        new = event.data.new_wa_id
        aliases = _unique(list(aliases) + list(number_aliases(phone=reachable_phone(new), wa_id=new)))
    return aliases


def touched_aliases(event: Event) -> tuple[str, ...]:
    """Every alias resolving or recording the event reads or writes (to lock them in that order)."""
    if event.contact is None:
        return ()
    return _unique(list(lookup_aliases(event.contact)) + list(event_aliases(event)))


@dataclass(frozen=True, slots=True)
class Resolution:
    """Whose event it is: `person`'s key, the other persons it shows to be the same person
    (`absorbed`, to merge into `person`), and the aliases that are `person`'s from now on."""

    person: str
    absorbed: tuple[str, ...]
    aliases: tuple[str, ...]


def resolve(event: Event, known: Mapping[str, str]) -> Resolution | None:
    """The person an event is about, given the known aliases (alias → person key) of its tenant;
    None for an event without a contact. A number change is resolved by the old identity only."""
    if event.contact is None:
        return None
    persons = _unique([known[alias] for alias in lookup_aliases(event.contact) if alias in known])
    person = persons[0] if persons else event.contact.key
    return Resolution(person, persons[1:], event_aliases(event))
