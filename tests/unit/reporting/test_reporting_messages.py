"""Message statuses: once each however often they come, in any order; read ⇒ delivered ⇒ sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reporting_factories import T0, sent, status, summed_deltas

from reporting.domain.clicks import click_flow
from reporting.domain.messages import (
    Metric,
    StatusSeen,
    assign_replies,
    contributions,
    delta,
    message_key,
    observe,
    status_seen,
)

H = timedelta(hours=1)
D = timedelta(days=1)
DAY0 = T0.date()


def fold(facts):
    m = None
    for f in facts:
        m = observe(m, f)
    return m


def seen(st_, at=T0, key="wamid.1", flow=None, idempotency_key="k-1"):
    """A status of a message the platform sent (it carries the send's key) unless told otherwise."""
    return StatusSeen(key=key, status=st_, at=at, flow=flow, idempotency_key=idempotency_key)


def metrics_of(message):
    return {(c[2].value, c[0]): n for c, n in contributions(message).items()}


@pytest.mark.parametrize(("statuses", "expected"), [
    (["sent"], {"attempted": 1, "sent": 1}),
    (["sent", "delivered"], {"attempted": 1, "sent": 1, "delivered": 1}),
    (["sent", "delivered", "read"], {"attempted": 1, "sent": 1, "delivered": 1, "read": 1}),
    # Out of order: a read receipt before anything else implies delivered and sent.
    (["read"], {"attempted": 1, "sent": 1, "delivered": 1, "read": 1}),
    (["delivered"], {"attempted": 1, "sent": 1, "delivered": 1}),
    (["read", "delivered", "sent"], {"attempted": 1, "sent": 1, "delivered": 1, "read": 1}),
    (["failed"], {"attempted": 1, "failed": 1}),
    (["sent", "failed"], {"attempted": 1, "sent": 1, "failed": 1}),
    # Duplicates count once.
    (["sent", "sent", "delivered", "delivered", "read", "read"],
     {"attempted": 1, "sent": 1, "delivered": 1, "read": 1}),
])
def test_statuses_count_once_and_imply_their_predecessors(statuses, expected):
    message = fold([seen(s, at=T0 + i * timedelta(minutes=1)) for i, s in enumerate(statuses)])
    got = {}
    for (metric, _), n in metrics_of(message).items():
        got[metric] = got.get(metric, 0) + n
    assert got == expected


def test_each_status_counts_on_the_utc_day_of_its_own_time():
    late = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    message = fold([seen("sent", at=late), seen("delivered", at=late + 2 * timedelta(minutes=1)),
                    seen("read", at=late + D)])
    got = metrics_of(message)
    assert got[("sent", late.date())] == 1
    assert got[("delivered", late.date() + D)] == 1
    assert got[("read", late.date() + D)] == 1


def test_implied_status_moves_to_its_own_day_when_its_receipt_arrives():
    read_only = fold([seen("read", at=T0 + D)])
    both = observe(read_only, seen("sent", at=T0))
    d = delta(read_only, both)
    assert d == {(DAY0 + D, None, Metric.SENT): -1, (DAY0, None, Metric.SENT): 1,
                 (DAY0 + D, None, Metric.ATTEMPTED): -1, (DAY0, None, Metric.ATTEMPTED): 1}


def test_flow_learned_late_moves_counts_to_the_flow():
    webhook_first = fold([seen("delivered", at=T0 + H)])
    with_flow = observe(webhook_first, seen("sent", at=T0, flow="welcome"))
    d = delta(webhook_first, with_flow)
    assert d[(DAY0, None, Metric.DELIVERED)] == -1
    assert d[(DAY0, "welcome", Metric.DELIVERED)] == 1
    assert with_flow.flow == "welcome"


@pytest.mark.parametrize(("message_id", "idempotency_key", "key"), [
    ("wamid.A", "k1", "wamid.A"),
    (None, "k1", "idempotency:k1"),
    (None, None, None),
])
def test_messages_are_keyed_by_wamid_else_idempotency_key(message_id, idempotency_key, key):
    assert message_key(message_id, idempotency_key) == key


def test_failure_before_the_provider_is_keyed_by_idempotency_key():
    fact = status_seen(status("failed", message_id=None, idempotency_key="k-9", flow="cart"))
    assert fact is not None
    assert (fact.key, fact.flow) == ("idempotency:k-9", "cart")


def test_sender_status_carries_flow_account_and_category():
    fact = status_seen(sent("wamid.7"))
    m = observe(None, fact)
    assert (m.flow, m.account_id, m.category, m.idempotency_key) == ("welcome", "acc-1", "marketing", "k-wamid.7")


@pytest.mark.parametrize(("url", "flow"), [
    ("https://s.example/p?utm_source=whatsapp&utm_campaign=cart_reminder", "cart_reminder"),
    ("https://s.example/p?utm_source=whatsapp", None),
    ("https://s.example/p?utm_campaign=", None),
])
def test_clicks_belong_to_the_flow_their_link_names(url, flow):
    assert click_flow(url) == flow


# --- replies -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("messages", "inbounds", "expected"), [
    ({"m1": 0}, [1], {"m1": 1}),
    ({"m1": 0}, [24], {"m1": 24}),  # exactly 24 h later still replies
    ({"m1": 0}, [25], {"m1": None}),  # too late
    ({"m1": 0}, [-1], {"m1": None}),  # written before the message
    ({"m1": 0, "m2": 2}, [3], {"m1": None, "m2": 3}),  # the latest message sent before the reply
    ({"m1": 0, "m2": 2}, [1, 3], {"m1": 1, "m2": 3}),
    ({"m1": 0}, [1, 2, 3], {"m1": 1}),  # replied once, at the first reply
])
def test_an_inbound_replies_to_the_latest_message_within_24h(messages, inbounds, expected):
    got = assign_replies([(k, T0 + h * H) for k, h in messages.items()], [T0 + h * H for h in inbounds], 24 * H)
    assert got == {k: (T0 + v * H if v is not None else None) for k, v in expected.items()}


