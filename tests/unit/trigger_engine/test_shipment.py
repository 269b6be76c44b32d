"""R-T3 shipment updates: one message per status step, the same status once, never a step back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scrm_common.contracts.events import ShipmentUpdated, parse_event
from trigger_engine.domain.decide import decide, evolve
from trigger_engine.domain.decisions import Send, Suppress
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.settings import TenantSettings
from trigger_engine.domain.shipment import RANKS, SLOT, ShipmentSettings, idempotency_key

from .factories import PHONE, T0, TENANT, config, profile

_n = iter(range(1, 10**9))
STATUSES = ("shipped", "out_for_delivery", "delivered")


def shipment(status: str, *, order_id: str = "A-1001", carrier: str | None = "DHL",
             tracking_url: str | None = "https://dhl.example/track?id=123", at: datetime = T0,
             phone: str | None = PHONE) -> ShipmentUpdated:
    data: dict[str, Any] = {"order_id": order_id, "status": status}
    if carrier is not None:
        data["carrier"] = carrier
    if tracking_url is not None:
        data["tracking_url"] = tracking_url
    event = parse_event({"event_id": f"s{next(_n)}", "type": "shipment.updated", "occurred_at": at.isoformat(),
                         "contact": {"external_id": "cust-1", **({"phone": phone} if phone else {})},
                         "data": data})
    assert isinstance(event, ShipmentUpdated)
    return event


def run(events: list[ShipmentUpdated], p: ContactProfile | None = None, cfg: EngineConfig | None = None,
        now: datetime | None = None) -> tuple[ContactProfile, list[Send | Suppress]]:
    """The events through evolve → decide, in order: the person after them and every decision."""
    p = p or profile()
    out: list[Send | Suppress] = []
    for event in events:
        p = evolve(p, event)
        for d in decide(p, event, now or event.occurred_at + timedelta(seconds=1), cfg or config()):
            assert isinstance(d, Send | Suppress)
            out.append(d)
    return p, out


def test_each_status_step_is_one_short_utility_message_with_carrier_and_tracking_link():
    _, (send,) = run([shipment("shipped")])
    assert isinstance(send, Send)
    assert (send.flow, send.category, send.template, send.language) == ("shipment_update", "utility",
                                                                       "shipment_update", "en_US")
    assert send.idempotency_key == f"{TENANT}|shipment_update|A-1001|shipped"
    order, status, carrier, link = send.parameters
    assert (order, status, carrier) == ("A-1001", "shipped", "DHL")
    (short,) = send.links
    assert short.kind == "tracked" and short.target == "https://dhl.example/track?id=123"
    assert short.content == "shipped" and short.flow == "shipment_update"
    assert link.endswith("/l/" + short.code)
    assert send.policy is None  # utility: no quiet hours, caps or fatigue
    assert send.expires_at == T0 + timedelta(hours=48)


@pytest.mark.parametrize(("status", "locale", "text", "carrier"), [
    ("shipped", None, "shipped", "our carrier"),
    ("out_for_delivery", None, "out for delivery", "our carrier"),
    ("delivered", None, "delivered", "our carrier"),
    ("shipped", "de-DE", "versandt", "unserem Versanddienstleister"),
    ("out_for_delivery", "de-DE", "in Zustellung", "unserem Versanddienstleister"),
    ("delivered", "de-AT", "zugestellt", "unserem Versanddienstleister"),
])
def test_status_text_and_missing_carrier_in_the_persons_language(status, locale, text, carrier):
    _, (send,) = run([shipment(status, carrier=None)], profile(locale=locale))
    assert isinstance(send, Send)
    assert send.parameters[1:3] == (text, carrier)


def test_without_a_tracking_url_the_tenants_tracking_link_names_the_order():
    cfg = config(settings=TenantSettings(tracking_url="https://shop.example/track/{order_id}"))
    _, (send,) = run([shipment("shipped", order_id="SO 1/B", tracking_url=None)], cfg=cfg)
    assert isinstance(send, Send)
    assert send.links[0].target == "https://shop.example/track/SO%201%2FB"


# (statuses in arrival order, each posted how often) → the statuses told, in order
@pytest.mark.parametrize(("arrivals", "told"), [
    (["shipped", "out_for_delivery", "delivered"], ["shipped", "out_for_delivery", "delivered"]),
    (["shipped", "shipped", "out_for_delivery", "out_for_delivery", "delivered", "delivered"],
     ["shipped", "out_for_delivery", "delivered"]),  # the acceptance: each posted twice → once each
    (["delivered", "shipped", "out_for_delivery"], ["delivered"]),  # never a step back
    (["shipped", "delivered", "out_for_delivery"], ["shipped", "delivered"]),
    (["out_for_delivery", "shipped", "delivered", "delivered"], ["out_for_delivery", "delivered"]),
])
def test_the_same_status_once_and_never_a_step_back(arrivals, told):
    _, decisions = run([shipment(s) for s in arrivals])
    assert [d.parameters[1] for d in decisions if isinstance(d, Send)] == [t.replace("_", " ") for t in told]
    assert len(decisions) == len(arrivals)  # every other arrival is suppressed, with its reason


def test_suppressions_say_why():
    _, decisions = run([shipment("delivered"), shipment("delivered"), shipment("shipped")])
    assert [d.reason for d in decisions if isinstance(d, Suppress)] == [
        "already told: delivered", "out of order: delivered was already told"]


def test_orders_are_told_apart():
    _, decisions = run([shipment("delivered", order_id="A-1"), shipment("shipped", order_id="A-2")])
    assert all(isinstance(d, Send) for d in decisions)


def test_memory_keeps_the_highest_rank_and_the_event_that_raised_it():
    first = shipment("out_for_delivery")
    p, _ = run([first, shipment("shipped")])
    assert dict(p.slot(SLOT)["A-1001"]) == {"rank": 2, "status": "out_for_delivery", "event_id": first.event_id,
                                            "at": T0.isoformat()}


@pytest.mark.parametrize(("changes", "fields", "now", "reason"), [
    ({"enabled": False}, {}, None, "flow disabled"),
    ({}, {"phone": None}, None, "no phone number known for contact"),
    ({}, {}, T0 + timedelta(hours=48, seconds=1), "expired: the shipment update is older than 2880 minutes"),
    ({"templates": {"de": "shipment_update"}}, {}, None, "no shipment_update template for language en_US"),
])
def test_an_update_that_cannot_go_says_why(changes, fields, now, reason):
    p = profile(**fields)
    event = shipment("shipped", carrier=None, phone=p.phone)
    _, (decision,) = run([event], p, config(shipment_update=changes), now)
    assert isinstance(decision, Suppress)
    assert decision.reason == reason


def test_a_utility_update_goes_to_a_person_who_stopped_marketing():
    _, (send,) = run([shipment("shipped")], profile(marketing="stop", opted_in=False))
    assert isinstance(send, Send)


def test_settings_need_english_texts_for_every_status():
    with pytest.raises(ValueError, match="status_texts.en"):
        ShipmentSettings(status_texts={"en": {"shipped": "shipped"}})


def test_the_key_is_per_order_and_status():
    assert idempotency_key("t", "A-1", "delivered") == "t|shipment_update|A-1|delivered"


@given(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=12))
def test_property_each_status_at_most_once_and_ranks_only_rise(arrivals):
    _, decisions = run([shipment(s) for s in arrivals])
    told = [d.idempotency_key.rsplit("|", 1)[1] for d in decisions if isinstance(d, Send)]
    assert len(told) == len(set(told))
    assert [RANKS[s] for s in told] == sorted(RANKS[s] for s in told)
    assert told[0] == arrivals[0]
