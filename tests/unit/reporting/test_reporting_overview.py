"""The overview: its date range, counts per day and flow, rates with zero denominators, the handler."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from reporting_factories import (
    OTHER_PHONE,
    PHONE,
    T0,
    FakeStore,
    clicked,
    inbound,
    items,
    paid,
    sent,
    status,
)

from reporting.domain.messages import Metric
from reporting.domain.policy import ReportPolicy
from reporting.domain.report import BadRange, build_overview, rates, report_range
from reporting.handlers import ApplyEvents, ReportingMetrics

POLICY = ReportPolicy()
TODAY = date(2026, 3, 10)
H = timedelta(hours=1)


@pytest.mark.parametrize(("start", "end", "expected"), [
    (None, None, (date(2026, 3, 4), TODAY)),  # the last 7 days, today included
    (date(2026, 3, 1), None, (date(2026, 3, 1), TODAY)),
    (None, date(2026, 2, 10), (date(2026, 2, 4), date(2026, 2, 10))),
    (date(2026, 3, 1), date(2026, 3, 1), (date(2026, 3, 1), date(2026, 3, 1))),
    (date(2025, 1, 1), date(2026, 1, 1), (date(2025, 1, 1), date(2026, 1, 1))),  # 366 days
])
def test_report_range(start, end, expected):
    assert report_range(start, end, TODAY, POLICY) == expected


@pytest.mark.parametrize(("start", "end"), [
    (date(2026, 3, 2), date(2026, 3, 1)),
    (date(2025, 1, 1), date(2026, 1, 2)),  # 367 days
    (date(2026, 3, 11), None),  # from after today
])
def test_bad_report_range(start, end):
    with pytest.raises(BadRange):
        report_range(start, end, TODAY, POLICY)


@pytest.mark.parametrize(("counts", "expected"), [
    ({}, {"delivery_rate": None, "read_rate": None, "reply_rate": None, "click_rate": None, "failure_rate": None}),
    ({Metric.SENT: 100, Metric.ATTEMPTED: 100}, {"delivery_rate": 0.0, "read_rate": None, "failure_rate": 0.0}),
    ({Metric.SENT: 100, Metric.DELIVERED: 95, Metric.READ: 38, Metric.REPLIED: 19, Metric.CLICKED: 5},
     {"delivery_rate": 0.95, "read_rate": 0.4, "reply_rate": 0.2, "click_rate": 0.0526}),
    ({Metric.ATTEMPTED: 4, Metric.FAILED: 1}, {"failure_rate": 0.25, "delivery_rate": None}),
    ({Metric.CLICKED: 3}, {"click_rate": None}),
])
def test_rates_are_null_when_their_denominator_is_zero(counts, expected):
    got = rates(counts).model_dump()
    for name, value in expected.items():
        assert got[name] == value


def test_overview_lists_every_day_and_flows_with_unattributed_last():
    counts = [(date(2026, 3, 2), "welcome", "sent", 2), (date(2026, 3, 2), None, "clicked", 1),
              (date(2026, 3, 3), "cart", "sent", 1), (date(2026, 3, 3), "cart", "delivered", 1)]
    revenue = [(date(2026, 3, 3), None, "EUR", Decimal("10.50")), (date(2026, 3, 3), None, "EUR", Decimal("0.25")),
               (date(2026, 3, 3), None, "USD", Decimal("3"))]
    report = build_overview("shop", date(2026, 3, 1), date(2026, 3, 4), counts, revenue)
    body = report.model_dump(by_alias=True, mode="json")
    assert body["from"] == "2026-03-01" and body["to"] == "2026-03-04"
    assert [d["day"] for d in body["days"]] == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]
    assert body["days"][0]["sent"] == 0
    assert body["totals"]["sent"] == 3
    assert body["totals"]["revenue"] == {"EUR": "10.75", "USD": "3.00"}
    assert body["totals"]["rates"]["delivery_rate"] == round(1 / 3, 4)
    assert [f["flow"] for f in body["flows"]] == ["cart", "welcome", None]
    assert body["flows"][0]["rates"]["delivery_rate"] == 1.0


# --- the handler over an in-memory store -------------------------------------------------------------

def _handler(store):
    registry = CollectorRegistry()
    return ApplyEvents(store=store, policy=POLICY, metrics=ReportingMetrics(registry)), registry


async def test_duplicate_and_out_of_order_statuses_count_once():
    store = FakeStore()
    handle, registry = _handler(store)
    read = status("read", at=T0 + 2 * H, event_id="wh-read")
    await handle(items(read, status("delivered", at=T0 + H), read))
    await handle(items(sent(at=T0), read, status("delivered", at=T0 + H)))
    assert store.totals() == {"attempted": 1, "sent": 1, "delivered": 1, "read": 1}
    assert all(flow == "welcome" for (_, (_, flow, _)), n in store.counts.items() if n)
    assert registry.get_sample_value("scrm_reporting_counted_total", {"metric": "read"}) == 1


async def test_a_reply_within_24h_marks_the_latest_message_once():
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(sent("wamid.1", at=T0), sent("wamid.2", at=T0 + H)))
    await handle(items(inbound(at=T0 + 2 * H), inbound(at=T0 + 3 * H), inbound(at=T0 + 30 * H)))
    assert store.totals()["replied"] == 1
    assert store.msgs[("shop", "wamid.2")].replied_at == T0 + 2 * H
    assert store.msgs[("shop", "wamid.1")].replied_at is None


async def test_a_reply_processed_before_its_message_still_counts():
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(inbound(at=T0 + H)))  # the webhook's partition ran ahead
    await handle(items(sent("wamid.1", at=T0)))
    assert store.totals()["replied"] == 1


async def test_a_late_message_takes_the_reply_from_an_earlier_one():
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(sent("wamid.1", at=T0), inbound(at=T0 + 2 * H)))
    await handle(items(sent("wamid.2", at=T0 + H)))
    assert store.totals()["replied"] == 1
    assert store.msgs[("shop", "wamid.2")].replied_at == T0 + 2 * H
    assert store.msgs[("shop", "wamid.1")].replied_at is None


async def test_replies_from_another_phone_do_not_count():
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(sent("wamid.1", at=T0), inbound(at=T0 + H, phone=OTHER_PHONE)))
    assert "replied" not in store.totals()


async def test_orders_count_once_and_revenue_is_per_currency():
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(paid("A1", 10.5), paid("A1", 10.5), paid("B2", 3.0, currency="USD")))
    await handle(items(paid("A1", 10.5)))
    assert store.totals() == {"purchased": 2}
    assert {k[1][2]: str(v) for k, v in store.revenue.items()} == {"EUR": "10.50", "USD": "3.00"}


async def test_clicks_count_per_event():
    store = FakeStore()
    handle, _ = _handler(store)
    c = clicked(event_id="click-1")
    await handle(items(c, c, clicked()))
    assert store.totals() == {"clicked": 2}


async def test_tenants_are_counted_apart():
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(sent("wamid.1"), tenant="a") + items(sent("wamid.1"), tenant="b"))
    assert store.totals("a") == store.totals("b") == {"attempted": 1, "sent": 1}


_kinds = st.sampled_from(["sent", "delivered", "read", "failed", "inbound"])


@settings(max_examples=60, deadline=None)
@given(specs=st.lists(st.tuples(st.sampled_from(["wamid.1", "wamid.2", "wamid.3"]), _kinds,
                                st.integers(0, 60)), min_size=1, max_size=12),
       data=st.data(), cut=st.integers(0, 12))
async def test_counts_do_not_depend_on_arrival_order_or_batching(specs, data, cut):
    def build(spec, n):
        wamid, kind, hours = spec
        at = T0 + hours * H
        if kind == "inbound":
            return inbound(at=at, phone=PHONE, event_id=f"in-{n}")
        if kind == "sent":
            return sent(wamid, at=at, event_id=f"ev-{n}")
        return status(kind, message_id=wamid, at=at, event_id=f"ev-{n}")

    events = [build(s, n) for n, s in enumerate(specs)]
    shuffled = data.draw(st.permutations(events))
    one, two = FakeStore(), FakeStore()
    await _handler(one)[0](items(*events))
    handle_two = _handler(two)[0]
    await handle_two(items(*shuffled[:cut]))
    await handle_two(items(*shuffled[cut:], *shuffled[:2]))  # with some redelivered
    nonzero = lambda counts: {k: v for k, v in counts.items() if v}  # noqa: E731
    assert nonzero(one.counts) == nonzero(two.counts)
