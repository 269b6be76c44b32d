"""Who an event is about: one contact whether it is named by external id or by phone.

Shop events name a contact by `external_id` (and usually its phone); WhatsApp-derived events name it
by phone alone. The phone directory maps (tenant, phone) to the contact key that owns the number, so
both identities meet on one contact.
"""

from __future__ import annotations

from scrm_common.contracts.events import Contact, Event
from segmenter.domain.features import ContactFeatures, evolve, merge

ContactRef = tuple[str, str]  # (tenant, contact key)
PhoneRef = tuple[str, str]  # (tenant, E.164 phone)


class Roster:
    """The contacts and phone numbers a batch touches, changed in memory as events are recorded."""

    def __init__(self, contacts: dict[ContactRef, ContactFeatures], phones: dict[PhoneRef, str]) -> None:
        self.contacts = contacts
        self.phones = phones

    def key_for(self, tenant: str, contact: Contact) -> str:
        """The key of the contact an event names (without changing anything)."""
        if contact.external_id is not None:
            return contact.external_id
        assert contact.phone is not None  # the contract guarantees one of the two
        return self.phones.get((tenant, contact.phone), contact.phone)

    def record(self, tenant: str, event: Event) -> str:
        """Apply `event` to its contact, joining identities first; return the contact's key."""
        contact = event.contact
        key = self.key_for(tenant, contact)
        if contact.phone is not None:
            phone_ref = (tenant, contact.phone)
            owner = self.phones.get(phone_ref)
            if owner != key and contact.external_id is not None:
                if owner is not None and owner == contact.phone and (tenant, owner) in self.contacts:
                    # The number was known alone (e.g. it wrote on WhatsApp first): absorb it.
                    absorbed = self.contacts.pop((tenant, owner))
                    self.contacts[(tenant, key)] = merge(self.contacts.get((tenant, key), ContactFeatures()),
                                                         absorbed)
                # Otherwise the number moved to another contact: the latest claim wins.
                self.phones[phone_ref] = key
            elif owner is None:
                self.phones[phone_ref] = key
        self.contacts[(tenant, key)] = evolve(self.contacts.get((tenant, key), ContactFeatures()), event)
        return key


def wanted(events: list[tuple[str, Event]]) -> tuple[set[ContactRef], set[PhoneRef]]:
    """Contact keys and phones to load before recording `events` (phone owners come on top)."""
    keys: set[ContactRef] = set()
    phones: set[PhoneRef] = set()
    for tenant, event in events:
        c = event.contact
        if c.external_id is not None:
            keys.add((tenant, c.external_id))
        if c.phone is not None:
            phones.add((tenant, c.phone))
            keys.add((tenant, c.phone))
    return keys, phones
