"""What the dispatcher's gate pass tells the gate about a contact (issue 8 review): the zone a number falls back
to is the one the reachability record derives (the country's main zone, not phonenumbers' first), stated
preferences come from the record when it has any, else from the command, and preferred hours may end at 24:00."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from scrm_common.contracts.commands import SendMessage, TemplateMessage
from scrm_common.contracts.events import Preferences
from sender.adapters.db import Candidate, Reachability
from sender.domain.gate.decide import ContactState, GateMessage, History, gate, stated_preferences
from sender.domain.gate.verdicts import Defer
from sender.handlers import _contact_state

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _command(to: str, **extra: object) -> SendMessage:
    return SendMessage(idempotency_key="k", tenant="t", account_id="100000000000001", flow="welcome",
                       category="marketing", contact_key="c", to=to,
                       template=TemplateMessage(name="welcome", language="en", parameters=["x"]), event_id="e",
                       event_occurred_at=NOW, decided_at=NOW, **extra)  # type: ignore[arg-type]


def _candidate(to: str) -> Candidate:
    return Candidate("k", "{}", "c", to, "marketing", None, None, None, None)


def _record(**extra: object) -> Reachability:
    fields: dict[str, object] = {"opted_out_at": None, "last_inbound_at": None, "timezone": None,
                                 "zone_derived": False, "preferences": {}, "blocked_until": None} | extra
    return Reachability(**fields)  # type: ignore[arg-type]


def test_without_a_record_or_a_command_zone_the_number_gives_its_countrys_main_zone() -> None:
    for to, zone in (("+79161234567", "Europe/Moscow"), ("+525512345678", "America/Mexico_City"),
                     ("+4915112345678", "Europe/Berlin")):
        assert _contact_state(_candidate(to), _command(to), None, {}).zone == ZoneInfo(zone), to


def test_stated_preferences_come_from_the_record_when_it_has_any_else_from_the_command() -> None:
    to = "+4915112345678"
    command = _command(to, preferences=Preferences(max_promotions_per_week=1, preferred_hours="18:00-21:00"))
    state = _contact_state(_candidate(to), command, None, {})
    assert (state.max_per_week, state.preferred_hours) == (1, (time(18), time(21)))
    empty = _contact_state(_candidate(to), command, _record(), {})
    assert empty.max_per_week == 1  # a record that states nothing: the command's
    own = _contact_state(_candidate(to), command, _record(preferences={"max_promotions_per_month": 2}), {})
    assert (own.max_per_week, own.max_per_month, own.preferred_hours) == (None, 2, None)


def test_preferred_hours_ending_at_24_00_end_at_midnight() -> None:
    assert stated_preferences({"preferred_hours": "18:00-24:00"})[2] == (time(18), time(0))
    assert stated_preferences({"preferred_hours": "22:00-24:00"})[2] == (time(22), time(0))
    berlin = ZoneInfo("Europe/Berlin")
    night = datetime(2026, 12, 1, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    contact = ContactState(zone=berlin, preferred_hours=stated_preferences({"preferred_hours": "18:00-24:00"})[2])
    verdict = gate(GateMessage(flow="cart", category="marketing"), contact, History(), night)
    # allowed 08:00–22:00 narrowed to 18:00–24:00: the next 18:00 in Berlin, not 08:00
    assert verdict == Defer(datetime(2026, 12, 2, 17, 0, tzinfo=UTC), "R-S4")
