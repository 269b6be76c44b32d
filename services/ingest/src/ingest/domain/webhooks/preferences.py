"""The `user_preferences` field: a customer stopped or resumed marketing messages (CLOUD-API.md §5.5, §9)."""

from __future__ import annotations

from typing import Any, Literal, cast

from scrm_common.contracts.events import MarketingPreferenceChanged, MarketingPreferenceData

from .change import Change, each_item
from .messages import Profiles
from .model import NO_SENDER, UNKNOWN_TYPE, Findings
from .reading import ItemReader, ident, obj, stable_id, user_id, wa_id

FIELD = "user_preferences"
Preference = Literal["stop", "resume", "signup"]
VALUES: frozenset[str] = frozenset({"stop", "resume", "signup"})


def read_user_preferences(change: Change, out: Findings) -> None:
    """Each `value.user_preferences[]` item → `contact.marketing_preference_changed` for that customer."""
    number_id = ident(obj(change.value.get("metadata")).get("phone_number_id"))
    profiles = Profiles(change, out)
    each_item(change, out, "user_preferences", "preference",
              lambda item: _preference(item, change, out, number_id, profiles))


def _preference(item: dict[str, Any], change: Change, out: Findings, number_id: str | None,
                profiles: Profiles) -> None:
    value = item.get("value")
    label = value[:32] if isinstance(value, str) and value else "preference"
    if not isinstance(value, str) or value not in VALUES:
        out.skip(FIELD, label, UNKNOWN_TYPE, detail=f"preference value {str(value)[:64]!r}")
        return
    r = ItemReader(out.now)
    sender, bsuid = wa_id(item.get("wa_id")), user_id(item.get("user_id"))
    profile = profiles.of(sender, bsuid)
    contact = r.contact(wa=sender, user=bsuid or profile.get("user_id"),
                        profile_name=obj(profile.get("profile")).get("name"))
    if contact is None:
        out.skip(FIELD, label, NO_SENDER)
        return
    # Meta gives no id: the same item redelivered must get the same event id.
    eid = stable_id(FIELD, number_id, sender, bsuid, item.get("category"), value, item.get("timestamp"))
    event = MarketingPreferenceChanged(
        event_id=eid, type="contact.marketing_preference_changed", occurred_at=r.when(item.get("timestamp")),
        contact=contact,
        data=MarketingPreferenceData(
            category=ident(item.get("category")) or "marketing_messages", value=cast(Preference, value),
            detail=r.text(item.get("detail"), 512) or None, source="user_preferences", account_id=number_id,
        ),
    )
    out.emit(event, field=FIELD, type=label, phone_number_id=number_id, waba_id=change.waba_id, repairs=r.repairs)
