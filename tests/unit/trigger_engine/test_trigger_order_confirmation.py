"""R-T2 order confirmation: one per order, delivery window by region, a body under 210 characters."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sender.domain.templates import Template, render
from trigger_engine.domain import decide as engine_decide
from trigger_engine.domain.decisions import Send, Suppress
from trigger_engine.domain.order_confirmation import OrderConfirmationSettings, delivery_window, item_summary
from trigger_engine.domain.text import clean_text

from .factories import PHONE, T0, TENANT, catalog_body, config, item, payment, profile


def decide(*args, **kwargs):  # type: ignore[no-untyped-def]
    """The engine's decisions about a payment that belong to the order confirmation (R-T2): a large order's
    anti-fraud timer (R-T2.5) and cart cancels are other flows' and have tests of their own."""
    return tuple(d for d in engine_decide(*args, **kwargs) if d.flow == "order_confirmation")


def rendered(send: Send) -> str:
    template = Template(send.template, send.language, "utility", catalog_body(send.template, send.language))
    return render(template, send.parameters)


@pytest.mark.parametrize(("region", "window"), [
    ("DE", (1, 3)), ("de", (1, 3)), (None, (1, 3)),
    ("FR", (3, 5)), ("AT", (3, 5)), ("pl", (3, 5)), ("EU", (3, 5)),
    ("US", (5, 7)), ("CH", (5, 7)), ("GB", (5, 7)), ("CN", (5, 7)),
])
def test_delivery_window_is_base_days_by_region_plus_two_buffer_days(region, window):
    assert delivery_window(region, OrderConfirmationSettings()) == window


def test_delivery_window_follows_a_tenants_home_region():
    assert delivery_window("FR", OrderConfirmationSettings(), "FR") == (1, 3)
    assert delivery_window("DE", OrderConfirmationSettings(), "FR") == (5, 7)


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
        OrderConfirmationSettings(expire_after_minutes=7 * 24 * 60)))
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
    cfg = config(OrderConfirmationSettings(enabled=False))
    (decision,) = decide(profile(), payment(), T0, cfg)
    assert isinstance(decision, Suppress)
    assert decision.reason == "flow disabled"


def test_item_line_shows_the_three_most_valuable_items_and_counts_the_rest():
    items = [item("Cheap", 1.0), item("Dear", 100.0), item("Middle", 10.0, 3), item("Pricey", 50.0),
             item("Tiny", 0.5)]
    line = item_summary(payment(items=items), OrderConfirmationSettings(), "en_US", budget=200)
    assert line == "1× Dear, 1× Pricey, 3× Middle +2 more"
    assert item_summary(payment(items=items), OrderConfirmationSettings(), "de", budget=200).endswith("+2 weitere")


def test_long_item_names_are_shortened_with_an_ellipsis():
    line = item_summary(payment(items=[item("A" * 60)]), OrderConfirmationSettings(), "en_US", budget=200)
    assert line == "1× " + "A" * 23 + "…"


@pytest.mark.parametrize(("language", "budget", "line"), [
    ("en_US", 50, "payment received"), ("de", 50, "Zahlung erhalten"),
    ("en_US", 10, "paid"), ("de", 10, "bezahlt"),
    ("en_US", 2, "✓"), ("de", 0, "✓"),
])
def test_an_order_without_items_is_never_zero_items(language, budget, line):
    assert item_summary(payment(items=[]), OrderConfirmationSettings(), language, budget=budget) == line


@pytest.mark.parametrize(("locale", "sentence"), [
    (None, "Order A-1001 confirmed: payment received. Total €50.00 (tax €7.98, shipping €0.00)."),
    ("de-DE", "Bestellung A-1001 bestätigt: Zahlung erhalten. Summe 50,00 € (MwSt. 7,98 €, Versand 0,00 €)."),
])
def test_a_custom_amount_order_is_confirmed_as_a_payment_not_as_zero_items(locale, sentence):
    event = payment(items=[], amount=50.0, tax=7.98, shipping=0.0)
    (decision,) = decide(profile(locale=locale), event, T0, config())
    assert isinstance(decision, Send)
    body = rendered(decision)
    assert body.startswith(sentence), body
    assert " 0 " not in body and "items" not in body and "Artikel" not in body


def test_item_line_that_fits_nothing_counts_the_items():
    items = [item("Jacket", 80.0), item("Scarf", 20.0, 2)]
    assert item_summary(payment(items=items), OrderConfirmationSettings(), "en_US", budget=5) == "3"


def _names_in_item_line(line: str) -> int:
    return line.count("× ")


item_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=60)
# Order ids as shops print them: letters, digits and the characters a URL carries unencoded. An id
# that needs encoding makes the tracking link longer (see the link tests below).
order_ids = st.text(st.sampled_from("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-_."), min_size=1, max_size=12)
amounts = st.decimals(min_value=0, max_value="99999.99", places=2).map(float)


