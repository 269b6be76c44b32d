"""The demo shop's generator: only valid events, realistic mess (duplicates, re-sends, late payments)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demo_shop.generator import DemoShop, Odds, Pace
from scrm_common.contracts.events import parse_event
from scrm_common.phones import to_e164

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def run(seed: int, steps: int, *, per_step: int = 1, step: timedelta = timedelta(seconds=0.2),
        odds: Odds | None = None, pace: Pace | None = None) -> list[tuple[datetime, dict[str, Any]]]:
    shop = DemoShop(seed, odds=odds, pace=pace)
    out = []
    now = START
    for _ in range(steps):
        now += step
        batch = shop.emit(now, per_step)
        assert len(batch) == per_step
        out.extend((now, e) for e in batch)
    return out


def ts(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32), per_step=st.integers(min_value=1, max_value=7))
def test_every_event_validates_against_the_contract(seed: int, per_step: int) -> None:
    for now, event in run(seed, 300, per_step=per_step, step=timedelta(seconds=1)):
        parsed = parse_event(event)
        assert parsed.type == event["type"]
        assert ts(event) <= now, "nothing happens in the future"


def test_the_same_seed_gives_the_same_traffic() -> None:
    assert run(42, 500) == run(42, 500)
    assert [e for _, e in run(42, 50)] != [e for _, e in run(43, 50)]


def test_traffic_covers_the_shop_event_types() -> None:
    types = Counter(e["type"] for _, e in run(1, 4000))
    for kind in ("contact.created", "contact.updated", "cart.updated", "payment.succeeded", "payment.failed",
                 "shipment.updated", "message.inbound", "feedback.submitted", "product.price_changed",
                 "order.returned"):
        assert types[kind] > 0, kind
    assert types["payment.succeeded"] > 0.1 * sum(types.values())


def test_about_three_percent_of_payments_come_twice_with_the_same_event_id() -> None:
    payments = [e for _, e in run(7, 20_000) if e["type"] == "payment.succeeded"]
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in payments:
        by_id[event["event_id"]].append(event)
    twice = [events for events in by_id.values() if len(events) > 1]
    orders = {e["data"]["order_id"] for e in payments}
    assert 0.015 < len(twice) / len(orders) < 0.05
    for copies in twice:
        assert all(c == copies[0] for c in copies), "a gateway retry is the very same event"


def test_some_payments_are_resent_minutes_later_under_a_new_event_id() -> None:
    sent = [(now, e) for now, e in run(7, 20_000) if e["type"] == "payment.succeeded"]
    first_seen: dict[str, tuple[datetime, str]] = {}
    resends = 0
    for now, event in sent:
        order, event_id = event["data"]["order_id"], event["event_id"]
        if order in first_seen and first_seen[order][1] != event_id:
            resends += 1
            assert now - first_seen[order][0] >= timedelta(minutes=2)
        first_seen.setdefault(order, (now, event_id))
    assert resends > 0


def test_some_payments_arrive_minutes_late() -> None:
    late = [(now, e) for now, e in run(3, 10_000) if e["type"] == "payment.succeeded"
            and now - ts(e) >= timedelta(minutes=2)]
    assert late


def test_shipments_progress_in_order_with_a_tracking_url() -> None:
    statuses: dict[str, list[str]] = defaultdict(list)
    for _, event in run(5, 10_000):
        if event["type"] == "shipment.updated":
            statuses[event["data"]["order_id"]].append(event["data"]["status"])
            assert event["data"]["tracking_url"].startswith("https://")
    assert any(s == ["shipped", "out_for_delivery", "delivered"] for s in statuses.values())
    order = ["shipped", "out_for_delivery", "delivered"]
    for seq in statuses.values():
        assert seq == order[: len(seq)]


def test_contacts_have_valid_mobile_numbers_locales_and_sometimes_no_name() -> None:
    created = [e for _, e in run(11, 5000, pace=Pace(contacts_per_hour=1000)) if e["type"] == "contact.created"]
    assert len(created) > 100
    for event in created:
        assert to_e164(event["contact"]["phone"]) == event["contact"]["phone"]
    prefixes = Counter(e["contact"]["phone"][:3] for e in created)
    assert prefixes["+49"] > 0 and len(prefixes) >= 4
    nameless = [e for e in created if "name" not in e["contact"]]
    assert 0 < len(nameless) < len(created) / 3
    assert {e["contact"]["locale"] for e in created} >= {"de-DE", "en-GB"}


def test_payments_carry_items_tax_shipping_and_region() -> None:
    payments = [e for _, e in run(13, 5000) if e["type"] == "payment.succeeded"]
    regions = Counter(p["data"]["region"] for p in payments)
    assert {"DE", "AT", "FR", "US"} <= set(regions)
    for payment in payments:
        data = payment["data"]
        assert 1 <= len(data["items"]) <= 5
        assert data["tax"] > 0 and data["shipping"] >= 0
        subtotal = sum(i["price"] * i["quantity"] for i in data["items"])
        assert data["amount"] >= subtotal - 0.01
    assert any(p["data"]["amount"] > 300 for p in payments), "some orders get the anti-fraud notice"


def test_inbound_chat_names_the_account() -> None:
    shop = DemoShop(1, account_id="123456789012345")
    events = shop.emit(START, 3000)
    inbound = [e for e in events if e["type"] == "message.inbound"]
    assert inbound and all(e["data"]["account_id"] == "123456789012345" and e["data"]["text"] for e in inbound)


def test_follow_ups_wait_for_their_time() -> None:
    shop = DemoShop(9)
    shop.emit(START, 200)
    assert shop.pending > 0
    later = shop.emit(START + timedelta(hours=1), shop.pending)
    assert any(e["type"] == "shipment.updated" for e in later)
