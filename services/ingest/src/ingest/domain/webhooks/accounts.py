"""Account fields → `account.updated`, routed by the WABA id (`entry.id`).

- `account_update`: `event` (ACCOUNT_RESTRICTION, ACCOUNT_VIOLATION, DISABLED_UPDATE, ACCOUNT_DELETED …),
  `restrictions` from `restriction_info[]` {restriction_type, expiration}, `ban_state` from
  `ban_info.waba_ban_state` (DISABLE, SCHEDULE_FOR_DISABLE, REINSTATE); the violation type and ban
  date go into `detail`.
- `phone_number_quality_update`: `event` (THROUGHPUT_UPGRADE, FLAGGED, DOWNGRADE …), `messaging_limit`
  from `max_daily_conversations_per_business` (else the older `current_limit`), `quality` when named.
- `business_capability_update`: `messaging_limit` from `max_daily_conversations_per_business`
  (TIER_2K, or a number where −1 means unlimited).
"""

from __future__ import annotations

from typing import Any

from scrm_common.contracts.events import AccountUpdated, AccountUpdateData, Restriction

from .change import Change
from .model import Findings
from .reading import ItemReader, ident, items, obj, stable_id


def _emit(change: Change, out: Findings, r: ItemReader, **fields: Any) -> None:
    value = change.value
    data = AccountUpdateData.model_validate({
        "field": change.field, "waba_id": change.waba_id,
        "account_id": ident(obj(value.get("metadata")).get("phone_number_id")) or ident(value.get("phone_number_id")),
        "event": ident(value.get("event")),
        **fields,
    })
    event = AccountUpdated(
        event_id=stable_id(change.field, change.waba_id, change.entry_time, value), type="account.updated",
        occurred_at=r.when(change.entry_time), data=data,
    )
    out.emit(event, field=change.field, type=data.event or change.field, phone_number_id=None,
             waba_id=change.waba_id, repairs=r.repairs, detail=data.event)


def _detail(*parts: tuple[str, Any]) -> str | None:
    text = "; ".join(f"{label}: {value}" for label, value in parts if isinstance(value, str | int) and value != "")
    return text[:1024] or None


def read_account_update(change: Change, out: Findings) -> None:
    """Restrictions with their expiry, disablement and violations of the WhatsApp Business Account."""
    value = change.value
    r = ItemReader(out.now)
    restrictions = [
        Restriction(type=kind, expires_at=r.iso_time(obj(item).get("expiration")))
        for item in items(value.get("restriction_info"))[:32]
        if (kind := ident(obj(item).get("restriction_type"))) is not None
    ]
    ban = obj(value.get("ban_info"))
    violation = obj(value.get("violation_info")).get("violation_type")
    _emit(change, out, r, restrictions=restrictions,
          ban_state=ident(ban.get("waba_ban_state")),
          detail=_detail(("violation", r.text(violation, 256)), ("ban date", r.text(ban.get("waba_ban_date"), 64)),
                         ("country", r.text(value.get("country"), 8))))


def _limit(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return "UNLIMITED" if value == -1 else str(value)
    return ident(value)


def read_phone_number_quality(change: Change, out: Findings) -> None:
    """A business number's throughput or messaging limit (and, in older payloads, quality) changed."""
    value = change.value
    r = ItemReader(out.now)
    limit = _limit(value.get("max_daily_conversations_per_business")) or _limit(value.get("current_limit"))
    _emit(change, out, r, messaging_limit=limit,
          quality=ident(value.get("quality_rating")) or ident(value.get("current_quality")),
          detail=_detail(("number", r.text(value.get("display_phone_number"), 32)),
                         ("previous limit", _limit(value.get("old_limit")))))


def read_business_capability(change: Change, out: Findings) -> None:
    """The business portfolio's messaging limit or phone-number allowance changed."""
    value = change.value
    r = ItemReader(out.now)
    limit = _limit(value.get("max_daily_conversations_per_business")) or _limit(
        value.get("max_daily_conversation_per_phone"))
    _emit(change, out, r, messaging_limit=limit,
          detail=_detail(("max phone numbers per WABA", _limit(value.get("max_phone_numbers_per_waba"))),
                         ("max phone numbers per business", _limit(value.get("max_phone_numbers_per_business")))))
