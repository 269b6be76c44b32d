"""The `messages` field: customer messages, statuses of ours, and value-level errors (CLOUD-API.md §5.3–5.4)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, cast

from scrm_common.contracts.events import (
    Contact,
    ContactNumberChanged,
    InboundData,
    MarketingPreferenceChanged,
    MarketingPreferenceData,
    MessageInbound,
    MessageStatus,
    NumberChangedData,
    StatusData,
)
from scrm_common.identity import digits_of

from .change import Change, each_item
from .inbound import Ignored, NumberChanged, Said, parse_message
from .model import ECHO, GROUP, MALFORMED, NO_SENDER, PLAYED, UNKNOWN_STATUS, VALUE_ERRORS, Findings
from .reading import ItemReader, error_codes, event_id, first_error, ident, items, obj, user_id, wa_id

FIELD = "messages"
Tracked = Literal["sent", "delivered", "read", "failed"]
TRACKED_STATUSES: frozenset[str] = frozenset({"sent", "delivered", "read", "failed"})
# Statuses Meta sends that are not a step of delivery: skipped with their reason.
IGNORED_STATUSES = {"played": PLAYED}
STOPPED_MARKETING = 131050  # CLOUD-API.md §4.3: the user stopped marketing messages from this business


class Profiles:
    """`value.contacts[]`: profile names and BSUIDs by `wa_id` and by user id."""

    def __init__(self, change: Change, out: Findings) -> None:
        self.by_wa_id: dict[str, dict[str, Any]] = {}
        self.by_user_id: dict[str, dict[str, Any]] = {}
        for entry in items(change.value.get("contacts")):
            if not isinstance(entry, dict):
                out.skip(change.field, "contact", MALFORMED, detail="contacts[] item is not an object")
                continue
            if (key := wa_id(entry.get("wa_id"))) is not None:
                self.by_wa_id[key] = entry
            if (uid := user_id(entry.get("user_id"))) is not None:
                self.by_user_id[uid] = entry

    def of(self, wa: str | None, user: str | None) -> dict[str, Any]:
        """The contacts[] entry of a sender, by `wa_id` first, then by user id."""
        return self.by_wa_id.get(wa or "") or self.by_user_id.get(user or "") or {}


def read_messages(change: Change, out: Findings) -> None:
    """Statuses, customer messages and value-level errors of one `messages` change."""
    value = change.value
    metadata = obj(value.get("metadata"))
    number_id = ident(metadata.get("phone_number_id"))
    display = metadata.get("display_phone_number")
    business = digits_of(display) if isinstance(display, str) else None
    for error in items(value.get("errors")):
        error = obj(error)
        out.skip(FIELD, "error", VALUE_ERRORS, error_codes=error_codes([error]),
                 detail=str(error.get("title") or error.get("message") or "")[:256] or None)
    profiles = Profiles(change, out)
    each_item(change, out, "statuses", "status", lambda status: _status(status, change, out, number_id))
    each_item(change, out, "messages", "message",
              lambda message: _message(message, change, out, number_id, business, profiles))


def _label(value: Any, fallback: str) -> str:
    return value[:32] if isinstance(value, str) and value else fallback


def _status(status: dict[str, Any], change: Change, out: Findings, number_id: str | None) -> None:
    kind = status.get("status")
    label = _label(kind, "status")
    codes = error_codes(status.get("errors"))
    wamid = ident(status.get("id"), 256)
    if wamid is None:
        out.skip(FIELD, label, MALFORMED, error_codes=codes, detail="status without an id")
        return
    if status.get("recipient_type") == "group":
        out.skip(FIELD, label, GROUP, error_codes=codes, detail=wamid)
        return
    if not isinstance(kind, str) or kind not in TRACKED_STATUSES:
        reason = IGNORED_STATUSES.get(kind, UNKNOWN_STATUS) if isinstance(kind, str) else UNKNOWN_STATUS
        out.skip(FIELD, label, reason, error_codes=codes, detail=wamid)
        return
    r = ItemReader(out.now)
    # Matched by its message, never dropped for its recipient: the wa_id is kept as given, a
    # BSUID-only recipient is a contact by user id, an unreadable one no contact at all.
    contact = r.contact(wa=status.get("recipient_id"), user=status.get("recipient_user_id"), profile_name=None)
    error = first_error(status.get("errors"))
    pricing = obj(status.get("pricing"))
    error_reason = r.text(error.get("title") or error.get("message"), 512) or None
    event = MessageStatus(
        event_id=event_id(wamid, kind), type="message.status", occurred_at=r.when(status.get("timestamp")),
        contact=contact,
        data=StatusData(
            message_id=wamid, status=cast(Tracked, kind), error_code=codes[0] if codes else None,
            error_reason=error_reason,
            idempotency_key=r.text(status.get("biz_opaque_callback_data"), 512) or None,
            account_id=number_id, pricing_category=ident(pricing.get("category")),
            pricing_type=ident(pricing.get("type")),
        ),
    )
    out.emit(event, field=FIELD, type=label, phone_number_id=number_id, waba_id=change.waba_id,
             repairs=r.repairs, detail=wamid)
    if kind == "failed" and STOPPED_MARKETING in codes and contact is not None:
        # A marketing template refused because the user stopped marketing: their preference, learned late.
        stop = MarketingPreferenceChanged(
            event_id=event_id(wamid, str(STOPPED_MARKETING)), type="contact.marketing_preference_changed",
            occurred_at=event.occurred_at, contact=contact,
            data=MarketingPreferenceData(value="stop", source="error_131050", detail=error_reason,
                                        account_id=number_id),
        )
        out.emit(stop, field=FIELD, type=label, phone_number_id=number_id, waba_id=change.waba_id, detail=wamid)


def _message(message: dict[str, Any], change: Change, out: Findings, number_id: str | None,
             business: str | None, profiles: Profiles) -> None:
    label = _label(message.get("type"), "message")
    codes = error_codes(message.get("errors"))
    wamid = ident(message.get("id"), 256)
    if wamid is None:
        out.skip(FIELD, label, MALFORMED, error_codes=codes, detail="message without an id")
        return
    sender, bsuid = wa_id(message.get("from")), user_id(message.get("from_user_id"))
    if sender is not None and sender == business:
        out.skip(FIELD, label, ECHO, error_codes=codes, detail=wamid)
        return
    r = ItemReader(out.now)
    outcome = parse_message(message, r)
    if isinstance(outcome, Ignored):
        out.skip(FIELD, label, outcome.reason, error_codes=codes, detail=outcome.detail or wamid)
        return
    profile = profiles.of(sender, bsuid)
    # The customer's identity; for a changed number, the old one (the new is in the event's data).
    contact = r.contact(wa=outcome.old_wa_id if isinstance(outcome, NumberChanged) else sender,
                        user=bsuid or profile.get("user_id"), profile_name=obj(profile.get("profile")).get("name"))
    if contact is None:
        out.skip(FIELD, label, NO_SENDER, error_codes=codes, detail=wamid)
        return
    occurred_at = r.when(message.get("timestamp"))
    event: MessageInbound | ContactNumberChanged
    if isinstance(outcome, NumberChanged):
        event = ContactNumberChanged(
            event_id=event_id(wamid), type="contact.number_changed", occurred_at=occurred_at,
            contact=contact,
            data=NumberChangedData(old_wa_id=outcome.old_wa_id, new_wa_id=outcome.new_wa_id, account_id=number_id,
                                   detail=outcome.detail),
        )
    else:
        event = _inbound_event(message, outcome, r, wamid=wamid, codes=codes, number_id=number_id,
                               contact=contact, occurred_at=occurred_at)
    out.emit(event, field=FIELD, type=label, phone_number_id=number_id, waba_id=change.waba_id,
             repairs=r.repairs, detail=wamid)


def _inbound_event(message: dict[str, Any], said: Said, r: ItemReader, *, wamid: str, codes: tuple[int, ...],
                   number_id: str | None, contact: Contact, occurred_at: datetime) -> MessageInbound:
    context = obj(message.get("context"))
    forwarded = context.get("forwarded") is True or context.get("frequently_forwarded") is True
    details = dict(said.details)
    if codes:  # e.g. 131051 on `unsupported`, 131052 on a media message whose download failed
        details["error_codes"] = ",".join(str(c) for c in codes)
    referral = {name: scalar for key, raw in obj(message.get("referral")).items()
                if (name := r.text(key, 128)) and (scalar := r.scalar(raw)) is not None}
    return MessageInbound(
        event_id=event_id(wamid), type="message.inbound", occurred_at=occurred_at, contact=contact,
        data=InboundData(
            type=said.type, text=said.text, account_id=number_id, message_id=wamid, reply_id=said.reply_id,
            context_message_id=said.context_message_id or ident(context.get("id"), 256),
            forwarded=True if forwarded else None, referral=dict(list(referral.items())[:32]) or None,
            details=dict(list(details.items())[:32]),
        ),
    )
