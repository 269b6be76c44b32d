"""Who an event is about: one contact per person per tenant, whichever of its aliases the event names.

Shop events name a contact by `external_id` (and usually its phone); WhatsApp-derived events by
`wa_id` (and the phone when the library accepts it) or a BSUID; the sender's statuses by the number
sent to together with the `wa_id` WhatsApp answered with. The alias directory (`aliases.py`) maps
(tenant, alias) to the key of the contact that owns it, so all of them meet on one contact:

1. Exact aliases the event names find their owners. Several owners are one person named in several
   ways (`guest-777` and `cust-777` with one number; a phone and the wa_id learned for it): they are
   merged into one contact. A number that is another contact's *former* number (it moved away with
   `contact.number_changed` or a new phone from the shop) is not a claim of identity: when the shop
   names it for an external id, the number is handed over instead.
2. When no exact alias finds anyone, the match keys of the event's numbers do (Mexico 521… ↔ 52…).
   A match alias never joins two contacts.
3. Nobody found: a new contact, keyed by the event's external id, else its phone, else `+wa_id`,
   else its BSUID — except for statuses, number changes and preference changes, which only apply to
   a contact that exists (issue 5: the segmenter does not invent contacts from statuses).
4. The event's aliases become the contact's; a contact first known by a number takes the shop's
   external id as its key when the shop names it.

Only the platform's own messages speak about a contact (issue 5): a `message.status` applies only when
it carries the send's idempotency key. The sender's outcome events always do, and Meta echoes it as
`biz_opaque_callback_data` on every status of a message we sent; a status without it is about a message
someone else sent from the same number (an agent app), and changes nobody — not even a read receipt.

Statuses are matched by the message, never dropped for their recipient (issue 5): the sender's own
statuses ("sent"/"failed") name the person a message went to together with its idempotency key, and the
roster remembers key → contact (`recipients`, following the person through merges and re-keys). A later
status with that key whose recipient is missing (unreadable), only a BSUID nobody knows, or a wa_id that
maps to nobody applies to that contact.
"""

from __future__ import annotations

from scrm_common.contracts.events import Contact, ContactNumberChanged, Event, MessageStatus
from scrm_common.identity import match_key
from segmenter.domain.aliases import Alias, exact_aliases, match_aliases, number_contact, number_key
from segmenter.domain.features import ContactFeatures, evolve, merge

ContactRef = tuple[str, str]  # (tenant, contact key)
AliasRef = tuple[str, str]  # (tenant, alias)
MessageRef = tuple[str, str]  # (tenant, idempotency key of a send)

# The event types the segmenter reads: every one about a contact. Account and template updates are
# about a WhatsApp account, not a person; they are skipped before they are parsed.
EVENTS_READ: frozenset[str] = frozenset({
    "contact.created", "contact.updated", "cart.updated", "payment.succeeded", "payment.failed",
    "shipment.updated", "order.returned", "product.price_changed", "feedback.submitted", "message.inbound",
    "message.status", "link.clicked", "contact.marketing_preference_changed", "contact.number_changed",
})
EVENTS_IGNORED: frozenset[str] = frozenset({"account.updated", "template.updated", "account.registered",
                                           "account.removed"})
# Read, but applied only to a contact that exists: they never create one.
APPLY_ONLY: frozenset[str] = frozenset({
    "message.status", "contact.number_changed", "contact.marketing_preference_changed",
})


def ignored(event: Event) -> str | None:
    """Why `event` changes no contact whatever the roster holds, or None when it may change one.

    "not_platform": a status of a message the platform did not send (it carries no idempotency key).
    "no_contact": it names nobody (account and template events). A status of the platform's own message
    without a recipient may still change one: it is matched by its idempotency key.
    """
    if isinstance(event, MessageStatus):
        return "not_platform" if event.data.idempotency_key is None else None
    if event.contact is None:
        return "no_contact"
    return None


