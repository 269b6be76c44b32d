"""`make run`: the demo shop's marketing stays well within what the demo's WhatsApp number may send (R-S3), while
every marketing flow still shows within minutes.

The budget is the sender's own pacing for an established number (`make run` registers the demo number 60 days
back, `scrm_stack.stack.run_mode_sender_env`): marketing 3–5 s apart and at most 200 in any hour
(`sender.domain.pacing.PacingPolicy`). The demo's traffic is replayed through a model of the trigger-engine's
marketing decisions — the welcome (R-T1), the cart stages (R-T6.1) and the price drops (R-T6.2), with the rules
that let them through or cancel them — and every marketing decision is counted when it is made.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from demo_shop.config import Settings
from demo_shop.generator import DemoShop, Pace
from sender.domain.pacing import PacingPolicy

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
# R-T6.1 stages: due after the cart's `occurred_at`, expiring when the next one may be due (the last 12 h later).
STAGES = {1: (timedelta(minutes=30), timedelta(hours=22)), 2: (timedelta(hours=24), timedelta(hours=69)),
          3: (timedelta(hours=72), timedelta(hours=84))}


def ts(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))


@dataclass
class Person:
    opted_in: bool | None = None
    purchased: bool = False
    carts: dict[str, tuple[str, datetime, frozenset[str]]] = field(default_factory=dict)  # id → (status, at, skus)
    price_drops: dict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))


@dataclass
class Engine:
    """What the trigger-engine decides as marketing, by flow, with the time of each decision."""

    people: dict[str, Person] = field(default_factory=lambda: defaultdict(Person))
    timers: list[tuple[datetime, str, str, int]] = field(default_factory=list)  # heap: due, phone, cart id, stage
    carted: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # SKU → phones with it in a cart
    sent: dict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))

    def take(self, now: datetime, event: dict[str, Any]) -> None:
        self.fire(now)
        kind, data = event["type"], event["data"]
        if kind == "product.price_changed":
            if data["new_price"] < data["old_price"] * 0.95:
                self._price_drop(now, data["sku"])
            return
        person = self.people[event["contact"]["phone"]]
        if kind in ("contact.created", "contact.updated") and "opted_in" in data:
            person.opted_in = data["opted_in"]
        if kind == "contact.created" and person.opted_in is not False and not person.purchased:
            self.sent["welcome"].append(now)
        elif kind == "cart.updated":
            cart_id, at = data["cart_id"], ts(event)
            if not data["items"]:
                person.carts[cart_id] = ("emptied", at, frozenset())
            elif person.carts.get(cart_id, ("open",))[0] == "open":
                person.carts[cart_id] = ("open", at, frozenset(i["sku"] for i in data["items"]))
                for item in data["items"]:
                    self.carted[item["sku"]].add(event["contact"]["phone"])
                for stage, (due, expires) in STAGES.items():
                    if now < at + expires:
                        heapq.heappush(self.timers, (max(now, at + due), event["contact"]["phone"], cart_id, stage))
        elif kind == "payment.succeeded":
            person.purchased = True
            paid = data.get("cart_id")
            for cart_id, (status, at, skus) in list(person.carts.items()):
                if cart_id == paid or (paid is None and status == "open" and at <= ts(event)):
                    person.carts[cart_id] = ("purchased", at, skus)
            if paid is not None and paid not in person.carts:
                person.carts[paid] = ("purchased", ts(event), frozenset())

    def fire(self, now: datetime) -> None:
        while self.timers and self.timers[0][0] <= now:
            due, phone, cart_id, stage = heapq.heappop(self.timers)
            person = self.people[phone]
            status, at, _ = person.carts[cart_id]
            if status == "open" and due < at + STAGES[stage][1] and person.opted_in is not False:
                self.sent[f"cart stage {stage}"].append(due)

    def _price_drop(self, now: datetime, sku: str) -> None:
        for phone in sorted(self.carted[sku]):
            person = self.people[phone]
            if person.opted_in is False:
                continue
            if any(status == "open" and sku in skus for status, _, skus in person.carts.values()):
                recent = [t for t in person.price_drops[sku] if now - t < timedelta(days=7)]
                if len(recent) < 2:
                    person.price_drops[sku] = [*recent, now]
                    self.sent["price drop"].append(now)


def replay(*, rate: int, hours: float, seed: int = 3, pace: Pace | None = None) -> Engine:
    shop, engine = DemoShop(seed, pace=pace), Engine()
    for second in range(int(hours * 3600)):
        now = START + timedelta(seconds=second)
        for event in shop.emit(now, rate):
            engine.take(now, event)
    engine.fire(START + timedelta(hours=hours))
    return engine


def busiest_hour(times: list[datetime]) -> int:
    """The most marketing decisions within any one hour (a rolling window, as the sender counts)."""
    times = sorted(times)
    return max((i + 1 - bisect_left(times, t - timedelta(hours=1), 0, i + 1) for i, t in enumerate(times)),
               default=0)


@pytest.fixture(scope="module")
def default_run() -> Engine:
    return replay(rate=int(Settings.model_fields["demo_rate"].default), hours=6)


def test_the_budget_is_the_established_numbers_pace() -> None:
    policy = PacingPolicy()
    assert policy.marketing_per_hour == 200
    assert 3600 / policy.marketing_max_interval.total_seconds() >= policy.marketing_per_hour  # the hour binds


def test_the_demo_at_its_default_rate_decides_a_quarter_of_the_hourly_budget(default_run: Engine) -> None:
    every = [t for times in default_run.sent.values() for t in times]
    per_hour = len(every) / 6
    budget = PacingPolicy().marketing_per_hour
    assert 20 <= per_hour <= budget / 4, {k: len(v) for k, v in default_run.sent.items()}
    assert busiest_hour(every) <= budget / 2, {k: len(v) for k, v in default_run.sent.items()}
    after_the_start = [t for t in every if t >= START + timedelta(hours=4)]  # carts cleared: the steady state
    assert len(after_the_start) / 2 <= budget / 4


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_every_marketing_flow_shows_within_minutes(seed: int) -> None:
    engine = replay(rate=int(Settings.model_fields["demo_rate"].default), hours=0.25, seed=seed)
    first = {flow: min(times) - START for flow, times in engine.sent.items()}
    assert first["welcome"] <= timedelta(seconds=5)
    assert first["cart stage 1"] <= timedelta(minutes=1)
    assert first["cart stage 2"] <= timedelta(minutes=10)  # the run's second abandoned cart is a day old
    assert first["price drop"] <= timedelta(minutes=3), first  # the first price change lowers a carted SKU


@pytest.mark.parametrize("rate", [1, 25])
def test_the_pace_holds_whatever_the_event_rate(rate: int) -> None:
    engine = replay(rate=rate, hours=1)
    every = [t for times in engine.sent.values() for t in times]
    assert busiest_hour(every) <= PacingPolicy().marketing_per_hour / 2, {k: len(v) for k, v in engine.sent.items()}


def test_a_pace_of_zero_leads_to_no_marketing_at_all() -> None:
    engine = replay(rate=5, hours=1, pace=Pace(contacts_per_hour=0, abandoned_per_hour=0, price_changes_per_hour=0))
    assert not any(engine.sent.values())
