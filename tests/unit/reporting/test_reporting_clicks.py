"""R-R1's "clicked" counts messages: each message once, however many clicks of however many of its links, on
the day of its first click and for its flow; clicks naming no message (older events) count per event."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from reporting_factories import T0, FakeStore, clicked, event, items, sent, status

from reporting.domain.clicks import ClickSeen, click_delta, click_seen, first_click, first_clicks
from reporting.domain.messages import Metric
from reporting.domain.policy import ReportPolicy
from reporting.domain.report import build_overview
from reporting.handlers import ApplyEvents, ReportingMetrics

H = timedelta(hours=1)
D = timedelta(days=1)
DAY0 = T0.date()
CART_URL = "https://shop.example/cart?utm_source=whatsapp&utm_campaign=abandoned_cart&utm_content=stage-1"


def _handler(store: FakeStore) -> tuple[ApplyEvents, CollectorRegistry]:
    registry = CollectorRegistry()
    return ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(registry)), registry


def _click(key: str, at=T0, *, link: str = "l1", url: str = CART_URL, **kw):
    """A click of the message `key` (ingest's link.clicked naming its message)."""
    return event("link.clicked", at=at, link_id=link, url=url, idempotency_key=key, **kw)


def _clicked_by_day_and_flow(store: FakeStore) -> dict[tuple[date, str | None], int]:
    return {(c[0], c[1]): n for (_, c), n in store.counts.items() if c[2] is Metric.CLICKED and n}


# --- the pure rule -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "flow"), [
    ({"flow": "abandoned_cart", "url": "https://s.example/?utm_campaign=spring"}, "abandoned_cart"),
    ({"url": "https://s.example/?utm_campaign=spring"}, "spring"),
    ({"url": "https://s.example/", "campaign": "spring"}, "spring"),
    ({"url": "https://s.example/"}, None),
])
def test_a_click_belongs_to_the_flow_it_names_else_its_utm_campaign(data, flow):
    seen = click_seen(event("link.clicked", link_id="l1", idempotency_key="k-1", **data))
    assert seen == ClickSeen(idempotency_key="k-1", at=T0, flow=flow)


def test_a_click_naming_no_message_is_not_a_message_click():
    assert click_seen(clicked()) is None


def test_the_first_click_is_the_earliest_whatever_the_order():
    early, late = ClickSeen(idempotency_key="k", at=T0), ClickSeen(idempotency_key="k", at=T0 + H, flow="x")
    assert first_click(None, late) is late
    assert first_click(late, early) is early
    assert first_click(early, late) is early
    assert first_click(early, ClickSeen(idempotency_key="k", at=T0)) is early  # the same click again: no change


def test_a_message_clicked_counts_once_and_an_earlier_click_moves_it_to_its_day():
    first = ClickSeen(idempotency_key="k", at=T0 + D, flow="welcome")
    earlier = ClickSeen(idempotency_key="k", at=T0, flow="welcome")
    assert click_delta(None, first) == {(DAY0 + D, "welcome", Metric.CLICKED): 1}
    assert click_delta(first, earlier) == {(DAY0 + D, "welcome", Metric.CLICKED): -1,
                                           (DAY0, "welcome", Metric.CLICKED): 1}
    assert click_delta(first, first) == {}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["k-1", "k-2", "k-3"]),
                          st.integers(0, 72), st.sampled_from([None, "welcome", "cart"])), min_size=1, max_size=10),
       st.data())
def test_first_clicks_are_one_per_message_and_do_not_depend_on_order(specs, data):
    clicks = [(t, ClickSeen(idempotency_key=k, at=T0 + h * H, flow=f)) for t, k, h, f in specs]
    shuffled = data.draw(st.permutations(clicks))
    got = first_clicks(clicks)
    assert got == first_clicks(shuffled)
    assert [(t, c.idempotency_key) for t, c in got] == sorted({(t, k) for t, k, _, _ in specs})
    for t, c in got:
        assert c.at == min(x.at for u, x in clicks if (u, x.idempotency_key) == (t, c.idempotency_key))