def message_of(event: Event) -> str | None:
    """The idempotency key of the platform's send a `message.status` reports on, None for other events."""
    return event.data.idempotency_key if isinstance(event, MessageStatus) else None


class Roster:
    """The contacts and aliases a batch touches, changed in memory as events are recorded.

    `aliases` must hold every alias of every contact in `contacts` (so a merge or re-key moves all of
    them) plus the aliases the batch's events name; `merged` lists (tenant, absorbed key, kept key).
    `recipients` maps the idempotency keys of the batch's statuses to the contact each message went to
    (their contacts must be in `contacts`); `renamed` lists every (tenant, old key, new key) of a merge
    or re-key, in order, so stored recipients not loaded can follow the person.
    """

    def __init__(self, contacts: dict[ContactRef, ContactFeatures], aliases: dict[AliasRef, str],
                 recipients: dict[MessageRef, str] | None = None) -> None:
        self.contacts = contacts
        self.aliases = aliases
        self.recipients: dict[MessageRef, str] = recipients if recipients is not None else {}
        self.merged: list[tuple[str, str, str]] = []
        self.renamed: list[tuple[str, str, str]] = []

    def record(self, tenant: str, event: Event) -> str | None:
        """Apply `event` to its contact, joining identities first; return the contact's key.

        None when the event changes no contact (`ignored`), or only applies to an existing contact and
        names none. A platform status whose recipient finds nobody applies to the contact its message
        went to (`recipients`); a status that finds its contact teaches which contact the message went to.
        """
        if ignored(event) is not None:
            return None
        contact, message = event.contact, message_of(event)
        key = self._claim(tenant, contact, create=event.type not in APPLY_ONLY) if contact is not None else None
        if key is None and message is not None:
            key = self.recipient(tenant, message)
            if key is None:
                return None
            self.contacts[(tenant, key)] = evolve(self.contacts[(tenant, key)], event, by_message=True)
            return key
        if key is None:
            return None
        if message is not None and self.recipient(tenant, message) is None:
            self.recipients[(tenant, message)] = key
        self.contacts[(tenant, key)] = evolve(self.contacts[(tenant, key)], event)
        if isinstance(event, ContactNumberChanged):
            # The new number is this person's now; the old aliases stay (late webhooks still find them).
            key = self._claim(tenant, number_contact(event.data.new_wa_id), create=True, holder=key) or key
        return key

    def owner(self, tenant: str, alias: Alias) -> str | None:
        """The key of the contact that owns `alias`, if that contact exists."""
        key = self.aliases.get((tenant, alias))
        return key if key is not None and (tenant, key) in self.contacts else None

    def recipient(self, tenant: str, message: str) -> str | None:
        """The key of the contact the send with idempotency key `message` went to, if that contact exists."""
        key = self.recipients.get((tenant, message))
        return key if key is not None and (tenant, key) in self.contacts else None

    def _former(self, tenant: str, owner: str, alias: Alias) -> bool:
        """`alias` is a number `owner` had but no longer has (its current phone/wa_id is another number)."""
        number = number_key(alias)
        if number is None:
            return False
        f = self.contacts[(tenant, owner)]
        current = {match_key(n) for n in (f.phone, f.wa_id) if n is not None}
        return bool(current) and number not in current

    def _claim(self, tenant: str, contact: Contact, *, create: bool, holder: str | None = None) -> str | None:
        """Make `contact`'s aliases one contact's, merging the people they already name; return its key.

        `holder` is a contact the aliases are claimed for (the person of a number change). None when
        nobody is found and `create` is False.
        """
        exact, fallback = exact_aliases(contact), match_aliases(contact)
        # The shop (or a number change) says who has the number now: a former number is handed over.
        authoritative = contact.external_id is not None or holder is not None
        targets: list[str] = [holder] if holder is not None else []
        moved_from: set[str] = set()
        for alias in exact:
            owner = self.owner(tenant, alias)
            if owner is None or owner in targets:
                continue
            if authoritative and self._former(tenant, owner, alias):
                moved_from.add(owner)
                continue
            targets.append(owner)
        if not targets and not moved_from:
            for alias in fallback:  # the country rules, only when nothing exact is known
                owner = self.owner(tenant, alias)
                if owner is not None and not (authoritative and self._former(tenant, owner, alias)):
                    targets.append(owner)
                    break
        if targets:
            key = self._join(tenant, targets)
        elif create:
            key = contact.key
            self.contacts.setdefault((tenant, key), ContactFeatures())
        else:
            return None
        if contact.external_id is not None and self.contacts[(tenant, key)].external_id is None \
                and (tenant, contact.external_id) not in self.contacts:
            key = self._rekey(tenant, key, contact.external_id)
        for alias in exact:
            self.aliases[(tenant, alias)] = key
        for alias in fallback:
            owner = self.owner(tenant, alias)
            if owner is None or (owner in moved_from and self._former(tenant, owner, alias)):
                self.aliases[(tenant, alias)] = key
        if moved_from:
            self._hand_over(tenant, moved_from, {number_key(a) for a in exact + fallback} - {None}, key)
        return key

    def _hand_over(self, tenant: str, moved_from: set[str], numbers: set[str | None], key: str) -> None:
        """Every alias of a handed-over number (its `wa:` forms too) is `key`'s now: left with the
        former holder, the new holder's next webhook would name both and join two people."""
        for (t, alias), owner in list(self.aliases.items()):
            if t == tenant and owner in moved_from and number_key(alias) in numbers \
                    and self._former(tenant, owner, alias):
                self.aliases[(t, alias)] = key

    def _join(self, tenant: str, targets: list[str]) -> str:
        """Merge `targets` into one contact: the first the shop named by an external id, else the first."""
        keep = next((k for k in targets if self.contacts[(tenant, k)].external_id is not None), targets[0])
        for other in targets:
            if other == keep:
                continue
            absorbed = self.contacts.pop((tenant, other))
            self.contacts[(tenant, keep)] = merge(self.contacts[(tenant, keep)], absorbed)
            self._repoint(tenant, other, keep)
            self.merged.append((tenant, other, keep))
        return keep

    def _rekey(self, tenant: str, old: str, new: str) -> str:
        """A contact known by a number takes the shop's external id as its key."""
        self.contacts[(tenant, new)] = self.contacts.pop((tenant, old))
        self._repoint(tenant, old, new)
        return new

    def _repoint(self, tenant: str, old: str, new: str) -> None:
        """Everything that named contact `old` (aliases, messages sent to it) names `new` now."""
        for ref, owner in self.aliases.items():
            if owner == old and ref[0] == tenant:
                self.aliases[ref] = new
        for message, owner in self.recipients.items():
            if owner == old and message[0] == tenant:
                self.recipients[message] = new
        self.renamed.append((tenant, old, new))


def wanted(events: list[tuple[str, Event]]) -> tuple[set[ContactRef], set[AliasRef]]:
    """Contact keys and aliases to load before recording `events` (their owners come on top)."""
    keys: set[ContactRef] = set()
    aliases: set[AliasRef] = set()
    for tenant, event in events:
        contact = event.contact
        if contact is None or ignored(event) is not None:
            continue
        named = [contact]
        if isinstance(event, ContactNumberChanged):
            named.append(number_contact(event.data.new_wa_id))
        for c in named:
            aliases.update((tenant, a) for a in exact_aliases(c) + match_aliases(c))
            keys.add((tenant, c.key))
            if c.external_id is not None:
                keys.add((tenant, c.external_id))
    return keys, aliases


def messages(events: list[tuple[str, Event]]) -> set[MessageRef]:
    """The platform sends the batch's statuses report on, whose recipients to load before recording."""
    return {(tenant, key) for tenant, event in events if (key := message_of(event)) is not None}
