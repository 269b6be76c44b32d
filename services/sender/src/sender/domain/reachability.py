"""What the send gate knows about one contact (per tenant and WhatsApp number), and how each event changes it.

The sender keeps one ``Record`` per ``(tenant, number)`` — ``number`` is
``scrm_common.identity.match_key(phone or "+" + wa_id)``, one key for a phone and its WhatsApp ``wa_id`` form
— from ``scrm.events.v1`` (the sender's consumer group ``sender-evidence``). Each function below is one event's effect;
all are pure (``at`` is the event's own ``occurred_at``, an aware UTC instant) and idempotent: applying the
same event twice leaves the record as applying it once, so a redelivered or replayed batch changes nothing.

| event                                            | effect                                                   |
|--------------------------------------------------|----------------------------------------------------------|
| ``contact.created`` / ``contact.updated``        | ``with_profile``: zone (own, else derived), locale, prefs |
| ``message.inbound``                              | ``with_inbound``: the 24 h window opens at the latest one |
| ``message.inbound`` that IS a stop/start word    | also ``with_marketing_choice`` (R-S6, source keyword)     |
| ``contact.marketing_preference_changed``         | ``with_marketing_choice`` (R-S6)                          |
| ``message.status`` failed 131049                 | ``with_marketing_limit``: no marketing for 24 h           |

R-S6, the newest choice wins: a stop or resume changes the record only when it is newer (by its own time)
than the choice the record holds (``marketing_changed_at``); an older one arriving late — or the same one
again — changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final, Literal

from scrm_common.contracts.events import Contact
from scrm_common.identity import match_key
from sender.domain.gate.zone import contact_zone

# Meta's per-user marketing limit (131049): no marketing message to the user for this long.
MARKETING_LIMIT_PAUSE: Final = timedelta(hours=24)
# How long inbound messages are kept per number (R-T4.5's reply delays look back 30 days).
INBOUND_KEPT: Final = timedelta(days=35)

Choice = Literal["stop", "resume", "signup"]
# Where an opt-out was learned: the customer's STOP word, Meta's user_preferences webhook, error 131050.
Source = Literal["keyword", "user_preferences", "error_131050"]


@dataclass(frozen=True, slots=True)
class Record:
    """One contact's reachability, as stored in ``sender.reachability`` (all instants aware UTC).

    ``opted_out_at`` / ``opt_out_source``: marketing stopped (R-S6) since then and how (None: subscribed).
    ``marketing_changed_at``: the own time of the latest stop/resume applied (newest wins).
    ``last_inbound_at``: the latest inbound message (the 24 h window opens there, CLOUD-API §6.1).
    ``timezone`` / ``zone_derived``: the contact's IANA zone, and whether it was derived from the number.
    ``locale``: their language tag (``de``, ``pt_BR``). ``preferences``: their stated preferences (R-G4,
    R-S5), JSON scalars by name. ``marketing_blocked_until``: Meta's 131049 per-user limit.
    """

    opted_out_at: datetime | None = None
    opt_out_source: str | None = None
    marketing_changed_at: datetime | None = None
    last_inbound_at: datetime | None = None
    timezone: str | None = None
    zone_derived: bool = False
    locale: str | None = None
    preferences: Mapping[str, object] = field(default_factory=dict)
    marketing_blocked_until: datetime | None = None

    @property
    def opted_out(self) -> bool:
        """True while marketing is stopped (R-S6)."""
        return self.opted_out_at is not None


def with_profile(record: Record, *, number: str, timezone: str | None, locale: str | None,
                 preferences: Mapping[str, object] | None) -> Record:
    """``contact.created`` / ``contact.updated``: what the shop says about the contact.

    ``timezone``: the contact's own IANA zone, which always wins; without one the record keeps an own zone
    it already has, else derives one from ``number`` (``gate.zone.contact_zone``; ``zone_derived`` True).
    ``locale``: replaces the stored one when given. ``preferences``: the event's whole set (known keys and
    extras, None values left out) replaces the stored one — only when the event carries ``preferences``
    (pass None when it does not: an update about something else keeps them).
    """
    if timezone is None and record.timezone is not None and not record.zone_derived:
        zone, derived = record.timezone, False  # an own zone stays until the shop names another
    else:
        zone, derived = contact_zone(timezone, number)
    kept = record.preferences if preferences is None else {k: v for k, v in preferences.items() if v is not None}
    return replace(record, timezone=zone, zone_derived=derived, locale=locale or record.locale,
                   preferences=dict(kept))


def with_inbound(record: Record, at: datetime) -> Record:
    """``message.inbound`` at ``at``: the 24 h window opens at the latest inbound (the max, so an older
    message arriving late does not shorten it)."""
    latest = at if record.last_inbound_at is None else max(record.last_inbound_at, at)
    return replace(record, last_inbound_at=latest)


def with_marketing_choice(record: Record, *, choice: Choice, source: Source, at: datetime) -> tuple[Record, bool]:
    """R-S6: the contact stopped (``stop``) or resumed (``resume``; Meta's ``signup`` counts as one)
    marketing at ``at``, learned from ``source``. Returns ``(record, applied)``: ``applied`` False (record
    unchanged) when the record already holds a choice at or after ``at`` — newest wins, by its own time.

    A stop while already opted out keeps the first ``opted_out_at`` and its source; a resume clears both.
    """
    if record.marketing_changed_at is not None and at <= record.marketing_changed_at:
        return record, False
    if choice == "stop":
        if record.opted_out_at is not None:
            return replace(record, marketing_changed_at=at), True
        return replace(record, opted_out_at=at, opt_out_source=source, marketing_changed_at=at), True
    return replace(record, opted_out_at=None, opt_out_source=None, marketing_changed_at=at), True


def with_marketing_limit(record: Record, at: datetime) -> Record:
    """``message.status`` failed with 131049 at ``at`` (Meta's per-user marketing limit): no marketing to the
    number before ``at`` + 24 h (the later of that and any block already stored)."""
    until = at + MARKETING_LIMIT_PAUSE
    if record.marketing_blocked_until is not None and record.marketing_blocked_until >= until:
        return record
    return replace(record, marketing_blocked_until=until)


def number_of(contact: Contact | None) -> str | None:
    """The contact's WhatsApp number key: `match_key(phone or "+" + wa_id)`; None when it names neither."""
    if contact is None:
        return None
    raw = contact.phone or (f"+{contact.wa_id}" if contact.wa_id else None)
    if raw is None:
        return None
    return match_key(raw) or None


def with_number_change(new: Record, old: Record) -> Record:
    """``contact.number_changed``: the customer moved WhatsApp from the number of ``old`` to the number of
    ``new``; what they told us stays theirs. The new number's record takes the marketing choice (R-S6) of the
    two that is newer by its own time, stated preferences and locale where it has none, the old record's own
    (not derived) zone where it has no own one, and the later 131049 block. The 24 h window does not move:
    WhatsApp opens it per number."""
    if old.marketing_changed_at is not None and (
            new.marketing_changed_at is None or old.marketing_changed_at > new.marketing_changed_at):
        new = replace(new, opted_out_at=old.opted_out_at, opt_out_source=old.opt_out_source,
                      marketing_changed_at=old.marketing_changed_at)
    if (new.timezone is None or new.zone_derived) and old.timezone is not None and not old.zone_derived:
        new = replace(new, timezone=old.timezone, zone_derived=False)
    blocks = [t for t in (new.marketing_blocked_until, old.marketing_blocked_until) if t is not None]
    return replace(new, preferences=new.preferences or old.preferences, locale=new.locale or old.locale,
                   marketing_blocked_until=max(blocks, default=None))
