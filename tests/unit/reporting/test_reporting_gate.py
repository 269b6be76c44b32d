"""Issue 8 item 4: the send gate's `deferred` / `suppressed` statuses counted per flow and rule.

Pure counting rules (order-independent, idempotent, suppression final), then the handler (batches,
redelivery, reordering across batches, tenants) and the HTTP read route.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from reporting_factories import (
    T0,
    FakeStore,
    deferred,
    fake_keys,
    items,
    played,
    sent,
    status,
    summed_deltas,
    suppressed,
)

from reporting.adapters.http import create_app
from reporting.domain.gate import ANY_RULE, GateMetric, GateOutcome, gate_cells, latest_outcome, merge_deferrals
from reporting.domain.gate_report import build_gate_report
from reporting.domain.messages import StatusSeen, add_into, contributions, gate_contributions, gate_delta, observe
from reporting.domain.policy import ReportPolicy
from reporting.handlers import ApplyEvents, ReportingMetrics
from scrm_common.clock import FixedClock

H = timedelta(hours=1)
DAY0 = T0.date()
KEY = "k-wamid.1"


def gate_seen(st_, at, rule, until=None, key=f"idempotency:{KEY}"):
    return StatusSeen(key=key, status=st_, at=at, idempotency_key=KEY, flow="welcome", rule=rule,
                      deferred_until=until if st_ == "deferred" else None)


def wire_seen(st_, at, wamid="wamid.1"):
    return StatusSeen(key=wamid, status=st_, at=at, message_id=wamid, idempotency_key=KEY, flow="welcome")


def fold(facts):
    m = None
    for f in facts:
        m = observe(m, f)
    return m


def gate_of(message, rule=ANY_RULE):
    out: dict[str, int] = {}
    for (_, _, r, metric), n in gate_contributions(message).items():
        if r == rule:
            out[metric.value] = out.get(metric.value, 0) + n
    return out


def overview_of(message):
    out: dict[str, int] = {}
    for (_, _, metric), n in contributions(message).items():
        out[metric.value] = out.get(metric.value, 0) + n
    return out


# ---- pure rules ---------------------------------------------------------------------------------------


def test_deferred_then_sent_delivered_read_counts_as_deferred_then_sent():
    m = fold([gate_seen("deferred", T0, "R-S4", T0 + 8 * H), wire_seen("sent", T0 + 8 * H),
              wire_seen("delivered", T0 + 8 * H + timedelta(seconds=2)), wire_seen("read", T0 + 9 * H)])
    assert gate_of(m) == {"deferred": 1, "deferred_then_sent": 1}
    assert gate_of(m, "R-S4") == {"deferred": 1, "deferred_then_sent": 1}
    assert overview_of(m) == {"attempted": 1, "sent": 1, "delivered": 1, "read": 1}
    assert m.gate == GateOutcome("deferred", "R-S4", T0, T0 + 8 * H)
    # The deferral counts on its own day, not on the day it went.
    assert {c[0] for c in gate_contributions(m)} == {DAY0}


def test_a_suppressed_message_is_neither_attempted_nor_failed():
    m = fold([gate_seen("suppressed", T0, "R-S5")])
    assert gate_of(m) == {"suppressed": 1}
    assert gate_of(m, "R-S5") == {"suppressed": 1}
    assert overview_of(m) == {}
    assert (m.attempt_at, m.attempted_on, m.reply_from) == (None, None, None)


def test_a_deferral_that_expires_counts_deferred_then_suppressed_under_both_rules():
    m = fold([gate_seen("deferred", T0, "R-S4", T0 + 8 * H), gate_seen("suppressed", T0 + 8 * H, "EXPIRED")])
    assert gate_of(m) == {"deferred": 1, "deferred_then_suppressed": 1, "suppressed": 1}
    assert gate_of(m, "R-S4") == {"deferred": 1, "deferred_then_suppressed": 1}
    assert gate_of(m, "EXPIRED") == {"suppressed": 1}


def test_suppressed_is_final_whatever_comes_later():
    m = fold([gate_seen("suppressed", T0, "R-S6"), gate_seen("deferred", T0 + H, "R-S4", T0 + 9 * H),
              gate_seen("suppressed", T0 + 2 * H, "R-S5")])
    assert m.gate == GateOutcome("suppressed", "R-S6", T0, None)
    assert gate_of(m, "R-S6") == {"suppressed": 1}
    assert gate_of(m, "R-S5") == {}


def test_a_later_deferral_replaces_an_earlier_one_and_each_rule_counts():
    m = fold([gate_seen("deferred", T0, "R-S4", T0 + 8 * H),
              gate_seen("deferred", T0 + 8 * H, "META-131049", T0 + 32 * H),
              gate_seen("deferred", T0 + 9 * H, "R-S4", T0 + 30 * H),  # deferred by R-S4 again: its first time stays
              wire_seen("sent", T0 + 32 * H)])
    assert m.gate == GateOutcome("deferred", "R-S4", T0 + 9 * H, T0 + 30 * H)
    assert m.deferrals == (("META-131049", T0 + 8 * H), ("R-S4", T0))
    assert gate_of(m) == {"deferred": 1, "deferred_then_sent": 1}  # one message
    assert gate_of(m, "R-S4") == {"deferred": 1, "deferred_then_sent": 1}
    assert gate_of(m, "META-131049") == {"deferred": 1, "deferred_then_sent": 1}


def test_gate_statuses_leave_the_attempts_alone():
    # deferred → sent → failed: the failure of the (only) attempt counts; a deferral after the send does not
    # make the message look unattempted or withdraw its failure.
    m = fold([wire_seen("sent", T0 + H), gate_seen("deferred", T0, "R-S4", T0 + H), wire_seen("failed", T0 + 2 * H)])
    assert overview_of(m) == {"attempted": 1, "sent": 1, "failed": 1}
    assert m.attempt_id == "wamid.1"
    assert gate_of(m) == {"deferred": 1, "deferred_then_sent": 1}


def test_the_r_s7_retry_is_judged_by_itself():
    first = [wire_seen("sent", T0), wire_seen("failed", T0 + H)]
    # The retry, a day later, is deferred and then suppressed: the first attempt's send does not make it "sent".
    held = fold([*first, gate_seen("deferred", T0 + 25 * H, "R-S4", T0 + 32 * H),
                 gate_seen("suppressed", T0 + 32 * H, "R-S5")])
    assert gate_of(held) == {"deferred": 1, "deferred_then_suppressed": 1, "suppressed": 1}
    assert overview_of(held)["failed"] == 1
    # Deferred and then sent under a new wamid: it went after the deferral, and the failure is withdrawn.
    went = fold([*first, gate_seen("deferred", T0 + 25 * H, "R-S4", T0 + 32 * H),
                 wire_seen("sent", T0 + 32 * H, wamid="wamid.2")])
    assert gate_of(went) == {"deferred": 1, "deferred_then_sent": 1}
    assert "failed" not in overview_of(went)


def test_a_send_within_the_second_of_the_deferral_counts_as_after_it():
    # Meta reports whole seconds: the webhook's sent at 12:00:00 may follow a deferral at 12:00:00.4.
    m = fold([gate_seen("deferred", T0 + timedelta(milliseconds=400), "R-S4", T0 + timedelta(seconds=1)),
              wire_seen("sent", T0)])
    assert gate_of(m)["deferred_then_sent"] == 1


def test_a_status_of_someone_elses_message_counts_nothing():
    m = fold([StatusSeen(key="idempotency:x", status="suppressed", at=T0, rule="R-S6")])  # no idempotency key
    assert gate_contributions(m) == {}


def test_latest_outcome_is_an_order_free_merge():
    outcomes = [GateOutcome("deferred", "R-S4", T0, T0 + H), GateOutcome("deferred", "R-S5", T0, T0 + H),
                GateOutcome("deferred", "R-S4", T0 + H, T0 + 2 * H), GateOutcome("suppressed", "R-S6", T0 + 2 * H),
                GateOutcome("suppressed", "EXPIRED", T0 + 2 * H), GateOutcome("suppressed", "R-S5", T0 + 3 * H)]
    for a, b, c in itertools.product(outcomes, repeat=3):
        assert latest_outcome(a, b) == latest_outcome(b, a)
        assert latest_outcome(latest_outcome(a, b), c) == latest_outcome(a, latest_outcome(b, c))
        assert latest_outcome(a, a) == a
    assert merge_deferrals((("R-S4", T0 + H),), (("R-S4", T0), ("R-S5", T0))) == (("R-S4", T0), ("R-S5", T0))


def test_cells_without_any_gate_status_are_empty():
    assert gate_cells("welcome", (), None, T0) == {}


_FACTS = [gate_seen("deferred", T0, "R-S4", T0 + 8 * H), gate_seen("deferred", T0 + 8 * H, "META-131049", T0 + 32 * H),
          wire_seen("sent", T0 + 32 * H), wire_seen("delivered", T0 + 33 * H), wire_seen("read", T0 + 34 * H),
          gate_seen("suppressed", T0 + 30 * H, "EXPIRED")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_FACTS), min_size=1, max_size=10), st.randoms(use_true_random=False))
def test_any_order_and_any_repetition_gives_the_same_message_and_counts(facts, rnd):
    shuffled = list(facts)
    rnd.shuffle(shuffled)
    a, b = fold(facts), fold(shuffled)
    # The row key is the name the first status gave it (wamid or idempotency key); all else agrees.
    assert a.model_copy(update={"key": ""}) == b.model_copy(update={"key": ""})
    assert gate_contributions(a) == gate_contributions(b)
    # What the store ends with (the sum of each arrival's delta) is what the final message contributes.
    total = summed_deltas(shuffled)
    assert total == contributions(b)  # the overview's cells
    stored: dict = {}
    previous = None
    for f in shuffled:
        current = observe(previous, f)
        add_into(stored, gate_delta(previous, current))
        previous = current
    assert stored == gate_contributions(b)


# ---- the handler --------------------------------------------------------------------------------------


async def test_a_sent_before_its_deferral_is_one_message_counted_once():
    store = await played([sent("wamid.1", at=T0 + 8 * H), deferred(KEY, at=T0), status("delivered", at=T0 + 9 * H)])
    assert len(store.msgs) == 1
    assert store.gate() == {"deferred": 1, "deferred_then_sent": 1}
    assert store.totals() == {"attempted": 1, "sent": 1, "delivered": 1}


async def test_redelivery_counts_once():
    d, s = deferred(KEY, at=T0), suppressed(KEY, rule="EXPIRED", at=T0 + 8 * H)
    store = await played([d, d, s, s])
    # The same status again under a new event id (republished) changes nothing either.
    handle = ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(CollectorRegistry()))
    await handle(items(deferred(KEY, at=T0), suppressed(KEY, rule="EXPIRED", at=T0 + 8 * H)))
    assert store.gate() == {"deferred": 1, "deferred_then_suppressed": 1, "suppressed": 1}
    assert store.gate(rule="R-S4") == {"deferred": 1, "deferred_then_suppressed": 1}
    assert store.gate(rule="EXPIRED") == {"suppressed": 1}
    assert store.totals() == {}


async def test_one_batch_in_any_order_equals_one_batch_per_event():
    events = [deferred("k-a", at=T0), sent("a", at=T0 + 8 * H, flow="welcome"),  # idempotency key k-a
              suppressed("k-b", rule="R-S5", at=T0), deferred("k-c", rule="R-S4", at=T0),
              suppressed("k-c", rule="EXPIRED", at=T0 + 8 * H)]
    one_by_one = await played(events)
    for order in itertools.permutations(events):
        store = FakeStore()
        handle = ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(CollectorRegistry()))
        await handle(items(*order))
        assert store.gate_counts == one_by_one.gate_counts
    assert one_by_one.gate() == {"deferred": 2, "deferred_then_sent": 1, "deferred_then_suppressed": 1,
                                 "suppressed": 2}


async def test_tenants_are_kept_apart():
    store = FakeStore()
    handle = ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(CollectorRegistry()))
    await handle(items(deferred(KEY, at=T0), tenant="a") + items(suppressed(KEY, at=T0), tenant="b"))
    assert store.gate("a") == {"deferred": 1}
    assert store.gate("b") == {"suppressed": 1}
    assert len(store.msgs) == 2


async def test_the_counted_metric_counts_each_message_once():
    registry = CollectorRegistry()
    handle = ApplyEvents(store=FakeStore(), policy=ReportPolicy(), metrics=ReportingMetrics(registry))
    await handle(items(deferred(KEY, rule="R-S4", at=T0), deferred(KEY, rule="META-131049", at=T0 + H)))
    assert registry.get_sample_value("scrm_reporting_counted_total", {"metric": "deferred"}) == 1


# ---- the report and its route -------------------------------------------------------------------------


def test_the_report_folds_rows_per_flow_and_rule():
    rows = [(DAY0, "welcome", "", "deferred", 2), (DAY0, "welcome", "R-S4", "deferred", 2),
            (DAY0, "welcome", "META-131049", "deferred", 1), (DAY0, "welcome", "", "deferred_then_sent", 1),
            (DAY0, "welcome", "R-S4", "deferred_then_sent", 1), (DAY0, None, "", "suppressed", 1),
            (DAY0, None, "R-S6", "suppressed", 1), (DAY0 + timedelta(days=1), "welcome", "", "deferred", 1),
            (DAY0 + timedelta(days=1), "welcome", "R-S4", "deferred", 1)]
    report = build_gate_report("shop", DAY0, DAY0 + timedelta(days=1), None, rows)
    assert report.totals.deferred == 3 and report.totals.suppressed == 1
    assert [(r.rule, r.deferred, r.suppressed) for r in report.totals.rules] == \
        [("META-131049", 1, 0), ("R-S4", 3, 0), ("R-S6", 0, 1)]
    welcome, unattributed = report.flows
    assert (welcome.flow, welcome.deferred, welcome.deferred_then_sent) == ("welcome", 3, 1)
    assert unattributed.flow is None and unattributed.rules[0].rule == "R-S6"
    assert [m.value for m in GateMetric] == ["deferred", "deferred_then_sent", "deferred_then_suppressed",
                                             "suppressed"]


@pytest.fixture
async def client():
    store = FakeStore()
    handle = ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(CollectorRegistry()))
    await handle(items(deferred(KEY, at=T0), sent("wamid.1", at=T0 + 8 * H),
                       suppressed("k-2", rule="R-S5", at=T0, flow="cart"),
                       suppressed("k-3", rule="R-S6", at=T0 - timedelta(days=10), flow="cart")))
    await handle(items(suppressed("k-9", rule="R-S6", at=T0), tenant="other"))

    async def ready() -> bool:
        return True

    app = create_app(store=store, keys=fake_keys(), clock=FixedClock(T0 + timedelta(days=1)),
                     policy=ReportPolicy(), registry=CollectorRegistry(), ready=ready)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


async def test_the_gate_route_reports_the_callers_tenant_per_flow_and_rule(client):
    response = await client.get("/v1/reports/gate", headers={"Authorization": "Bearer shop:read"})
    assert response.status_code == 200
    body = response.json()
    assert (body["tenant"], body["from"], body["to"], body["flow"]) == ("shop", "2026-02-24", "2026-03-02", None)
    assert body["totals"] == {"deferred": 1, "deferred_then_sent": 1, "deferred_then_suppressed": 0,
                              "suppressed": 1,  # R-S6 of k-3 is outside the range; `other`'s is not ours
                              "rules": [{"rule": "R-S4", "deferred": 1, "deferred_then_sent": 1,
                                         "deferred_then_suppressed": 0, "suppressed": 0},
                                        {"rule": "R-S5", "deferred": 0, "deferred_then_sent": 0,
                                         "deferred_then_suppressed": 0, "suppressed": 1}]}
    assert [f["flow"] for f in body["flows"]] == ["cart", "welcome"]


async def test_the_gate_route_filters_by_flow_and_range(client):
    auth = {"Authorization": "Bearer shop:read"}
    body = (await client.get("/v1/reports/gate?flow=cart&from=2026-02-01&to=2026-03-01", headers=auth)).json()
    assert [f["flow"] for f in body["flows"]] == ["cart"]
    assert [r["rule"] for r in body["flows"][0]["rules"]] == ["R-S5", "R-S6"]
    assert body["totals"]["suppressed"] == 2
    bad = await client.get("/v1/reports/gate?from=2026-03-02&to=2026-03-01", headers=auth)
    assert bad.status_code == 422
    assert (await client.get("/v1/reports/gate", params={"flow": "a\x00b"}, headers=auth)).status_code == 422
    assert (await client.get("/v1/reports/gate", params={"flow": "x" * 129}, headers=auth)).status_code == 422


@pytest.mark.parametrize(("key", "code"), [(None, 401), ("unknown", 401), ("shop:events", 403), ("shop:admin", 200)])
async def test_the_gate_route_needs_a_key(client, key, code):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    assert (await client.get("/v1/reports/gate", headers=headers)).status_code == code


async def test_the_gate_route_is_in_the_openapi_document(client):
    spec = (await client.get("/openapi.json")).json()
    route = spec["paths"]["/v1/reports/gate"]["get"]
    assert {p["name"] for p in route["parameters"]} >= {"from", "to", "flow"}
    assert "GateReport" in spec["components"]["schemas"]