# --- the handler -----------------------------------------------------------------------------------------

async def test_the_new_users_report_two_messages_clicked_at_most_once_each():
    """The report: abandoned_cart 'sent 2, clicked 4, click rate 2.0'; three more clicks raised clicked 5 → 8."""
    store = FakeStore()
    handle, registry = _handler(store)
    cart = {"flow": "abandoned_cart"}
    await handle(items(sent("wamid.1", **cart), sent("wamid.2", **cart),
                       status("delivered", message_id="wamid.1", at=T0 + H),
                       status("delivered", message_id="wamid.2", at=T0 + H)))
    await handle(items(*[_click("k-wamid.1", T0 + 2 * H + i * H, link=f"l{i % 2}") for i in range(3)],
                       _click("k-wamid.2", T0 + 3 * H)))
    assert store.totals()["clicked"] == 2
    await handle(items(*[_click("k-wamid.1", T0 + 6 * H + i * H) for i in range(3)]))  # one link, three more times
    assert store.totals()["clicked"] == 2
    overview = build_overview("shop", DAY0, DAY0, *await store.overview_rows("shop", DAY0, DAY0))
    flow = next(f for f in overview.flows if f.flow == "abandoned_cart")
    assert (flow.sent, flow.delivered, flow.clicked, flow.rates.click_rate) == (2, 2, 2, 1.0)
    assert registry.get_sample_value("scrm_reporting_counted_total", {"metric": "clicked"}) == 2


async def test_three_clicks_of_one_message_count_once_on_the_first_clicks_day_for_its_flow():
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(_click("k-1", T0 + D, flow="abandoned_cart")))
    await handle(items(_click("k-1", T0 + 2 * D, flow="abandoned_cart"), _click("k-1", T0, flow="abandoned_cart")))
    assert _clicked_by_day_and_flow(store) == {(DAY0, "abandoned_cart"): 1}


async def test_a_redelivered_click_changes_nothing():
    store = FakeStore()
    handle, _ = _handler(store)
    once = _click("k-1", T0, event_id="click-1")
    await handle(items(once, once))
    await handle(items(once))
    await handle(items(_click("k-2", T0 + H), once))
    assert store.totals() == {"clicked": 2}


async def test_the_same_key_in_two_tenants_is_two_messages():
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(_click("k-1"), tenant="a") + items(_click("k-1"), _click("k-1", T0 + H), tenant="b"))
    assert store.totals("a") == store.totals("b") == {"clicked": 1}


async def test_clicks_naming_no_message_still_count_per_event():
    store = FakeStore()
    handle, _ = _handler(store)
    await handle(items(clicked(), clicked(), _click("k-1"), _click("k-1")))
    assert _clicked_by_day_and_flow(store) == {(DAY0, "welcome"): 2, (DAY0, "abandoned_cart"): 1}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["k-1", "k-2", None]), st.integers(0, 72)), min_size=1, max_size=10),
       st.data(), st.integers(0, 10))
async def test_clicked_does_not_depend_on_arrival_order_batching_or_redelivery(specs, data, cut):
    events = [_click(k, T0 + h * H, event_id=f"c-{n}") if k else clicked(at=T0 + h * H, event_id=f"c-{n}")
              for n, (k, h) in enumerate(specs)]
    shuffled = data.draw(st.permutations(events))
    one, two = FakeStore(), FakeStore()
    await _handler(one)[0](items(*events))
    handle_two = _handler(two)[0]
    await handle_two(items(*shuffled[:cut]))
    await handle_two(items(*shuffled[cut:], *shuffled[:2]))  # with some redelivered
    assert _clicked_by_day_and_flow(one) == _clicked_by_day_and_flow(two)
    keys = {k for k, _ in specs if k}
    assert sum(_clicked_by_day_and_flow(one).values()) == len(keys) + sum(1 for k, _ in specs if k is None)
