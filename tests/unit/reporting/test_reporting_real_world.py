"""Issue 5 in reporting: only what the platform sent counts, statuses match by message, replies of any type
meet their message through the person's WhatsApp identity, and money stays exact in every currency."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry
from reporting_factories import T0, FakeStore, inbound, items, paid, sent, status

from reporting.domain.messages import recipient_key
from reporting.domain.policy import ReportPolicy
from reporting.domain.reads import EVENTS_IGNORED, EVENTS_READ
from reporting.domain.report import build_overview
from reporting.handlers import ApplyEvents, ReportingMetrics
from scrm_common.contracts.events import EVENT_TYPES

H = timedelta(hours=1)
MX_PHONE, MX_WA = "+525512345678", "5215512345678"


def _handler(store: FakeStore) -> tuple[ApplyEvents, CollectorRegistry]:
    registry = CollectorRegistry()
    return ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(registry)), registry


# --- reports count only what the platform sent ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["sent", "delivered", "read", "failed"])
async def test_statuses_of_wamids_the_platform_never_sent_are_not_counted(kind):
    """A number shared with an agent app: Meta reports its messages too, without our callback data."""
    store = FakeStore()
    handle, registry = _handler(store)
    await handle(items(status(kind, message_id="wamid.agent-app", phone=None, wa_id="4915112345678")))
    assert store.totals() == {}
    assert registry.get_sample_value("scrm_reporting_foreign_statuses_total", {"status": kind}) == 1
    assert store.msgs[("shop", "wamid.agent-app")].platform is False


async def test_a_reply_to_an_agent_app_message_is_not_our_reply():
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(sent("wamid.ours", at=T0)))
    await handle(items(status("sent", message_id="wamid.agent", at=T0 + H), inbound(at=T0 + 2 * H)))
    assert store.totals() == {"attempted": 1, "sent": 1}


async def test_a_webhook_status_ahead_of_the_senders_own_counts_once_the_platform_claims_the_wamid():
    store = FakeStore()
    handle, registry = _handler(store)
    await handle(items(status("delivered", message_id="wamid.1", at=T0 + H)))  # no callback data echoed
    assert store.totals() == {}
    await handle(items(sent("wamid.1", at=T0)))
    assert store.totals() == {"attempted": 1, "sent": 1, "delivered": 1}
    assert all(flow == "welcome" for (_, (_, flow, _)), n in store.counts.items() if n)
    assert registry.get_sample_value("scrm_reporting_foreign_statuses_total", {"status": "sent"}) is None


@pytest.mark.parametrize("recipient", [
    {"no_contact": True},  # unreadable recipient
    {"phone": None, "user_id": "US.13491208655302741918"},  # BSUID only
    {"phone": None, "wa_id": "551187654321"},  # a wa_id the phone library rejects
], ids=["no-contact", "bsuid-only", "invalid-number"])
async def test_statuses_are_applied_by_their_message_whatever_their_recipient(recipient):
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(sent("wamid.1", at=T0)))
    await handle(items(status("read", message_id="wamid.1", at=T0 + H, **recipient),
                       status("delivered", message_id=None, idempotency_key="k-unsent", at=T0, flow="cart",
                              **recipient)))
    assert store.totals() == {"attempted": 2, "sent": 2, "delivered": 2, "read": 1}


async def test_a_status_naming_no_message_is_skipped_and_counted():
    store = FakeStore()
    handle, registry = _handler(store)
    await handle(items(status("read", message_id=None)))
    assert store.totals() == {} and store.msgs == {}
    assert registry.get_sample_value("scrm_reporting_events_skipped_total",
                                     {"type": "message.status", "reason": "no_message_id"}) == 1


# --- replies meet their message through the person's WhatsApp identity ---------------------------------

@pytest.mark.parametrize(("phone", "wa_id", "key"), [
    (MX_PHONE, None, "525512345678"),
    (None, MX_WA, "525512345678"),
    (MX_PHONE, MX_WA, "525512345678"),
    ("+5511987654321", None, "5511987654321"),
    (None, "551187654321", "5511987654321"),  # Brazil: the 8-digit wa_id of a 9-digit mobile
    ("+5491123456789", None, "541123456789"),  # Argentina: the international mobile 9
    ("+4915112345678", "4915112345678", "4915112345678"),
    ("+14155550100", "14155550199", "14155550199"),  # the learned wa_id wins over the phone
    (None, None, None),
])
def test_recipient_key_is_the_match_key_of_the_wa_id_else_the_phone(phone, wa_id, key):
    assert recipient_key(phone, wa_id) == key


@pytest.mark.parametrize(("sent_to", "reply_from", "replied"), [
    ({"phone": MX_PHONE, "wa_id": MX_WA}, {"phone": None, "wa_id": MX_WA}, True),  # learned mapping
    ({"phone": MX_PHONE}, {"phone": None, "wa_id": MX_WA}, True),  # Mexico's rule as the fallback
    ({"phone": "+5511987654321"}, {"phone": None, "wa_id": "551187654321"}, True),  # Brazil
    ({"phone": "+5491123456789"}, {"phone": "+541123456789", "wa_id": "541123456789"}, True),  # Argentina
    ({"phone": "+14155550100", "wa_id": "14155550199"}, {"phone": None, "wa_id": "14155550199"}, True),
    ({"phone": MX_PHONE, "wa_id": MX_WA}, {"phone": None, "wa_id": "5215512345679"}, False),  # someone else
    ({"phone": "+4915112345678"}, {"phone": "+4915198765432"}, False),
], ids=["mx-learned", "mx-rule", "br-8-digit", "ar-549", "learned-beyond-rules", "mx-other", "de-other"])
async def test_a_reply_from_another_form_of_the_number_is_that_messages_reply(sent_to, reply_from, replied):
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(sent("wamid.1", at=T0, **sent_to)))
    await handle(items(inbound(at=T0 + H, **reply_from)))
    assert store.totals().get("replied", 0) == (1 if replied else 0)


async def test_acceptance_a_photo_from_the_521_wa_id_replies_to_the_confirmation_sent_to_52():
    """Issue 5: reply and read receipt of the +52… confirmation both count, though WhatsApp says 521…."""
    store = FakeStore()
    handle, _ = _handler(store)
    # The sender's outcome carries the number sent to and the wa_id of the send response.
    await handle(items(sent("wamid.oc", at=T0, flow="order_confirmation", phone=MX_PHONE, wa_id=MX_WA)))
    # Meta's webhooks name the recipient by wa_id; +5215512345678 is no valid phone for the library.
    await handle(items(status("delivered", message_id="wamid.oc", at=T0 + H, phone=None, wa_id=MX_WA,
                              idempotency_key="k-wamid.oc"),
                       status("read", message_id="wamid.oc", at=T0 + 2 * H, phone=None, wa_id=MX_WA)))
    await handle(items(inbound(at=T0 + 2 * H + timedelta(seconds=5), phone=None, wa_id=MX_WA, type_="image",
                               text="Ist der Sneaker noch in 42 da?", context_message_id="wamid.oc")))
    overview = build_overview("shop", T0.date(), T0.date(), *await store.overview_rows("shop", T0.date(), T0.date()))
    flow = next(f for f in overview.flows if f.flow == "order_confirmation")
    assert (flow.sent, flow.delivered, flow.read, flow.replied) == (1, 1, 1, 1)
    assert store.msgs[("shop", "wamid.oc")].replied_at == T0 + 2 * H + timedelta(seconds=5)


@pytest.mark.parametrize(("type_", "text"), [
    ("image", "Ist der Sneaker noch in 42 da?"),
    ("image", None),
    ("video", None),
    ("voice", None),
    ("document", "Rechnung.pdf"),
    ("sticker", None),
    ("reaction", "👍"),
    ("reaction", None),  # an un-reaction is still the customer acting on our message
    ("location", "Alexanderplatz"),
    ("contacts", None),
    ("order", None),
    ("button", "Stornieren"),
    ("interactive", "Express"),
    ("unsupported", None),
    ("text", "Danke!"),
])
async def test_a_reply_of_any_type_counts(type_, text):
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(sent("wamid.1", at=T0), inbound(at=T0 + H, type_=type_, text=text)))
    assert store.totals()["replied"] == 1


async def test_an_inbound_naming_only_a_bsuid_cannot_be_attributed_and_is_counted_as_skipped():
    store = FakeStore()
    handle, registry = _handler(store)
    await handle(items(sent("wamid.1", at=T0), inbound(at=T0 + H, phone=None, user_id="US.1349120865530274")))
    assert "replied" not in store.totals()
    assert store.inbounds == {}
    assert registry.get_sample_value("scrm_reporting_events_skipped_total",
                                     {"type": "message.inbound", "reason": "unknown_sender"}) == 1


# --- money is exact -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("amount", "currency", "shown"), [
    (1500.5, "IQD", "1500.500"), (25000.0, "HUF", "25000.00"), (12800.0, "JPY", "12800"), (12.345, "KWD", "12.345"),
])
async def test_revenue_keeps_iso_4217_digits_where_cldr_shows_none(amount, currency, shown):
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(paid("o1", amount, currency=currency)))
    body = build_overview("shop", T0.date(), T0.date(), *await store.overview_rows("shop", T0.date(), T0.date()))
    assert body.model_dump(mode="json")["totals"]["revenue"] == {currency: shown}


async def test_revenue_is_exact_from_event_to_report_in_every_currency():
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(paid("K1", 12.345, currency="KWD"), paid("K2", 0.001, currency="KWD"),
                       paid("J1", 12800.0, currency="JPY"), paid("E1", 0.1, currency="EUR"),
                       paid("E2", 0.2, currency="EUR"), paid("E3", 149.9, currency="EUR")))
    assert all(isinstance(v, Decimal) for v in store.revenue.values())
    counts, revenue = await store.overview_rows("shop", T0.date(), T0.date() + timedelta(days=1))
    body = build_overview("shop", T0.date(), T0.date() + timedelta(days=1), counts, revenue).model_dump(
        mode="json", by_alias=True)
    assert body["totals"]["revenue"] == {"EUR": "150.20", "JPY": "12800", "KWD": "12.346"}
    assert body["days"][0]["revenue"] == body["totals"]["revenue"]
    assert body["days"][1]["revenue"] == {}
    assert body["totals"]["purchased"] == 6


def test_stored_amounts_are_shown_in_minor_units_without_rounding_them_away():
    revenue = [(date(2026, 3, 1), None, "KWD", Decimal("12.345")), (date(2026, 3, 1), None, "JPY", Decimal("12800")),
               (date(2026, 3, 1), "welcome", "EUR", Decimal("99.5"))]
    body = build_overview("shop", date(2026, 3, 1), date(2026, 3, 1), [], revenue).model_dump(mode="json")
    assert body["totals"]["revenue"] == {"EUR": "99.50", "JPY": "12800", "KWD": "12.345"}


# --- the events reporting reads -------------------------------------------------------------------------

def test_every_contract_event_type_is_either_read_or_deliberately_ignored():
    assert EVENTS_READ.isdisjoint(EVENTS_IGNORED)
    assert EVENTS_READ | EVENTS_IGNORED == set(EVENT_TYPES)
