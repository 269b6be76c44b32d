"""One person per tenant and WhatsApp number: the aliases an event names, and whose person they are.

A person is known by aliases, each `<kind>:<value>`:

- `ext:<external_id>` — a shop's id for the person (a guest id, a customer id: several per person);
- `uid:<BSUID>` — WhatsApp's business-scoped user id;
- `wa:<wa_id>` — the number as WhatsApp gives it (kept even when the phone library rejects it);
- `tel:<E.164>` — the number as the shop gave it;
- `mk:<match key>` — `scrm_common.identity.match_key` of a phone or wa_id: both WhatsApp forms of one
  number share it (Mexico `521…`/`52…`, Brazil's 8/9-digit mobiles, Argentina `549…`/`54…`).

An event reaches the person of its strongest known *exact* alias (in the order above; a phone and a
wa_id with the same digits are one number). When its exact aliases name several persons, they were
one person all along: the others are absorbed into the strongest, and every alias the event names
belongs to it from then on. The country rules (match keys and the other WhatsApp forms of a number)
are only the fallback: they find a person when no exact alias does, and never join two persons on
their own (a Brazilian landline and the mobile with the same eight digits are two people). A
`mk:` alias another person holds stays theirs. A new person's key is the event's contact key
(external id, else phone, else `+wa_id`, else BSUID).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from scrm_common.contracts.events import Contact, ContactNumberChanged, Event
from scrm_common.identity import digits_of, is_wa_id, match_key, whatsapp_forms
from scrm_common.phones import InvalidPhoneNumber, to_e164


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def same_number_forms(number: str) -> tuple[str, ...]:
    """The digit forms WhatsApp may use for `number` (its own digits first) that share its match key.

    `whatsapp_forms` also offers the 8-digit form of every Brazilian 9-digit number, which for
    `5511934567890` is the landline `551134567890` — another number, another person; such forms are
    left out.
    """
    key = match_key(number)
    return tuple(form for form in whatsapp_forms(number) if match_key(form) == key)


def reachable_phone(wa_id: str) -> str | None:
    """The E.164 number a message to `wa_id` can be addressed to: `+wa_id` when the phone library
    accepts it, else the first other WhatsApp form of the same number that it accepts
    (`5215512345678` → `+525512345678`); None when no form is a valid number."""
    for form in same_number_forms(wa_id):
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


def _numbers(contact: Contact) -> list[str]:
    return [digits_of(number) for number in (contact.wa_id, contact.phone) if number]


def exact_lookup(contact: Contact) -> tuple[str, ...]:
    """The aliases that name exactly this contact, strongest first: its own, then each of its numbers
    as a `wa:` and as a `tel:` (a wa_id and a phone with the same digits are one number)."""
    same = [alias for digits in _numbers(contact) for alias in (f"wa:{digits}", f"tel:+{digits}")]
    return _unique([alias for alias in aliases_of(contact) if not alias.startswith("mk:")] + same)


def fallback_lookup(contact: Contact) -> tuple[str, ...]:
    """The aliases the country rules give a contact's numbers: their match keys, then the `tel:` and
    `wa:` of their other WhatsApp forms (finds a person recorded before match keys were kept)."""
    keys = [f"mk:{match_key(digits)}" for digits in _numbers(contact)]
    forms = [alias for digits in _numbers(contact) for form in same_number_forms(digits)[1:]
             for alias in (f"tel:+{form}", f"wa:{form}")]
    return _unique(keys + forms)


def lookup_aliases(contact: Contact) -> tuple[str, ...]:
    """Every alias a contact may be found by: the exact ones, then the fallback ones."""
    return _unique(list(exact_lookup(contact)) + list(fallback_lookup(contact)))


def text_aliases(identity: str) -> tuple[str, ...]:
    """The aliases to look up a person by one identity as a user types it: an external id or BSUID,
    a phone (`+4915112345678`) or a wa_id (`5215512345678` or `+5215512345678`)."""
    aliases = [f"ext:{identity}", f"uid:{identity}"]
    digits = digits_of(identity)
    if is_wa_id(digits) and identity.lstrip("+").isdigit():
        aliases += [f"wa:{digits}", f"tel:+{digits}", f"mk:{match_key(digits)}"]
        aliases += [f"tel:+{form}" for form in same_number_forms(digits)]
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


def lock_names(event: Event) -> tuple[str, ...]:
    """What a batch locks for an event: each alias it reads or writes (`touched_aliases`), a number's
    aliases (`wa:`, `tel:`, `mk:` of all its WhatsApp forms) under one name, `num:<match key>`.

    One lock per number instead of one per form keeps a batch of 500 events well inside
    PostgreSQL's shared lock table (64 × max_connections entries by default) with two consumers.
    """
    names: list[str] = []
    for alias in touched_aliases(event):
        kind, _, value = alias.partition(":")
        names.append(f"num:{match_key(value)}" if kind in ("wa", "tel", "mk") else alias)
    return _unique(names)


@dataclass(frozen=True, slots=True)
class Resolution:
    """Whose event it is: `person`'s key, the other persons it shows to be the same person
    (`absorbed`, to merge into `person`), and the aliases that are `person`'s from now on."""

    person: str
    absorbed: tuple[str, ...]
    aliases: tuple[str, ...]