def _check_body(order_id, names, amount, tax, shipping, quantities, region, locale):
    items = [item(name, 1.0 + i, quantities[i]) for i, name in enumerate(names)]
    event = payment(order_id=order_id, amount=amount, tax=tax, shipping=shipping, region=region, items=items)
    (decision,) = decide(profile(locale=locale), event, T0, config())
    assert isinstance(decision, Send)
    assert decision.language == ("de" if locale else "en_US")
    body = rendered(decision)
    assert len(body) < 210, body
    assert _names_in_item_line(decision.parameters[1]) <= 3
    assert all(_acceptable(p) for p in decision.parameters), decision.parameters


def _acceptable(parameter: str) -> bool:
    """What the Cloud API accepts in a body parameter (CLOUD-API.md §2.4)."""
    return (bool(parameter.strip()) and "\n" not in parameter and "\t" not in parameter
            and "     " not in parameter and "{{" not in parameter and "}}" not in parameter)


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


@pytest.mark.parametrize(("order_id", "link_end"), [
    ("#1001", "/t/%231001"),
    ("SO 1001/B", "/t/SO%201001%2FB"),
    ("A-1001", "/t/A-1001"),
    ("R&D?x=1", "/t/R%26D%3Fx%3D1"),
    ("Bestellung 7ü", "/t/Bestellung%207%C3%BC"),
    ("100%", "/t/100%25"),
])
def test_the_order_id_in_the_tracking_link_is_url_encoded_and_shown_as_given(order_id, link_end):
    (decision,) = decide(profile(), payment(order_id=order_id, items=[item("Mug")]), T0, config())
    assert isinstance(decision, Send)
    assert decision.parameters[0] == order_id
    assert decision.parameters[6].endswith(link_end)
    assert decision.parameters[6] == "https://shop.example/t/" + link_end.removeprefix("/t/")


@settings(max_examples=200, deadline=None)
@given(order_id=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=128)
       .filter(lambda s: s.strip()), names=st.lists(item_names, max_size=5))
def test_any_order_id_gives_a_working_link_and_a_body_meta_accepts(order_id, names):
    from urllib.parse import unquote

    event = payment(order_id=order_id, items=[item(n) for n in names], amount=99999.99)
    (decision,) = decide(profile(locale="de-DE"), event, T0, config())
    if not clean_text(order_id):  # nothing printable to show: not sent, and the reason says why
        assert isinstance(decision, Suppress)
        assert decision.reason == "template parameter 1 is empty once cleaned of control characters and whitespace"
        return
    assert isinstance(decision, Send)
    link = decision.parameters[6]
    assert unquote(link.removeprefix("https://shop.example/t/")) == order_id
    assert " " not in link and "#" not in link
    assert all(_acceptable(p) for p in decision.parameters), decision.parameters
    assert len(rendered(decision)) <= 1024


@pytest.mark.parametrize(("name", "shown"), [
    ("Sneaker\nLimited Edition", "1× Sneaker Limited Edition"),
    ("Mug\r\n\tBlue", "1× Mug Blue"),
    ("Cap      wide", "1× Cap wide"),
    ("\u202eSpoofed\u202c name", "1× Spoofed name"),
    ("Tea\u200b\u00adpot", "1× Teapot"),
])
def test_a_product_name_with_line_breaks_or_hidden_characters_arrives_as_one_clean_line(name, shown):
    (decision,) = decide(profile(), payment(items=[item(name, 20.0)]), T0, config())
    assert isinstance(decision, Send)
    assert decision.parameters[1] == shown
    assert _acceptable(decision.parameters[1])


@pytest.mark.parametrize(("currency", "locale", "amounts"), [
    ("JPY", None, ("¥12,800", "¥1,164", "¥0")),
    ("JPY", "de-DE", ("12.800 ¥", "1.164 ¥", "0 ¥")),
    ("KWD", None, ("KWD 12.345", "KWD 1.122", "KWD 0.000")),
    ("KWD", "de-DE", ("12,345 KWD", "1,122 KWD", "0,000 KWD")),
    ("CHF", "de-CH", ("CHF 12'800.00", "CHF 1'164.00", "CHF 0.00")),
    ("USD", "en-US", ("$12,800.00", "$1,164.00", "$0.00")),
])
def test_confirmation_amounts_use_the_currencys_minor_units_and_the_contacts_locale(currency, locale, amounts):
    tax = 1164.0 if currency != "KWD" else 1.122
    amount = 12800.0 if currency != "KWD" else 12.345
    event = payment(amount=amount, tax=tax, shipping=0.0, currency=currency, items=[item("Kimono", amount)])
    (decision,) = decide(profile(locale=locale), event, T0, config())
    assert isinstance(decision, Send)
    assert decision.parameters[2:5] == amounts
