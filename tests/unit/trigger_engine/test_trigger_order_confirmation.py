"""R-T2 order confirmation: one per order, delivery window by region, a body under 210 characters."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sender.domain.templates import Template, render
from trigger_engine.domain.copy import day, money
from trigger_engine.domain.decide import decide
from trigger_engine.domain.decisions import Send, Suppress
from trigger_engine.domain.model import OrderConfirmationConfig
from trigger_engine.domain.order_confirmation import delivery_window, item_summary

from .factories import PHONE, T0, TENANT, catalog_body, config, item, payment, profile


def rendered(send: Send) -> str:
    template = Template(send.template, send.language, "utility", catalog_body(send.template, send.language))
    return render(template, send.parameters)


@pytest.mark.parametrize(("region", "window"), [
    ("DE", (1, 3)), ("de", (1, 3)), (None, (1, 3)),
    ("FR", (3, 5)), ("AT", (3, 5)), ("pl", (3, 5)), ("EU", (3, 5)),
    ("US", (5, 7)), ("CH", (5, 7)), ("GB", (5, 7)), ("CN", (5, 7)),
])
def test_delivery_window_is_base_days_by_region_plus_two_buffer_days(region, window):
    assert delivery_window(region, OrderConfirmationConfig()) == window


def test_delivery_window_follows_a_tenants_home_region():
    assert delivery_window("FR", OrderConfirmationConfig(home_region="FR")) == (1, 3)
    assert delivery_window("DE", OrderConfirmationConfig(home_region="FR")) == (5, 7)


@pytest.mark.parametrize(("amount", "currency", "language", "text"), [
    (149.90, "EUR", "en_US", "€149.90"),
    (149.90, "EUR", "de", "149,90 €"),
    (1234.5, "EUR", "en_US", "€1,234.50"),
    (1234.5, "EUR", "de", "1.234,50 €"),
    (0.0, "EUR", "de", "0,00 €"),
    (9.99, "USD", "en_US", "$9.99"),
    (9.99, "GBP", "de", "9,99 £"),
    (10.0, "CHF", "en_US", "CHF 10.00"),
    (10.0, "CHF", "de", "10,00 CHF"),
    (5.0, "PLN", "en_US", "PLN 5.00"),
    (5.0, "PLN", "de", "5,00 PLN"),
])
def test_money_is_formatted_for_the_language(amount, currency, language, text):
    assert money(amount, currency, language) == text


@pytest.mark.parametrize(("language", "text"), [("de", "29.11.2026"), ("en_US", "2026-11-29")])
def test_day_is_formatted_for_the_language(language, text):
    assert day(T0.replace(year=2026, month=11, day=29).date(), language) == text


def test_payment_sends_one_utility_confirmation_with_all_parts():
    event = payment(items=[item("Trail shoes", 99.0), item("Socks", 5.0, 2)], region="FR")
    (decision,) = decide(profile(), event, T0 + timedelta(seconds=2), config())
    assert isinstance(decision, Send)
    assert decision.flow == "order_confirmation"
    assert decision.category == "utility"
    assert decision.to == PHONE
    assert decision.template == "order_confirmation"
    assert decision.language == "en_US"
    assert decision.parameters == (
        "A-1001", "1× Trail shoes, 2× Socks", "€149.90", "€23.93", "€4.90", "3–5",
        "https://shop.example/t/A-1001", "https://shop.example/help",
    )
    body = rendered(decision)
    assert "Arrives within 3–5 working days" in body
    assert len(body) < 210


def test_german_contact_gets_german_confirmation_with_german_money():
    (decision,) = decide(profile(locale="de-DE"), payment(items=[item("Schuhe", 99.0)]), T0, config())
    assert isinstance(decision, Send)
    assert decision.language == "de"
    assert decision.parameters[2:6] == ("149,90 €", "23,93 €", "4,90 €", "1–3")
    assert rendered(decision).startswith("Bestellung A-1001 bestätigt: 1× Schuhe.")


def test_idempotency_key_is_per_order_whatever_event_or_contact_identity_reports_it():
    by_external_id = payment(event_id="gw-1", external_id="cust-1", phone=None)
    by_phone = payment(event_id="gw-2-retry", external_id=None, phone=PHONE)
    (first,) = decide(profile("cust-1"), by_external_id, T0, config())
    (second,) = decide(profile(PHONE), by_phone, T0 + timedelta(days=3), config(
        order_confirmation=OrderConfirmationConfig(expire_after=timedelta(days=7))))
    assert first.idempotency_key == second.idempotency_key == f"{TENANT}|order_confirmation|A-1001"


def test_different_orders_have_different_keys():
    (a,) = decide(profile(), payment(order_id="A-1"), T0, config())
    (b,) = decide(profile(), payment(order_id="A-2"), T0, config())
    assert a.idempotency_key != b.idempotency_key


@pytest.mark.parametrize(("age", "sent"), [
    (timedelta(0), True),
    (timedelta(minutes=2), True),
    (timedelta(hours=24), True),
    (timedelta(hours=24, seconds=1), False),
    (timedelta(days=3), False),
])
def test_confirmation_expires_a_day_after_the_payment(age, sent):
    (decision,) = decide(profile(), payment(), T0 + age, config())
    if sent:
        assert isinstance(decision, Send)
    else:
        assert isinstance(decision, Suppress)
        assert decision.reason.startswith("expired")
        assert decision.idempotency_key == f"{TENANT}|order_confirmation|A-1001"


def test_contact_without_phone_is_suppressed_with_a_reason():
    (decision,) = decide(profile(phone=None), payment(phone=None), T0, config())
    assert isinstance(decision, Suppress)
    assert "phone" in decision.reason


def test_disabled_flow_is_suppressed():
    cfg = config(order_confirmation=OrderConfirmationConfig(enabled=False))
    (decision,) = decide(profile(), payment(), T0, cfg)
    assert isinstance(decision, Suppress)
    assert decision.reason == "flow disabled"


def test_item_line_shows_the_three_most_valuable_items_and_counts_the_rest():
    items = [item("Cheap", 1.0), item("Dear", 100.0), item("Middle", 10.0, 3), item("Pricey", 50.0),
             item("Tiny", 0.5)]
    line = item_summary(payment(items=items), OrderConfirmationConfig(), "en_US", budget=200)
    assert line == "1× Dear, 1× Pricey, 3× Middle +2 more"
    assert item_summary(payment(items=items), OrderConfirmationConfig(), "de", budget=200).endswith("+2 weitere")


def test_long_item_names_are_shortened_with_an_ellipsis():
    line = item_summary(payment(items=[item("A" * 60)]), OrderConfirmationConfig(), "en_US", budget=200)
    assert line == "1× " + "A" * 23 + "…"


@pytest.mark.parametrize(("items", "language", "line"), [
    ([], "en_US", "0 items"),
    ([], "de", "0 Artikel"),
])
def test_item_line_without_items_counts_them(items, language, line):
    assert item_summary(payment(items=items), OrderConfirmationConfig(), language, budget=50) == line


def test_item_line_that_fits_nothing_counts_the_items():
    items = [item("Jacket", 80.0), item("Scarf", 20.0, 2)]
    assert item_summary(payment(items=items), OrderConfirmationConfig(), "en_US", budget=5) == "3"


def _names_in_item_line(line: str) -> int:
    return line.count("× ")


item_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=60)
order_ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs")), min_size=1, max_size=12)
amounts = st.decimals(min_value=0, max_value="99999.99", places=2).map(float)


def _check_body(order_id, names, amount, tax, shipping, quantities, region, locale):
    items = [item(name.replace("{{", "{ {"), 1.0 + i, quantities[i]) for i, name in enumerate(names)]
    event = payment(order_id=order_id, amount=amount, tax=tax, shipping=shipping, region=region, items=items)
    (decision,) = decide(profile(locale=locale), event, T0, config())
    assert isinstance(decision, Send)
    assert decision.language == ("de" if locale else "en_US")
    body = rendered(decision)
    assert len(body) < 210, body
    assert _names_in_item_line(decision.parameters[1]) <= 3


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order_id=order_ids,
    names=st.lists(item_names, min_size=1, max_size=20),
    amount=st.decimals(min_value=0, max_value="9999.99", places=2).map(float),
    tax=st.decimals(min_value=0, max_value="999.99", places=2).map(float),
    shipping=st.decimals(min_value=0, max_value="99.99", places=2).map(float),
    quantities=st.lists(st.integers(1, 9), min_size=20, max_size=20),
    region=st.sampled_from(["DE", "FR", "US"]),
    locale=st.sampled_from([None, "de-DE"]),
)
def test_rendered_confirmation_of_everyday_orders_is_under_210_chars_with_at_most_three_items(
    order_id, names, amount, tax, shipping, quantities, region, locale
):
    _check_body(order_id, names, amount, tax, shipping, quantities, region, locale)


BUG_FALLBACK = ("item_summary's fallback ('N items' / 'N Artikel') ignores the budget: with large amounts and a "
                "12-char order id the German body reaches 210+ chars (order_confirmation.py:41-43)")


def test_confirmation_without_room_for_items_still_stays_under_210_chars():
    _check_body("000000000000", [], 1000.0, 10000.0, 10000.0, [1] * 20, "DE", "de-DE")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(order_id="000000000000", names=[], amount=1000.0, tax=10000.0, shipping=10000.0, quantities=[1] * 20,
         region="DE", locale="de-DE")
@given(
    order_id=order_ids,
    names=st.lists(item_names, max_size=20),
    amount=amounts, tax=amounts, shipping=amounts,
    quantities=st.lists(st.integers(1, 9), min_size=20, max_size=20),
    region=st.sampled_from(["DE", "FR", "US"]),
    locale=st.sampled_from([None, "de-DE"]),
)
def test_rendered_confirmation_is_under_210_chars_and_names_at_most_three_items(
    order_id, names, amount, tax, shipping, quantities, region, locale
):
    _check_body(order_id, names, amount, tax, shipping, quantities, region, locale)


def test_item_name_with_braces_does_not_block_the_confirmation():
    (decision,) = decide(profile(), payment(items=[item("Mug {{logo}} edition", 12.0)]), T0, config())
    assert isinstance(decision, Send)
    assert "Mug" in rendered(decision)


def test_a_tenant_without_a_whatsapp_account_gets_a_reasoned_suppression_not_a_doomed_send():
    from dataclasses import replace

    (decision,) = decide(profile(), payment(), T0, replace(config(), account_id=None))
    assert isinstance(decision, Suppress)
    assert decision.reason == "no WhatsApp account configured for this tenant"
    assert decision.idempotency_key is not None