def current_numbers(phone: str | None, wa_id: str | None) -> frozenset[str]:
    """The match keys of a person's current numbers (their phone and wa_id), to tell a former number."""
    return frozenset(match_key(number) for number in (phone, wa_id) if number)


def _no_numbers(_person: str) -> frozenset[str]:
    return frozenset()


def _former(alias: str, numbers: frozenset[str]) -> bool:
    """`alias` names a number its owner had, not the one they have now (`numbers`: their current ones)."""
    kind, _, value = alias.partition(":")
    return kind in ("wa", "tel", "mk") and bool(numbers) and match_key(value) not in numbers


def resolve(event: Event, known: Mapping[str, str],
            numbers_of: Callable[[str], frozenset[str]] = _no_numbers) -> Resolution | None:
    """The person an event is about, given the known aliases (alias → person key) of its tenant and
    each person's current numbers (`numbers_of`, see `current_numbers`); None for an event without a
    contact. A number change is resolved by the old identity only.

    Only exact aliases merge persons; the fallback (country rules) finds one person when nothing
    exact does, and a match key held by another person stays theirs. A number its owner no longer
    has (they changed number) that the shop gives to an external id is handed over to that person,
    not a sign that the two are one: the new holder never gets the former holder's history, and the
    former holder's messages never go to the new holder.
    """
    contact = event.contact
    if contact is None:
        return None
    shop_says = contact.external_id is not None
    persons: list[str] = []
    moved_from: list[str] = []
    for alias in exact_lookup(contact):
        owner = known.get(alias)
        if owner is None or owner in persons:
            continue
        if shop_says and _former(alias, numbers_of(owner)):
            moved_from.append(owner)
        else:
            persons.append(owner)
    moved_from = [owner for owner in _unique(moved_from) if owner not in persons]
    if not persons and not moved_from:
        persons = [known[alias] for alias in fallback_lookup(contact) if alias in known][:1]
    person = persons[0] if persons else contact.key
    absorbed = tuple(_unique(persons[1:]))

    def handed_over(alias: str) -> bool:
        owner = known.get(alias)
        return owner in moved_from and _former(alias, numbers_of(owner or ""))

    aliases = [alias for alias in event_aliases(event)
               if not alias.startswith("mk:") or known.get(alias, person) in (person, *absorbed) or handed_over(alias)]
    aliases += [alias for alias in lookup_aliases(contact) if handed_over(alias)]
    return Resolution(person, absorbed, _unique(aliases))