@settings(max_examples=200, deadline=None)
@given(messages=st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 100), max_size=6),
       inbounds=st.lists(st.integers(-10, 130), max_size=8), data=st.data())
def test_reply_attribution_depends_only_on_the_sets(messages, inbounds, data):
    pairs = [(k, T0 + h * H) for k, h in messages.items()]
    times = [T0 + h * H for h in inbounds]
    base = assign_replies(pairs, times, 24 * H)
    again = assign_replies(data.draw(st.permutations(pairs)), data.draw(st.permutations(times)) * 2, 24 * H)
    assert base == again
    assert sum(1 for v in base.values() if v is not None) <= len(set(inbounds))


# --- invariants --------------------------------------------------------------------------------------

_fact = st.builds(
    lambda s, minutes, flow: seen(s, at=T0 + timedelta(minutes=minutes), flow=flow),
    st.sampled_from(["sent", "delivered", "read", "failed"]), st.integers(-3000, 3000),
    st.sampled_from([None, None, "welcome"]))


@settings(max_examples=300, deadline=None)
@given(facts=st.lists(_fact, min_size=1, max_size=8), data=st.data())
def test_same_statuses_in_any_order_and_multiplicity_give_the_same_counts(facts, data):
    flows = {f.flow for f in facts if f.flow}
    shuffled = data.draw(st.permutations(facts))
    repeated = shuffled + data.draw(st.lists(st.sampled_from(facts), max_size=8))
    a, b = fold(facts), fold(repeated)
    assert contributions(a) == contributions(b)
    assert a.flow == (flows.pop() if flows else None)
    # Stored totals are kept by deltas: their sum along any arrival order is the final contribution.
    assert summed_deltas(repeated) == contributions(b)


@settings(max_examples=200, deadline=None)
@given(facts=st.lists(_fact, min_size=1, max_size=8))
def test_never_more_delivered_than_sent_nor_read_than_delivered(facts):
    counts: dict = {}
    for (_, _, metric), n in contributions(fold(facts)).items():
        counts[metric] = counts.get(metric, 0) + n
    assert counts.get(Metric.READ, 0) <= counts.get(Metric.DELIVERED, 0) <= counts.get(Metric.SENT, 0) <= 1
